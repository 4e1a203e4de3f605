"""The ledger's two budgets: failures and human rounds, each per task id and definition hash."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leviathan_lib.evidence.records import ApprovalEvidence, AttemptEvidence, CycleRecord, Ledger

T = datetime(2026, 1, 1, tzinfo=UTC)


def _attempt(outcome: str, task_hash: str = "h1", why: str | None = None) -> AttemptEvidence:
    return AttemptEvidence(task_id="a", attempt=1, task_hash=task_hash, branch="agent/a/1", backend="local",
                           outcome=outcome, finished_at=T, continued_pr=1 if why else None, continue_why=why)


def _record(attempt: AttemptEvidence | None = None, rejected: str | None = None) -> CycleRecord:
    approval = ApprovalEvidence(gate="pull_request", task_id="a", task_hash=rejected, choice="rejected",
                                reason="human") if rejected else None
    return CycleRecord(target_id="t", dag_run_id="r", recorded_at=T, decision="run", stopped_reason="x",
                       attempt=attempt, approval=approval)


def _fold(*records: CycleRecord) -> Ledger:
    ledger = Ledger()
    for record in records:
        ledger = ledger.with_cycle(record)
    return ledger


def _counts(counts) -> dict[str, tuple[str, int]]:
    return {task: (c.task_hash, c.count) for task, c in counts.items()}


@pytest.mark.parametrize("outcome", ["failed", "timed_out", "rejected_by_guardrail"])
def test_failed_timed_out_and_refused_attempts_use_the_failure_budget(outcome):
    assert _counts(_fold(_record(_attempt(outcome)), _record(_attempt(outcome))).failures) == {"a": ("h1", 2)}


@pytest.mark.parametrize("outcome", ["succeeded", "rejected_by_human", "checks_red_at_base"])
def test_other_outcomes_are_no_failure(outcome):
    assert _fold(_record(_attempt(outcome))).failures == {}


def test_a_failed_refresh_is_bounded_by_max_pr_refreshes_not_by_the_failure_budget():
    assert _fold(_record(_attempt("failed", why="pr_conflicted"))).failures == {}


def test_a_new_definition_starts_both_budgets_afresh():
    ledger = _fold(_record(_attempt("failed")), _record(_attempt("failed")),
                   _record(_attempt("succeeded", why="retry_command")), _record(_attempt("failed", "h2")))
    assert _counts(ledger.failures) == {"a": ("h2", 1)}
    assert _counts(ledger.review_rounds) == {"a": ("h1", 1)}
    ledger = ledger.with_cycle(_record(_attempt("succeeded", "h2", why="changes_requested")))
    assert _counts(ledger.review_rounds) == {"a": ("h2", 1)}


def test_served_requests_and_gate_rejections_are_human_rounds_a_ci_fix_is_not():
    ledger = _fold(_record(_attempt("succeeded", why="changes_requested")),
                   _record(_attempt("failed", why="retry_command")),  # served, whatever its outcome
                   _record(_attempt("succeeded", why="ci_failed")),
                   _record(rejected="h1"),  # a plan gate rejection: no attempt
                   # a rejected attempt that served a request is one round, not two
                   _record(_attempt("rejected_by_human", why="retry_command"), rejected="h1"))
    assert _counts(ledger.review_rounds) == {"a": ("h1", 4)}
    assert _counts(ledger.failures) == {"a": ("h1", 1)}


def test_red_at_base_serves_no_request_and_uses_no_round():
    assert _fold(_record(_attempt("checks_red_at_base", why="changes_requested"))).review_rounds == {}


def test_a_ledger_from_before_the_budgets_still_loads_and_starts_them_at_zero():
    old = {"attempt_counts": {"a": 2}, "refresh_counts": {}, "recent_attempts": [], "open_prs": []}
    ledger = Ledger.model_validate(old)
    assert (ledger.attempt_counts, ledger.failures, ledger.review_rounds) == ({"a": 2}, {}, {})
    assert Ledger.model_validate_json(ledger.model_dump_json()) == ledger
