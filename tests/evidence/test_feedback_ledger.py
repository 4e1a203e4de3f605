"""The ledger folds review feedback: seen ids only grow, a request waits until an attempt continues its PR."""

from __future__ import annotations

from datetime import UTC, datetime

from leviathan_lib.evidence.events import events_from
from leviathan_lib.evidence.records import AttemptEvidence, CycleRecord, Ledger, LedgerPR, LifecycleAction

T = datetime(2026, 1, 1, tzinfo=UTC)
PR = LedgerPR(number=1, task_id="a", branch="agent/a/1", task_hash="h", head_sha="1" * 40)


def _record(lifecycle=(), attempt=None) -> CycleRecord:
    return CycleRecord(target_id="t", dag_run_id="r", recorded_at=T, decision="run", stopped_reason="x",
                       lifecycle=list(lifecycle), attempt=attempt)


def _action(kind, **kw) -> LifecycleAction:
    return LifecycleAction(kind=kind, number=1, task_id="a", branch="agent/a/1", **kw)


def test_a_request_is_pending_until_an_attempt_continues_the_pr_and_seen_ids_never_go_back():
    ledger = Ledger(open_prs=[PR])
    request = _action("changes_requested", author="alice", review_id=7, feedback="fix", seen_review_id=7,
                      seen_comment_id=3)
    ledger = ledger.with_cycle(_record([request, _action("feedback_ignored", reason="command_not_permitted",
                                                         author="bob", comment_id=2, seen_review_id=7,
                                                         seen_comment_id=3)]))
    [pr] = ledger.open_prs
    assert (pr.seen_review_id, pr.seen_comment_id, pr.pending.feedback) == (7, 3, "fix")
    ledger = ledger.with_cycle(_record())  # held back (say the breaker): still pending
    assert ledger.open_prs[0].pending is not None
    attempt = AttemptEvidence(task_id="a", attempt=2, task_hash="h", branch="agent/a/1", backend="local",
                              outcome="succeeded", finished_at=T, pr_number=1, pr_head_sha="2" * 40,
                              continued_pr=1, continue_why="changes_requested")
    ledger = ledger.with_cycle(_record(attempt=attempt))
    [pr] = ledger.open_prs  # the same PR, not a second entry
    assert (pr.pending, pr.head_sha, pr.seen_review_id) == (None, "2" * 40, 7)
    assert ledger.attempt_counts == {"a": 1} and ledger.refresh_counts == {} and ledger.prs_opened_at == []  # counted
    for reason in ("feedback_attempts_exhausted", "review_rounds_exhausted"):
        dropped = _action("feedback_ignored", reason=reason, author="alice", seen_review_id=5, seen_comment_id=9)
        pr = LedgerPR(**{**PR.model_dump(), "pending": request.model_dump(), "seen_review_id": 7}).with_feedback(
            dropped)
        assert (pr.pending, pr.seen_review_id, pr.seen_comment_id) == (None, 7, 9)


def test_feedback_and_continuations_are_events():
    attempt = AttemptEvidence(task_id="a", attempt=2, task_hash="h", branch="agent/a/1", backend="local",
                              outcome="succeeded", finished_at=T, pr_number=1, pr_url="u", pr_head_sha="2" * 40,
                              continued_pr=1, continue_why="retry_command")
    record = _record([_action("retry_command", author="alice", comment_id=4),
                      _action("feedback_ignored", author="bob", reason="command_malformed", comment_id=5)], attempt)
    events = events_from([(1, T, "r", record.model_dump(mode="json"))])
    types = [e.type for e in events]
    assert "pr.retry_command" in types and "pr.feedback_ignored" in types and "pr.created" not in types
    continued = next(e for e in events if e.type == "pr.updated")
    assert continued.data["number"] == 1 and continued.data["why"] == "retry_command"
    ignored = next(e for e in events if e.type == "pr.feedback_ignored")
    assert (ignored.data["author"], ignored.data["reason"]) == ("bob", "command_malformed")


def test_every_lifecycle_kind_projects_to_a_known_event_type():
    from typing import get_args

    from leviathan_lib.evidence.events import EventType
    from leviathan_lib.evidence.records import LifecycleKind

    kinds = {f"pr.{kind.removeprefix('pr_')}" for kind in get_args(LifecycleKind)}
    assert {"pr.reply_posted", "pr.reply_failed", "pr.rebase_command"} <= kinds <= set(get_args(EventType))
