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


class PrStateChange(BaseModel):
    """A Leviathan PR that a human merged or closed since the last cycle (PR lifecycle sync)."""

    number: int
    task_id: str
    branch: str
    state: Literal["merged", "closed"]
    task_hash: str | None = None
    branch_deleted: bool = False


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
    #: Backfill runs replay the guardrails on the backlog as it was at their logical date; nothing runs.
    replay: bool = False
    #: This cycle's failed attempt was the one that opened the circuit breaker.
    breaker_opened: bool = False
    logical_date: datetime | None = None
    pr_sync: list[PrStateChange] = Field(default_factory=list)


class BreakerResetRecord(BaseModel):
    """An operator closed the circuit breaker (``leviathan breaker reset``): who, when and why."""

    model_config = ConfigDict(extra="forbid")

    evidence_version: Literal[1] = EVIDENCE_VERSION
    kind: Literal["breaker_reset"] = "breaker_reset"
    target_id: str
    reset_at: datetime
    by: str
    reason: str


class AutonomyChangedRecord(BaseModel):
    """The global (``target_id`` None) or a target's autonomy switch was changed, by whom and why."""

    model_config = ConfigDict(extra="forbid")

    evidence_version: Literal[1] = EVIDENCE_VERSION
    kind: Literal["autonomy_changed"] = "autonomy_changed"
    target_id: str | None = None
    enabled: bool
    changed_at: datetime
    by: str
    reason: str = ""


class UnreadableRecord(BaseModel):
    run_id: str | None
    problem: str


class History(BaseModel):
    """What earlier cycles and operators left on a target's evidence asset, oldest first."""

    cycles: list[CycleRecord] = Field(default_factory=list)
    resets: list[BreakerResetRecord] = Field(default_factory=list)
    unreadable: list[UnreadableRecord] = Field(default_factory=list)

    @property
    def breaker_reset_at(self) -> datetime | None:
        return max((r.reset_at for r in self.resets), default=None)


def parse_records(extras: list[tuple[str | None, Any]]) -> History:
    """Validate stored records (oldest first); unreadable ones are kept apart, never dropped silently."""
    history = History()
    for run_id, extra in extras:
        kind = extra.get("kind") if isinstance(extra, dict) else None
        model = BreakerResetRecord if kind == "breaker_reset" else CycleRecord
        try:
            record = model.model_validate(extra)
        except ValidationError as exc:
            problem = f"{exc.error_count()} validation error(s), first: {exc.errors()[0]['msg']}"
            history.unreadable.append(UnreadableRecord(run_id=run_id, problem=problem))
            continue
        (history.resets if kind == "breaker_reset" else history.cycles).append(record)
    return history
