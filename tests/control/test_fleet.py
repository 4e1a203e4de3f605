"""Spider's reads do not grow with history: the same statements and rows with 100 or thousands of events.

Records are inserted directly as asset events (what ``register_asset_change`` writes), each carrying
the ledger and running totals a real cycle would have folded; the test counts the SQL statements and
the rows they return while Spider's endpoints run against the real metadata DB.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from leviathan_lib.control import fleet
from leviathan_lib.core.names import evidence_asset_uri
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.records import (
    AttemptEvidence,
    BreakerResetRecord,
    CycleRecord,
    Ledger,
    Totals,
)
from leviathan_lib.evidence.switches import NEWEST_SWITCH_EVENTS

pytestmark = pytest.mark.usefixtures("airflow_db")
BASE = datetime.now(UTC) - timedelta(days=20)


class Chain:
    """A target's evidence as cycles write it: each record folds the previous ledger and totals."""

    def __init__(self, target_id: str, *, totals: bool = True):
        self.target_id, self.n = target_id, 0
        self.ledger = Ledger()
        self.totals: Totals | None = Totals(since=BASE) if totals else None

    def records(self, count: int) -> list[dict]:
        out = []
        for _ in range(count):
            i, self.n = self.n, self.n + 1
            at = BASE + timedelta(seconds=i)
            outcome = "failed" if i % 3 else "succeeded"
            attempt = AttemptEvidence(task_id=f"t{i % 7}", attempt=1, task_hash="h", branch=f"agent/t{i % 7}/1",
                                      backend="local", outcome=outcome, started_at=at - timedelta(seconds=20),
                                      finished_at=at) if i % 2 else None
            record = CycleRecord(target_id=self.target_id, dag_run_id=f"scheduled__{i}", recorded_at=at,
                                 decision="run" if attempt else "skip", reasons=[] if attempt else ["open_pr_limit"],
                                 stopped_reason=outcome if attempt else "open_pr_limit", attempt=attempt)
            self.ledger = self.ledger.with_cycle(record)
            record.ledger = self.ledger
            if self.totals is not None:
                self.totals = self.totals.with_cycle(record)
                record.totals = self.totals
            out.append(record.model_dump(mode="json"))
        return out


def _insert(target_id: str, extras: list[dict], *, offset: int = 0) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    uri = evidence_asset_uri(target_id)
    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == uri))
        if asset is None:
            asset = AssetModel(name=f"leviathan_evidence__{target_id}", uri=uri, group="leviathan")
            session.add(asset)
            session.flush()
        session.bulk_save_objects([
            AssetEvent(asset_id=asset.id, extra=extra, source_run_id=extra.get("dag_run_id"),
                       timestamp=BASE + timedelta(seconds=offset + i)) for i, extra in enumerate(extras)])


class Reads:
    statements = 0
    rows = 0


