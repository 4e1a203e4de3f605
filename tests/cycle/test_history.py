"""The history window: the newest events and their ledger, or the full fold when the window cannot tell."""

from datetime import UTC, datetime, timedelta

from leviathan_lib.cycle import history as window
from leviathan_lib.evidence.records import AttemptEvidence, CycleRecord, Ledger, LedgerAttempt, Totals

T0 = datetime(2026, 2, 1, tzinfo=UTC)


class Events:
    """Stored events, oldest first, that count how they were read."""

    def __init__(self, events, *, now=None):
        self.events, self.now = events, now  # now: the clock of recent(); None: every event is recent
        self.reads: list[str] = []

    def newest(self, limit):
        self.reads.append(f"newest {limit}")
        return list(reversed(self.events))[:limit]

    def recent(self, limit, within):
        self.reads.append(f"recent {limit}")
        after = self.now - within if self.now else None
        def at(extra):
            return datetime.fromisoformat(extra.get("recorded_at") or extra["reset_at"])

        return [e for e in reversed(self.events) if after is None or at(e[1]) >= after][:limit]

    def everything(self):
        self.reads.append("everything")
        return iter(self.events)


def _record(i: int, *, ledger: bool = True, outcome: str = "failed") -> tuple[str, dict]:
    at = T0 + timedelta(minutes=i)
    attempt = AttemptEvidence(task_id="t", attempt=i + 1, task_hash="h", branch=f"agent/t/{i + 1}",
                              backend="local", outcome=outcome, finished_at=at)
    record = CycleRecord(target_id="x", dag_run_id=f"run-{i}", recorded_at=at, decision="run",
                         stopped_reason=outcome, attempt=attempt)
    if ledger:
        previous = Ledger(attempt_counts={"t": i} if i else {},
                          recent_attempts=[LedgerAttempt(task_id="t", outcome="failed", finished_at=T0)] * i)
        record.ledger = previous.with_cycle(record)
        record.totals = Totals(since=T0, cycles={"run": i}).with_cycle(record)
    return f"run-{i}", record.model_dump(mode="json")


def test_a_live_cycle_reads_only_the_window_and_uses_the_newest_ledger():
    events = Events([_record(i) for i in range(window.RECENT_EVENTS + 5)])
    history, ledger, totals = window.history_window(events, "run-new", None)
    assert events.reads == [f"recent {window.NEWEST_EVENTS}"]
    assert len(history.cycles) == window.NEWEST_EVENTS and ledger.attempt_counts == {"t": window.RECENT_EVENTS + 5}
    assert totals is not None and totals.cycles == {"run": window.RECENT_EVENTS + 5}


def test_the_runs_own_record_is_left_out():
    events = Events([_record(0), _record(1)])
    _, ledger, totals = window.history_window(events, "run-1", None)
    assert ledger.attempt_counts == {"t": 1} and totals is not None and totals.cycles == {"run": 1}


def test_a_short_history_without_ledgers_is_folded_from_the_window():
    events = Events([_record(i, ledger=False) for i in range(3)])
    _, ledger, totals = window.history_window(events, "run-new", None)
    assert events.reads == [f"recent {window.NEWEST_EVENTS}", f"newest {window.NEWEST_EVENTS}"]
    assert ledger.attempt_counts == {"t": 3}
    assert totals is not None and totals.cycles == {"run": 3} and totals.since == T0  # counted from the window


def test_a_long_history_without_ledgers_or_a_replay_folds_everything():
    events = Events([_record(i, ledger=False) for i in range(window.RECENT_EVENTS)])
    _, ledger, _ = window.history_window(events, "run-new", None)
    assert events.reads == [f"recent {window.NEWEST_EVENTS}", f"newest {window.RECENT_EVENTS}", "everything"]
    assert ledger.attempt_counts == {"t": window.RECENT_EVENTS}
    replay = Events([_record(i) for i in range(5)])
    _, ledger, totals = window.history_window(replay, "run-new", T0 + timedelta(minutes=1))
    assert replay.reads == ["everything"] and ledger.attempt_counts == {"t": 2}
    assert totals is not None and totals.cycles == {"run": 5}  # a replay is one more record: it counts them all


