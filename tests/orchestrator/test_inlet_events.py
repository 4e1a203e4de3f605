"""``plan``'s evidence reads through Airflow's real (stateful) inlet-events accessor.

The accessor keeps the order, limit and bounds of its last use; the supervisor answering it is replaced
by one that applies them to a list, as the execution API applies them to the table.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from leviathan_lib.orchestrator import tasks


class Supervisor:
    def __init__(self, times: list[datetime]):
        self.events = [SimpleNamespace(source_run_id=f"r{i}", extra={"n": i}, timestamp=at)
                       for i, at in enumerate(times)]
        self.asked: list[tuple] = []

    def send(self, msg):
        self.asked.append((msg.ascending, msg.limit, msg.after))
        found = [e for e in self.events if msg.after is None or e.timestamp >= msg.after]
        found = found if msg.ascending else list(reversed(found))
        found = found[:msg.limit] if msg.limit else found
        return SimpleNamespace(iter_asset_event_results=lambda: iter(found))


@pytest.fixture
def source(monkeypatch):
    from airflow.sdk import Asset
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.context import InletEventsAccessor

    def make(times):
        supervisor = Supervisor(times)
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", supervisor, raising=False)
        asset = Asset(name="evidence", uri="leviathan://targets/x/evidence")
        accessors = {asset: None}

        class Accessors:  # as InletEventsAccessors: a new accessor per lookup
            def __getitem__(self, key):
                assert key in accessors
                return InletEventsAccessor(asset_name=key.name, asset_uri=key.uri)

        return tasks._InletEvents(Accessors(), asset), supervisor

    return make


def test_newest_events_come_from_the_shortest_time_window_that_holds_them(source):
    now = datetime.now(UTC)
    events, supervisor = source([now - timedelta(minutes=5 * i) for i in range(100, 0, -1)])
    newest = events.newest(16)
    assert [run for run, _ in newest] == [f"r{i}" for i in range(99, 83, -1)]
    assert [(asc, limit) for asc, limit, _ in supervisor.asked] == [(False, 16)]
    assert supervisor.asked[0][2] is not None  # bounded: an index range, not every event


def test_a_sparse_history_widens_the_window_until_unbounded_and_loses_nothing(source):
    now = datetime.now(UTC)
    events, supervisor = source([now - timedelta(days=400), now - timedelta(days=40), now - timedelta(hours=1)])
    assert [run for run, _ in events.newest(16)] == ["r2", "r1", "r0"]
    assert [after is None for _, _, after in supervisor.asked] == [False, False, True]  # 2 days, 30 days, all


def test_recent_events_are_the_newest_within_the_age_asked_for(source):
    now = datetime.now(UTC)
    events, supervisor = source([now - timedelta(days=3), now - timedelta(minutes=90), now - timedelta(minutes=5)])
    assert [run for run, _ in events.recent(16, timedelta(hours=2))] == ["r2", "r1"]
    (ascending, limit, after), = supervisor.asked
    assert (ascending, limit) == (False, 16) and now - timedelta(hours=2) <= after <= datetime.now(UTC)


def test_a_full_read_after_a_newest_read_sees_every_event_oldest_first(source):
    from airflow.sdk.execution_time.context import InletEventsAccessor

    now = datetime.now(UTC)
    events, _ = source([now - timedelta(minutes=i) for i in range(300, 0, -1)])
    events.newest(16)
    assert [run for run, _ in events.everything()] == [f"r{i}" for i in range(300)]
    # Why each read takes a new accessor: a reused one keeps its last order and limit.
    reused = InletEventsAccessor(asset_name="evidence", asset_uri="leviathan://targets/x/evidence")
    list(reused.ascending(False).limit(16))
    assert [e.source_run_id for e in reused][:2] == ["r299", "r298"] and len(reused) == 16