@contextmanager
def counted() -> Iterator[Reads]:
    """Count the SQL statements run and the rows they returned (``rowcount``: -1 where unknown)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    reads = Reads()

    def after(conn, cursor, statement, parameters, context, executemany):
        reads.statements += 1
        reads.rows += max(cursor.rowcount, 0) if statement.lstrip().upper().startswith("SELECT") else 0

    event.listen(Engine, "after_cursor_execute", after)
    try:
        yield reads
    finally:
        event.remove(Engine, "after_cursor_execute", after)


def _client():
    from airflow.api_fastapi.core_api.security import get_user
    from starlette.testclient import TestClient

    from leviathan_lib.spider.app import create_app

    app = create_app()
    app.dependency_overrides[get_user] = lambda: type("User", (), {"get_name": lambda self: "viewer"})()
    return TestClient(app)


def _endpoint_reads(client) -> dict[str, tuple[int, int]]:
    out = {}
    for path in ("/metrics", "/health", "/ui", "/autonomy"):
        with counted() as reads:
            response = client.get(path)
        assert response.status_code in (200, 503), (path, response.text)
        out[path] = (reads.statements, reads.rows)
    return out


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_spider_endpoints_read_the_same_with_thousands_of_events(tmp_path, targets_dir, monkeypatch):
    monkeypatch.setenv("AIRFLOW__LEVIATHAN__METRICS_PUBLIC", "True")
    for tid in ("fleet_deep", "fleet_other"):
        create_demo_target(tmp_path / tid, target_id=tid, targets_dir=targets_dir)
    deep, other = Chain("fleet_deep"), Chain("fleet_other")
    _insert("fleet_deep", deep.records(100))
    _insert("fleet_other", other.records(100))
    client = _client()
    _endpoint_reads(client)  # records any switch change earlier tests made outside Leviathan, once
    small = _endpoint_reads(client)

    _insert("fleet_deep", deep.records(3000), offset=100)
    large = _endpoint_reads(client)
    assert large == small  # the same statements returning the same rows, 31 times the history
    # The newest events per target, the newest global switch events (as many as earlier tests switched it,
    # at most the first read's size), plus state rows.
    assert small["/metrics"][1] <= 2 * fleet.NEWEST_EVENTS + NEWEST_SWITCH_EVENTS[0] + 10

    samples = _samples(client.get("/metrics").text)
    deep_label = (("target_id", "fleet_deep"),)
    cycles = {d: samples[("leviathan_cycles_total", tuple(sorted((*deep_label, ("decision", d)))))]
              for d in ("run", "skip", "error")}
    assert cycles == {"run": 1550, "skip": 1550, "error": 0}  # every record counted, none read
    assert samples[("leviathan_attempts_total", tuple(sorted((*deep_label, ("outcome", "failed")))))] == 1033
    assert samples[("leviathan_attempt_duration_seconds_count", deep_label)] == 1550
    assert samples[("leviathan_evidence_totals_known", deep_label)] == 1
    assert samples[("leviathan_evidence_totals_since_timestamp_seconds", deep_label)] == BASE.timestamp()
    overview, _, _ = fleet.overview()
    state = {t.target_id: t for t in overview.targets}["fleet_deep"]
    assert state.evidence_read == "newest" and state.consecutive_failures == deep_streak(deep.ledger)


def deep_streak(ledger: Ledger) -> int:
    count = 0
    for attempt in reversed(ledger.recent_attempts):
        if attempt.outcome == "succeeded":
            break
        count += 1
    return count


def test_a_breaker_reset_newer_than_the_last_cycle_counts():
    chain = Chain("fleet_reset")
    _insert("fleet_reset", chain.records(6))
    assert fleet.read_evidence({"fleet_reset"})["fleet_reset"].ledger.breaker_reset_at is None
    reset = BreakerResetRecord(target_id="fleet_reset", reset_at=BASE + timedelta(hours=1), by="op", reason="fixed")
    _insert("fleet_reset", [reset.model_dump(mode="json")], offset=3600)
    evidence = fleet.read_evidence({"fleet_reset"})["fleet_reset"]
    assert evidence.ledger.breaker_reset_at == reset.reset_at and fleet.failure_streak(evidence.ledger) == 0


def test_records_from_before_the_totals_say_so_and_a_long_run_of_resets_reads_deeper():
    old = Chain("fleet_old", totals=False)
    _insert("fleet_old", old.records(40))
    evidence = fleet.read_evidence({"fleet_old"})["fleet_old"]
    assert evidence.totals is None and evidence.read == "newest"  # unknown, not zero
    assert evidence.ledger.attempt_counts == old.ledger.attempt_counts

    chain = Chain("fleet_resets")
    _insert("fleet_resets", chain.records(5))
    resets = [BreakerResetRecord(target_id="fleet_resets", reset_at=BASE + timedelta(minutes=i), by="op",
                                 reason="again").model_dump(mode="json") for i in range(fleet.NEWEST_EVENTS + 2)]
    _insert("fleet_resets", resets, offset=60)
    evidence = fleet.read_evidence({"fleet_resets"})["fleet_resets"]
    assert evidence.read == "window" and evidence.totals == chain.totals


def test_records_from_before_the_ledger_are_read_in_full():
    rows = [CycleRecord(target_id="fleet_legacy", dag_run_id=f"r{i}", recorded_at=BASE + timedelta(seconds=i),
                        decision="skip", reasons=["open_pr_limit"], stopped_reason="open_pr_limit")
            .model_dump(mode="json", exclude={"ledger", "totals"}) for i in range(250)]
    _insert("fleet_legacy", rows)
    evidence = fleet.read_evidence({"fleet_legacy"})["fleet_legacy"]
    assert evidence.read == "full" and evidence.totals is not None and evidence.totals.cycles == {"skip": 250}
