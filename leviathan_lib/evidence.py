"""The evidence a cycle leaves: one versioned, schema-validated record per DAG run.

Records are stored as the ``extra`` of an asset event on the target's evidence asset (so they live in
the Airflow metadata DB, show in the UI's asset view, and the next cycle reads them through the Task
SDK) and as the ``record_evidence`` task's XCom.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EVIDENCE_VERSION = 1

Outcome = Literal["succeeded", "failed", "timed_out", "rejected_by_guardrail"]


def evidence_asset_uri(target_id: str) -> str:
    return f"leviathan://targets/{target_id}/evidence"


class CheckEvidence(BaseModel):
    name: str
    passed: bool
    detail: str


class TaskVerdictEvidence(BaseModel):
    id: str
    eligible: bool
    reasons: list[str]


class AttemptEvidence(BaseModel):
    task_id: str
    attempt: int
    task_hash: str
    branch: str
    backend: str
    image: str | None = None
    outcome: Outcome | None = None
    error_code: str | None = None
    error_message: str | None = None
    changed_paths: list[str] = Field(default_factory=list)
    pr_number: int | None = None
    pr_url: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class CycleRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    evidence_version: Literal[1] = EVIDENCE_VERSION
    kind: Literal["cycle"] = "cycle"
    target_id: str
    dag_run_id: str
    run_type: str | None = None
    recorded_at: datetime
    repo_url: str | None = None
    branch: str | None = None
    commit_sha: str | None = None
    decision: Literal["run", "skip", "error"]
    reasons: list[str] = Field(default_factory=list)
    checks: list[CheckEvidence] = Field(default_factory=list)
    tasks: list[TaskVerdictEvidence] = Field(default_factory=list)
    selected_task: str | None = None
    attempt: AttemptEvidence | None = None
    #: Stable code for why the cycle stopped: ``pr_opened``, a guardrail reason code, or an error code.
    stopped_reason: str
    stopped_detail: str = ""


class UnreadableRecord(BaseModel):
    run_id: str | None
    problem: str


def parse_records(extras: list[tuple[str | None, Any]]) -> tuple[list[CycleRecord], list[UnreadableRecord]]:
    """Validate stored records (oldest first); unreadable ones are returned separately, never dropped silently."""
    good, bad = [], []
    for run_id, extra in extras:
        try:
            good.append(CycleRecord.model_validate(extra))
        except ValidationError as exc:
            bad.append(UnreadableRecord(run_id=run_id, problem=f"{exc.error_count()} validation error(s)"))
    return good, bad
