"""Fleet-wide limits in real cycles (``dag.test()``) of two demo targets on the local forge (one account)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.records import AttemptEvidence, CycleRecord, Ledger
from leviathan_lib.forge.local import LocalForge
from tests.airflow_helpers import evidence_record, run_cycle

pytestmark = pytest.mark.usefixtures("airflow_db")


def _two_targets(tmp_path: Path, targets_dir: Path, prefix: str, fleet: str, extra: str = "") -> tuple[Path, Path]:
    (targets_dir / "fleet.yaml").write_text(fleet, encoding="utf-8")
    files = []
    for name in ("a", "b"):
        target_file = create_demo_target(tmp_path, target_id=f"{prefix}_{name}", targets_dir=targets_dir)
        if extra:
            target_file.write_text(target_file.read_text() + extra, encoding="utf-8")
        files.append(target_file)
    return files[0], files[1]


def _check(record: dict, name: str) -> dict:
    return next(c for c in record["checks"] if c["name"] == name)


def test_the_account_caps_hold_across_targets(tmp_path, targets_dir):
    first, second = _two_targets(tmp_path, targets_dir, "fleetcap",
                                 "fleet_max_open_prs: 1\nfleet_max_prs_per_hour: 1\n")
    dag_run, _ = run_cycle(first)
    assert evidence_record(dag_run)["stopped_reason"] == "pr_opened"
    # The second target has no PR of its own (its own max_open_prs: 1 allows one): the account's cap stops it.
    dag_run, states = run_cycle(second)
    record = evidence_record(dag_run)
    assert record["decision"] == "skip" and states[names.TASK_RUN_WORKER] == "skipped"
    assert record["reasons"] == ["fleet_open_prs_limit", "fleet_pr_hourly_limit"]
    assert _check(record, "open_prs") == {"name": "open_prs", "passed": True,
                                          "detail": "0 open agent/ PR(s), limit 1"}
    assert _check(record, "fleet_open_prs")["detail"] == "1 open PR(s) on account local (0 of this target), limit 1"
    opened = datetime.fromisoformat(evidence_record(run_cycle(first)[0])["ledger"]["prs_opened_at"][-1])
    hourly = _check(record, "fleet_prs_per_hour")["detail"]
    assert hourly == ("1 PR(s) opened by the account in the last hour, limit 1; next PR after "
                      f"{(opened + timedelta(hours=1)).strftime('%H:%M')} UTC")
    # A human closes the first target's PR: its next cycle records it; the hourly cap still holds the second.
    LocalForge(tmp_path / "repos" / "fleetcap_a.git").close_pr(1)
    run_cycle(first)
    record = evidence_record(run_cycle(second)[0])
    assert record["reasons"] == ["fleet_pr_hourly_limit"]
    assert _check(record, "fleet_open_prs")["passed"]


def _failed_attempts(target_id: str, count: int) -> None:
    """``count`` failed attempts of ``target_id`` that just finished (after any earlier fleet reset of the
    session), as its cycles record them."""
    from tests.control.test_fleet import BASE, _insert

    ledger, extras = Ledger(), []
    start = datetime.now(UTC) - timedelta(seconds=count + 1)
    for i in range(count):
        at = start + timedelta(seconds=i)
        attempt = AttemptEvidence(task_id="t", attempt=i + 1, task_hash="h", branch=f"agent/t/{i + 1}",
                                  backend="local", outcome="failed", started_at=at - timedelta(seconds=5),
                                  finished_at=at)
        record = CycleRecord(target_id=target_id, dag_run_id=f"manual__flaky{i}", recorded_at=at, decision="run",
                             reasons=[], stopped_reason="failed", attempt=attempt)
        ledger = ledger.with_cycle(record)
        record.ledger = ledger
        extras.append(record.model_dump(mode="json"))
    _insert(target_id, extras, offset=int((start - BASE).total_seconds()))


def fleet_resets() -> list[dict]:
    """Every ``fleet_breaker.reset`` event's data, oldest first (all pages: the session's DB holds many)."""
    from leviathan_lib.control.evidence_db import read_events

    found, cursor = [], 0
    while page := read_events(after=cursor, limit=1000):
        found += [e.data for e in page if e.type == "fleet_breaker.reset"]
        cursor = page[-1].id
    return found


def test_the_fleet_breaker_trips_stays_open_and_an_admin_resets_it_on_the_record(tmp_path, targets_dir):
    fleet = "fleet_breaker_min_attempts: 3\nfleet_breaker_failure_rate: 0.5\n"
    _flaky, steady = _two_targets(tmp_path, targets_dir, "fleetbrk", fleet)
    _failed_attempts("fleetbrk_a", 3)  # a bad model release: every attempt of the other target failed
    for _ in range(2):  # it stays open: the second cycle stops again, nothing new failed
        dag_run, states = run_cycle(steady)
        record = evidence_record(dag_run)
        assert record["reasons"] == ["fleet_breaker_open"] and states[names.TASK_RUN_WORKER] == "skipped"
    detail = _check(record, "fleet_breaker")["detail"]  # (after an earlier test's reset: "since the reset at …")
    assert detail.startswith("3 of 3 attempt(s) of the fleet failed in the last 24 h") and detail.endswith(
        "(trips above 50% of at least 3)")

    reset = subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", "breaker", "reset", "--fleet",
                            "--reason", "model rolled back", "--by", "oncall"], capture_output=True, text=True)
    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout.splitlines()[-1])["kind"] == "fleet_breaker_reset"  # after any log lines
    assert fleet_resets()[-1] == {"by": "oncall", "reason": "model rolled back"}

    dag_run, _ = run_cycle(steady)
    record = evidence_record(dag_run)
    assert record["decision"] == "run" and record["stopped_reason"] == "pr_opened"
    assert _check(record, "fleet_breaker")["detail"].startswith("0 of 0 attempt(s) of the fleet failed in the last "
                                                                "24 h since the reset at")
    missing = subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", "breaker", "reset", "--fleet",
                              "--reason", " "], capture_output=True, text=True)
    assert missing.returncode == 2 and "say why" in missing.stderr


def test_a_team_at_its_open_pr_limit_pauses_its_targets_only(tmp_path, targets_dir):
    first, second = _two_targets(tmp_path, targets_dir, "fleetteam", "teams:\n  docs:\n    max_open_prs: 1\n",
                                 extra="team: docs\n")
    other = create_demo_target(tmp_path, target_id="fleetteam_other", targets_dir=targets_dir)
    assert evidence_record(run_cycle(first)[0])["stopped_reason"] == "pr_opened"
    record = evidence_record(run_cycle(second)[0])
    assert record["reasons"] == ["team_budget_exhausted"]
    assert _check(record, "team_open_prs")["detail"] == "team docs: 1 open PR(s), limit 1"
    assert evidence_record(run_cycle(other)[0])["stopped_reason"] == "pr_opened"  # no team: not paused


def test_an_idle_cycle_reads_no_other_target_and_records_that_it_did_not(tmp_path, targets_dir, monkeypatch):
    """The fleet is read only by a cycle that would attempt: an idle fleet costs one target's reads per cycle."""
    from leviathan_lib.cycle import fleet as cycle_fleet

    _first, second = _two_targets(tmp_path, targets_dir, "fleetidle", "fleet_max_open_prs: many\n")
    second.write_text(second.read_text().replace("autonomy_enabled: true", "autonomy_enabled: false"),
                      encoding="utf-8")
    reads: list[str] = []
    monkeypatch.setattr(cycle_fleet, "read_fleet", lambda *a, **k: reads.append("read") or pytest.fail("read"))
    record = evidence_record(run_cycle(second)[0])
    assert record["reasons"] == ["autonomy_disabled"] and reads == []  # not fleet_state_unknown
    assert _check(record, "fleet_state") == {
        "name": "fleet_state", "passed": True,
        "detail": "not read: this cycle attempts nothing, and the fleet limits gate attempts only"}


def test_a_broken_fleet_file_stops_every_target_with_a_visible_reason(tmp_path, targets_dir):
    _first, second = _two_targets(tmp_path, targets_dir, "fleetbad", "fleet_max_open_prs: many\n")
    record = evidence_record(run_cycle(second)[0])
    assert record["reasons"] == ["fleet_state_unknown"]
    detail = _check(record, "fleet_state")["detail"]
    assert "fleet.yaml:1: fleet_max_open_prs: Input should be a valid integer" in detail, detail
