"""The scorecard from running totals: counting, the difference for ``--since``, the fleet sum, empty rates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from leviathan_lib.evidence.records import (
    MERGE_BUCKETS,
    AttemptEvidence,
    CheckRunEvidence,
    CycleRecord,
    PrStateChange,
    Totals,
)
from leviathan_lib.evidence.scorecard import NONE, Scorecard, combine, counts_later, median_text, scorecard

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _attempt(i: int, *, checks: tuple[bool, ...] = (), cost: float | None = None,
             outcome: str = "succeeded") -> AttemptEvidence:
    """Checks pass on base; on the change as ``checks`` say (none ran on the change when red at base)."""
    runs = [CheckRunEvidence(name=f"c{n}", phase="base", passed=outcome != "checks_red_at_base")
            for n in range(len(checks))]
    if outcome != "checks_red_at_base":
        runs += [CheckRunEvidence(name=f"c{n}", phase="change", passed=passed) for n, passed in enumerate(checks)]
    return AttemptEvidence(task_id=f"t{i}", attempt=1, task_hash="h", branch=f"agent/t{i}/1", backend="local",
                           outcome=outcome, pr_number=i if outcome == "succeeded" else None, cost_usd=cost,
                           checks=runs)


def _change(number: int, state: str, *, hours: float | None = None, ci: str | None = None) -> PrStateChange:
    opened = T0 if hours is not None else None
    return PrStateChange(number=number, task_id=f"t{number}", branch=f"agent/t{number}/1", state=state,
                         opened_at=opened, decided_at=T0 + timedelta(hours=hours) if hours is not None else None,
                         ci_first_push=ci)


def _record(i: int, *, attempt: AttemptEvidence | None = None, sync: tuple[PrStateChange, ...] = ()) -> CycleRecord:
    return CycleRecord(target_id="x", dag_run_id=f"run-{i}", recorded_at=T0 + timedelta(minutes=i),
                       decision="run" if attempt else "skip", stopped_reason="done", attempt=attempt,
                       pr_sync=list(sync))


def _fold(records: list[CycleRecord], totals: Totals | None = None) -> Totals:
    totals = totals or Totals(since=records[0].recorded_at)
    for record in records:
        totals = totals.with_cycle(record)
    return totals


HISTORY = [
    _record(1, attempt=_attempt(1, checks=(True, True), cost=0.25)),
    _record(2, attempt=_attempt(2, checks=(True, False), cost=0.5, outcome="failed")),
    _record(3, attempt=_attempt(3, cost=0.25), sync=(_change(1, "merged", hours=0.05, ci="success"),)),
    _record(4, attempt=_attempt(4, checks=(False,), outcome="checks_red_at_base")),
    _record(5, sync=(_change(3, "merged", hours=30, ci="failure"), _change(4, "closed", hours=1, ci="failure"))),
    _record(6, sync=(_change(1, "reverted"),)),
]


def test_totals_count_the_scorecard_and_the_card_reads_them():
    totals = _fold(HISTORY)
    assert (totals.prs_merged, totals.prs_closed, totals.prs_reverted, totals.prs_opened) == (2, 1, 1, 2)
    assert totals.merge_counts == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]  # 3 min (≤ 10 min) and 30 h (1–2 d)
    assert totals.merge_seconds_sum == 180 + 30 * 3600
    assert (totals.checks_ran, totals.checks_passed) == (2, 1)  # red at base: no change was checked
    assert totals.ci_first_push == {"passed": 1, "failed": 2} and totals.cost_usd == 1.0
    assert totals.scorecard_since == T0 + timedelta(minutes=1)

    card = scorecard("x", totals)
    assert card.attempts == 3  # checks_red_at_base is no attempt at a change
    assert card.cells() == {
        "opened": "2", "merged": "2", "closed": "1", "reverted": "1", "merge_rate": "67% (2/3)",
        "median_merge": "≤ 2d", "checks_pass": "50% (1/2)", "ci_first_push": "33% (1/3)",
        "attempts_per_merged": "1.5", "cost_per_merged": "$0.50"}
    assert card.median_merge == (0.0, 172800.0)  # two merges: the median lies between their buckets
    document = card.document()
    assert document["median_time_to_merge"] == {"low_seconds": 0.0, "high_seconds": 172800.0,
                                                "estimate": "histogram bucket"}
    assert (document["merge_rate"], document["ci_first_push"]) == (0.6667, {"passed": 1, "failed": 2,
                                                                             "rate": 0.3333})


def test_since_is_the_newest_totals_minus_the_totals_stored_before_it():
    before = _fold(HISTORY[:2])
    newest = _fold(HISTORY[2:], before)
    since = T0 + timedelta(minutes=2, seconds=30)
    card = scorecard("x", newest, before, since=since)
    assert (card.prs_opened, card.prs_merged, card.prs_closed, card.prs_reverted) == (1, 2, 1, 1)
    assert (card.checks_ran, card.checks_passed, card.ci_passed, card.ci_failed) == (0, 0, 1, 2)
    assert (card.attempts, card.cost_usd, card.since, card.scorecard_since) == (1, 0.25, since, since)
    assert card.cells()["checks_pass"] == NONE and card.cells()["cost_per_merged"] == "$0.12"
    assert not counts_later(card)
    everything = scorecard("x", newest)
    assert everything.since == T0 + timedelta(minutes=1) and everything.prs_opened == 2
    # Nothing recorded since the newest totals: every count zero, every rate "—".
    idle = scorecard("x", newest, newest, since=T0 + timedelta(days=1))
    assert idle.cells() == {"opened": "0", "merged": "0", "closed": "0", "reverted": "0", "merge_rate": NONE,
                            "median_merge": NONE, "checks_pass": NONE, "ci_first_push": NONE,
                            "attempts_per_merged": NONE, "cost_per_merged": NONE}
    document = idle.document()
    assert (document["merge_rate"], document["median_time_to_merge"], document["cost_per_merged_pr_usd"]) == (
        None, None, None)


def test_totals_from_before_the_scorecard_read_as_zero_and_say_since_when():
    legacy = Totals.model_validate({"since": T0.isoformat(), "cycles": {"run": 4}, "attempts": {"succeeded": 4},
                                    "prs_opened": 4, "duration_counts": [0] * 10, "duration_sum": 0.0})
    assert (legacy.prs_merged, legacy.merge_counts, legacy.scorecard_since) == (0, [0] * 11, None)
    newest = _fold(HISTORY[4:], legacy)
    card = scorecard("x", newest)
    assert (card.prs_opened, card.prs_merged, card.since) == (4, 1, T0)
    assert card.scorecard_since == HISTORY[4].recorded_at and counts_later(card)
    since = T0 - timedelta(days=1)  # a baseline from before the scorecard: its counters are zero, not unknown
    card = scorecard("x", newest, legacy, since=since)
    assert (card.prs_opened, card.prs_merged, card.scorecard_since) == (0, 1, HISTORY[4].recorded_at)
    # The first record counted names the start; totals that counted records without naming one keep it unknown.
    assert Totals().with_cycle(HISTORY[0]).since == HISTORY[0].recorded_at
    assert Totals(cycles={"run": 2}).with_cycle(HISTORY[0]).since is None


def test_a_merge_histogram_of_another_shape_does_not_validate():
    with pytest.raises(ValidationError, match=r"merge_counts\n.*expected 11 counts \(MERGE_BUCKETS and \+Inf\), got 3"):
        Totals.model_validate({"merge_counts": [1, 2, 3]})


def test_the_fleet_sums_its_targets():
    a = scorecard("a", _fold(HISTORY))
    b = scorecard("b", _fold([_record(9, sync=(_change(7, "merged", hours=0.5),))]))
    fleet = combine([a, b])
    assert fleet.target_id is None
    assert (fleet.prs_merged, fleet.prs_closed, fleet.attempts, fleet.cost_usd) == (3, 1, 3, 1.0)
    assert fleet.merge_counts == [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert fleet.since == a.since and fleet.scorecard_since == b.scorecard_since
    assert fleet.cells()["merge_rate"] == "75% (3/4)" and fleet.cells()["median_merge"] == "10m–1h"
    assert fleet.cells()["attempts_per_merged"] == "1.0" and fleet.cells()["cost_per_merged"] == "$0.33"
    assert combine([]) == Scorecard()
    assert combine([]).cells()["merge_rate"] == NONE


def test_the_median_names_the_buckets_that_hold_it():
    def card(*seconds_buckets: int) -> Scorecard:
        counts = [0] * (len(MERGE_BUCKETS) + 1)
        for bucket in seconds_buckets:
            counts[bucket] += 1
        return Scorecard(merge_counts=counts)

    assert median_text(card(1).median_merge) == "10m–1h"
    assert median_text(card(0, 2, 2).median_merge) == "1h–4h"
    assert median_text(card(2, 5).median_merge) == "1h–2d"
    assert median_text(card(10, 10).median_merge) == "> 30d"
    assert median_text(card().median_merge) == NONE
