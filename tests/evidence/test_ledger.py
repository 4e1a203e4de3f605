"""The bounded ledger and the running totals: folding them equals counting the whole history."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from leviathan_lib.core.guardrails import AttemptRecord, CycleState, failure_streak, llm_budget
from leviathan_lib.cycle.decision import guardrail_inputs
from leviathan_lib.evidence.records import (
    BUDGET_WINDOW,
    RECENT_ATTEMPTS,
    AttemptEvidence,
    CycleRecord,
    History,
    Ledger,
    LedgerAttempt,
    PrStateChange,
    Totals,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _record(i: int, *, outcome: str | None, task: str, cost: float = 0.0, at: datetime = T0,
            reasons: tuple[str, ...] = (), pr: bool = False) -> CycleRecord:
    attempt = None if outcome is None else AttemptEvidence(
        task_id=task, attempt=1, task_hash="h", branch=f"agent/{task}/1", backend="local", outcome=outcome,
        started_at=at - timedelta(seconds=45), finished_at=at, cost_usd=cost, pr_number=i if pr else None)
    decision = "run" if attempt else ("error" if "repo_unreachable" in reasons else "skip")
    return CycleRecord(target_id="x", dag_run_id=f"run-{i}", recorded_at=at, decision=decision,
                       reasons=list(reasons), stopped_reason=reasons[0] if reasons else "done", attempt=attempt)


def _history(n: int, seed: int) -> list[CycleRecord]:
    rng = random.Random(seed)
    records = []
    at = T0
    for i in range(n):
        at += timedelta(minutes=rng.choice([1, 5, 30]))
        if rng.random() < 0.3:
            records.append(_record(i, outcome=None, task="-", at=at, reasons=rng.choice(
                [("open_pr_limit",), ("circuit_breaker_open", "no_eligible_task"), ("repo_unreachable",),
                 ("not-a-code",)])))
        else:
            records.append(_record(i, outcome=rng.choice(["succeeded", "failed", "failed", "timed_out"]),
                                   task=f"t{rng.randrange(20)}", cost=rng.choice([0.0, 0.25]),
                                   pr=rng.random() < 0.2, at=at))
    return records


def _every_attempt(records: list[CycleRecord]) -> list[LedgerAttempt]:
    return [LedgerAttempt(task_id=r.attempt.task_id, outcome=r.attempt.outcome, finished_at=r.attempt.finished_at,
                          cost_usd=r.attempt.cost_usd or 0.0) for r in records if r.attempt]


@pytest.mark.parametrize("seed", range(5))
def test_the_bounded_ledger_decides_like_every_attempt_would(seed):
    from leviathan_lib.core.config import TargetConfig

    records = _history(3000, seed)
    ledger = Ledger()
    for record in records:
        ledger = ledger.with_cycle(record)
    every = _every_attempt(records)
    assert len(ledger.recent_attempts) <= RECENT_ATTEMPTS < len(every)
    attempts, _ = guardrail_inputs(ledger)
    reference_attempts = sorted((AttemptRecord(**a.model_dump(exclude={"continued_pr", "continue_why"}))
                                 for a in every), key=lambda a: a.finished_at)
    for reset in (None, every[-5].finished_at, every[len(every) // 2].finished_at):
        assert failure_streak(attempts, reset) == failure_streak(reference_attempts, reset)
    counts: dict[str, int] = {}
    for a in every:
        counts[a.task_id] = counts.get(a.task_id, 0) + 1
    assert ledger.attempt_counts == counts
    target = TargetConfig.model_validate({
        "target_id": "x", "target_repo_url": "https://example.invalid/x.git", "executor": "llm", "llm_daily_usd": 5.0})
    for now in (every[-1].finished_at, every[-1].finished_at + timedelta(hours=3)):
        assert llm_budget(target, CycleState(attempts=attempts, now=now)) == llm_budget(
            target, CycleState(attempts=reference_attempts, now=now))


def test_a_flood_of_attempts_within_the_budget_window_over_counts_never_under():
    ledger = Ledger()
    for i in range(RECENT_ATTEMPTS + 50):
        ledger = ledger.with_attempt(LedgerAttempt(task_id="t", outcome="succeeded",
                                                   finished_at=T0 + timedelta(seconds=i), cost_usd=0.01))
    assert len(ledger.recent_attempts) == RECENT_ATTEMPTS
    assert sum(a.cost_usd for a in ledger.recent_attempts) == pytest.approx(0.01 * (RECENT_ATTEMPTS + 50))
    assert ledger.recent_attempts[0].finished_at > T0  # the dropped costs moved onto a newer attempt
    later = ledger.with_attempt(LedgerAttempt(task_id="t", outcome="succeeded",
                                              finished_at=T0 + BUDGET_WINDOW * 2))
    assert [a.finished_at for a in later.recent_attempts] == [T0 + BUDGET_WINDOW * 2]  # out of the window


def test_a_ledger_from_before_the_bound_still_reads_and_folds_its_attempt_list():
    old = {"attempts": [{"task_id": "a", "outcome": "succeeded", "finished_at": T0.isoformat()},
                        {"task_id": "a", "outcome": "failed", "finished_at": (T0 + timedelta(days=3)).isoformat()},
                        {"task_id": "b", "outcome": "timed_out", "finished_at": (T0 + timedelta(days=4)).isoformat(),
                         "cost_usd": 1.5}],
           "open_prs": [], "closed_prs": [{"task_id": "a", "task_hash": "1"}, {"task_id": "a", "task_hash": "2"}],
           "breaker_reset_at": None, "prs_opened_at": []}
    ledger = Ledger.model_validate(old)
    assert ledger.attempt_counts == {"a": 2, "b": 1}
    assert [a.outcome for a in ledger.recent_attempts] == ["succeeded", "failed", "timed_out"]
    attempts, closed = guardrail_inputs(ledger)
    assert failure_streak(attempts, None) == 2
    # A record written before the totals still validates; its totals are unknown, not zero.
    record = CycleRecord.model_validate({"target_id": "x", "dag_run_id": "r", "recorded_at": T0.isoformat(),
                                         "decision": "skip", "stopped_reason": "open_pr_limit", "ledger": old})
    assert record.totals is None
    assert History(cycles=[record]).totals() is None
    assert History(cycles=[record]).totals(complete=True) == Totals(since=T0, cycles={"skip": 1},
                                                                    scorecard_since=T0)
    # Later closures of a task replace earlier ones: the ledger keeps one per task.
    closing = CycleRecord(target_id="x", dag_run_id="r2", recorded_at=T0, decision="skip", stopped_reason="s",
                          pr_sync=[PrStateChange(number=9, task_id="a", branch="agent/a/3", state="closed",
                                                 task_hash="3")])
    assert [(c.task_id, c.task_hash) for c in ledger.with_cycle(closing).closed_prs] == [("a", "3")]
    assert [(c.task_id, c.task_hash) for c in closed] == [("a", "1"), ("a", "2")]  # as stored, latest wins


def test_running_totals_equal_a_count_of_every_record_and_survive_pruning():
    records = _history(500, seed=7)
    totals = Totals(since=records[0].recorded_at)
    carried = []
    for record in records:
        totals = totals.with_cycle(record)
        carried.append(record.model_copy(update={"totals": totals}))
    counted = History(cycles=records).totals(complete=True)
    assert counted == totals
    assert sum(totals.cycles.values()) == 500 and set(totals.cycles) <= {"run", "skip", "error"}
    assert totals.skips.get("other", 0) > 0  # unknown codes and error codes: bounded labels
    assert "not-a-code" not in totals.skips and "repo_unreachable" not in totals.skips
    assert totals.prs_opened == sum(1 for r in records if r.attempt and r.attempt.pr_number is not None)
    assert sum(totals.duration_counts) == sum(totals.attempts.values())
    # Retention drops old records; the newest carried totals (and records without totals after them) count all.
    newest_only = History(cycles=carried[-1:])
    assert newest_only.totals() == totals
    untallied = records[-1].model_copy(update={"dag_run_id": "late", "totals": None})
    assert History(cycles=[*carried[-3:], untallied]).totals() == totals.with_cycle(untallied)
    # The run's own earlier record is left out of what the run adds to.
    assert History(cycles=carried).totals(exclude_run_id=carried[-1].dag_run_id) == carried[-2].totals


def test_red_at_base_is_no_attempt_for_counts_breaker_or_budget_and_holds_its_task_at_its_commit():
    """An attempt that found the repository's checks red on the pinned commit is the repository's state: the
    ledger does not count it, and only the same commit holds its task back (the decision builder's input)."""
    from leviathan_lib.cycle.decision import state_from_ledger

    failed = _record(1, outcome="failed", task="a", at=T0)
    red = _record(2, outcome="checks_red_at_base", task="a", at=T0 + timedelta(minutes=5), cost=0.5)
    red.commit_sha = "c" * 40
    ledger = Ledger().with_cycle(failed).with_cycle(red)
    assert ledger.attempt_counts == {"a": 1} and [a.outcome for a in ledger.recent_attempts] == ["failed"]
    assert ledger.red_at_base == {"a": "c" * 40}
    state = state_from_ledger(ledger, global_autonomy=True, now=None, open_prs=[])
    assert failure_streak(state.attempts, state.breaker_reset_at) == 1 and state.red_at_base == []
    at_commit = state_from_ledger(ledger, global_autonomy=True, now=None, open_prs=[], commit_sha="c" * 40)
    assert at_commit.red_at_base == ["a"]
    assert state_from_ledger(ledger, global_autonomy=True, now=None, open_prs=[], commit_sha="d" * 40).red_at_base == []
    # The task's next real attempt lifts it, whatever its outcome; the totals count it by its own outcome.
    again = Ledger.model_validate(ledger.model_dump()).with_cycle(_record(3, outcome="succeeded", task="a"))
    assert again.red_at_base == {} and again.attempt_counts == {"a": 2}
    totals = Totals().with_cycle(failed).with_cycle(red)
    assert totals.attempts == {"failed": 1, "checks_red_at_base": 1}