def test_an_unreadable_record_in_the_window_folds_everything_and_is_reported():
    events = Events([_record(0), ("run-bad", {"target_id": "x", "decision": 7}), _record(1)])
    history, ledger, _ = window.history_window(events, "run-new", None)
    assert events.reads == [f"recent {window.NEWEST_EVENTS}", f"newest {window.NEWEST_EVENTS}", "everything"]
    assert [u.run_id for u in history.unreadable] == ["run-bad"] and ledger.attempt_counts == {"t": 2}


def test_while_the_newest_cycle_stopped_for_an_unreadable_record_every_cycle_reads_everything():
    events = Events([_record(0), ("run-bad", {"target_id": "x", "decision": 7}),
                     *[_record(i) for i in range(1, window.RECENT_EVENTS + 2)]])
    run, stopped = _record(window.RECENT_EVENTS + 2)
    events.events.append((run, {**stopped, "stopped_reason": window.HISTORY_UNREADABLE}))
    history, _, _ = window.history_window(events, "run-new", None)
    assert events.reads == [f"recent {window.NEWEST_EVENTS}", f"newest {window.RECENT_EVENTS}", "everything"]
    assert [u.run_id for u in history.unreadable] == ["run-bad"]  # the cycle stops again: fail closed


def test_a_window_with_a_ledger_but_no_totals_counts_every_record_once():
    old = []
    for i in range(window.RECENT_EVENTS + 3):
        run, extra = _record(i)
        old.append((run, {k: v for k, v in extra.items() if k != "totals"}))  # written before the totals
    events = Events(old)
    _, ledger, totals = window.history_window(events, "run-new", None)
    assert events.reads == [f"recent {window.NEWEST_EVENTS}", f"newest {window.RECENT_EVENTS}", "everything"]
    assert ledger.attempt_counts == {"t": window.RECENT_EVENTS + 3}
    assert totals is not None and totals.cycles == {"run": window.RECENT_EVENTS + 3} and totals.since == T0


def test_a_target_that_ran_lately_is_read_in_one_request_however_young_or_old():
    now = T0 + timedelta(minutes=10)
    for count in (3, window.RECENT_EVENTS + 5):
        events = Events([_record(i) for i in range(count)], now=now + timedelta(minutes=count))
        _, ledger, totals = window.history_window(events, "run-new", None)
        assert events.reads == [f"recent {window.NEWEST_EVENTS}"]
        assert ledger.attempt_counts == {"t": count} and totals is not None and totals.cycles == {"run": count}


def test_a_target_idle_for_longer_than_the_recent_window_reads_the_newest_events_and_decides_the_same():
    records = [_record(i) for i in range(5)]
    stale = Events(records, now=T0 + window.NEWEST_WITHIN + timedelta(hours=1))  # nothing recent
    fresh = Events(records)
    assert window.history_window(stale, "run-new", None) == window.history_window(fresh, "run-new", None)
    assert stale.reads == [f"recent {window.NEWEST_EVENTS}", f"newest {window.NEWEST_EVENTS}"]


def test_a_recent_window_without_the_newest_record_reads_further_back():
    # Operator events are newer than the last record: the recent window holds no ledger, so it reads on.
    events = Events([_record(i) for i in range(3)], now=T0 + window.NEWEST_WITHIN + timedelta(hours=1))
    events.events.append((None, {"kind": "breaker_reset", "target_id": "x", "reset_at": events.now.isoformat(),
                                 "by": "ops", "reason": "fixed"}))
    _, ledger, _ = window.history_window(events, "run-new", None)
    assert events.reads == [f"recent {window.NEWEST_EVENTS}", f"newest {window.NEWEST_EVENTS}"]
    assert ledger.attempt_counts == {"t": 3}
