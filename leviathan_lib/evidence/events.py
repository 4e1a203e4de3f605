"""The ordered event stream, derived from the evidence records.

Records are the source of truth (one asset event each); events are a pure, deterministic projection
of them, so every consumer (the Spider plugin, ``leviathan evidence``) sees the same stream. Event ids
are ``asset_event_id * 100 + n`` with ``n`` the event's position within its record: monotonic, and a
consumer resumes with ``after=<last id>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from leviathan_lib.evidence.records import (
    AttemptEvidence,
    AutonomyChangedRecord,
    BreakerResetRecord,
    CycleRecord,
    FleetBreakerResetRecord,
)

EVENTS_PER_RECORD = 100

EventType = Literal[
    "cycle.started", "guardrail.skipped", "attempt.created", "attempt.started", "attempt.succeeded",
    "attempt.failed", "attempt.timed_out", "pr.created", "pr.merged", "pr.closed", "branch.deleted", "branch.kept",
    "pr.human_edited", "pr.branch_deleted", "pr.superseded", "pr.refresh_limit", "pr.refreshed", "pr.updated",
    "dashboard.created", "dashboard.updated", "dashboard.closed", "dashboard.update_failed",
    "pr.changes_requested", "pr.retry_command", "pr.rebase_command", "pr.feedback_ignored",
    "pr.ci_passed", "pr.ci_failed", "pr.ci_pending", "pr.ci_unknown", "pr.ci_fix_limit",
    "pr.awaiting_ci", "pr.ci_branch_deleted", "pr.reverted", "pr.reply_posted", "pr.reply_failed",
    "attempt.rejected", "approval.approved", "approval.rejected",
    "breaker.opened",
    "breaker.reset", "fleet_breaker.reset", "autonomy.changed", "evidence.unreadable", "target.config_invalid",
    "attempt.checks_red_at_base",
]


class Event(BaseModel):
    id: int
    type: EventType
    target_id: str | None
    at: datetime
    run_id: str | None = None
    data: dict[str, Any]


def _attempt_events(attempt: AttemptEvidence, at: datetime) -> list[tuple[str, datetime, dict[str, Any]]]:
    ident = {"task_id": attempt.task_id, "attempt": attempt.attempt, "branch": attempt.branch}
    finished = attempt.finished_at or at
    outcome = attempt.outcome or "failed"
    kind = {"succeeded": "attempt.succeeded", "timed_out": "attempt.timed_out",
            "rejected_by_human": "attempt.rejected",
            "checks_red_at_base": "attempt.checks_red_at_base"}.get(outcome, "attempt.failed")
    out: list[tuple[str, datetime, dict[str, Any]]] = [
        ("attempt.created", at, {**ident, "task_hash": attempt.task_hash, "backend": attempt.backend}),
        ("attempt.started", attempt.started_at or at, ident),
        (kind, finished, {**ident, "outcome": outcome, "error_code": attempt.error_code,
                          "changed_paths": attempt.changed_paths}),
    ]
    if attempt.pr_number is not None:
        # An attempt that delivered to its open PR brought it up to date (a conflict) or updated it.
        kind = "pr.created" if attempt.continued_pr is None else \
            "pr.refreshed" if attempt.continue_why == "pr_conflicted" else "pr.updated"
        out.append((kind, finished, {**ident, "number": attempt.pr_number, "url": attempt.pr_url,
                                     "head_sha": attempt.pr_head_sha, "why": attempt.continue_why,
                                     "note": attempt.delivery_note}))
    elif attempt.awaiting_ci:  # pushed; its PR opens once CI passes (pr_creation: checks_pass)
        out.append(("pr.awaiting_ci", finished, {**ident, "head_sha": attempt.pr_head_sha,
                                                 "why": attempt.continue_why}))
    return out


def _cycle_events(record: CycleRecord) -> list[tuple[str, datetime, dict[str, Any]]]:
    at = record.recorded_at
    out: list[tuple[str, datetime, dict[str, Any]]] = [
        ("cycle.started", at, {"commit_sha": record.commit_sha, "decision": record.decision,
                               "replay": record.replay}),
    ]
    for change in record.pr_sync:
        out.append((f"pr.{change.state}", at, change.model_dump(mode="json")))
        branch = {"number": change.number, "task_id": change.task_id, "branch": change.branch}
        if change.branch_deleted:
            out.append(("branch.deleted", at, branch))
        elif change.branch_kept:
            out.append(("branch.kept", at, {**branch, "reason": change.branch_kept}))
    for action in record.lifecycle:  # kinds are reason codes: pr_superseded -> pr.superseded
        out.append((f"pr.{action.kind.removeprefix('pr_')}", at, action.model_dump(mode="json")))
    if record.dashboard is not None:
        out.append((f"dashboard.{record.dashboard.kind.removeprefix('dashboard_')}", at,
                    record.dashboard.model_dump(mode="json", exclude_defaults=True)))
    if record.stopped_reason == "config_invalid":
        out.append(("target.config_invalid", at, {"detail": record.stopped_detail}))
    elif record.decision != "run":
        out.append(("guardrail.skipped", at, {"reasons": record.reasons, "detail": record.stopped_detail}))
    attempt = record.attempt
    if attempt is not None:
        out += _attempt_events(attempt, at)
    if record.approval is not None:
        decided = record.approval
        out.append((f"approval.{decided.choice}", decided.at or at, decided.model_dump(mode="json")))
    if record.breaker_opened:
        out.append(("breaker.opened", at, {"after_task": attempt.task_id if attempt else None}))
    return out


def events_from(rows: list[tuple[int, datetime, str | None, Any]]) -> list[Event]:
    """Project asset-event rows ``(asset_event_id, timestamp, run_id, extra)`` (ascending id) to events."""
    events: list[Event] = []
    for row_id, timestamp, run_id, extra in rows:
        kind = extra.get("kind") if isinstance(extra, dict) else None
        items: list[tuple[str, datetime, dict[str, Any]]]
        target_id = extra.get("target_id") if isinstance(extra, dict) else None
        try:
            if kind == "cycle":
                items = _cycle_events(CycleRecord.model_validate(extra))
            elif kind == "breaker_reset":
                reset = BreakerResetRecord.model_validate(extra)
                items = [("breaker.reset", reset.reset_at, {"by": reset.by, "reason": reset.reason})]
            elif kind == "fleet_breaker_reset":
                fleet = FleetBreakerResetRecord.model_validate(extra)
                items = [("fleet_breaker.reset", fleet.reset_at, {"by": fleet.by, "reason": fleet.reason})]
            elif kind == "autonomy_changed":
                change = AutonomyChangedRecord.model_validate(extra)
                items = [("autonomy.changed", change.changed_at,
                          {"enabled": change.enabled, "by": change.by, "reason": change.reason, "how": change.how,
                           "outside": change.outside})]
            else:
                raise ValueError(f"unknown record kind {kind!r}")
        except (ValidationError, ValueError) as exc:
            problem = str(exc).splitlines()[0]
            items = [("evidence.unreadable", timestamp, {"asset_event_id": row_id, "problem": problem})]
        for n, (event_type, at, data) in enumerate(items[:EVENTS_PER_RECORD]):
            events.append(Event(id=row_id * EVENTS_PER_RECORD + n, type=event_type,
                                target_id=target_id if isinstance(target_id, str) else None,
                                at=at, run_id=run_id, data=data))
    return events
