"""Never dark: a broken live target and a target that stopped cycling are seen by health, metrics and events.

Spider runs inside a real ``airflow api-server``; the target's DAG runs through real Airflow (``dag.test()``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.records import CycleRecord
from tests.airflow_helpers import evidence_record, run_cycle, scheduler_heartbeat, set_switch
from tests.spider.test_app import _write_record

TYPO = "max_prs_per_hr: 5\n"


@pytest.fixture
def scheduler_beats() -> Iterator[None]:
    with scheduler_heartbeat():
        yield


def _samples(client) -> dict[tuple[str, str | None], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return {(s.name, s.labels.get("target_id")): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def _set_paused(dag_id: str, paused: bool) -> None:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=paused,
                                                                                 next_dagrun_create_after=None))


def test_a_typo_in_a_live_target_file_is_loud_and_fails_closed(tmp_path, targets_dir, server, viewer,
                                                                scheduler_beats):
    from leviathan_lib.orchestrator.dag_factory import build_all

    target_file = create_demo_target(tmp_path, target_id="live_typo", targets_dir=targets_dir)
    create_demo_target(tmp_path, target_id="live_fine", targets_dir=targets_dir)
    opened, _ = run_cycle(target_file)
    assert evidence_record(opened)["stopped_reason"] == "pr_opened"
    target_file.write_text(target_file.read_text() + TYPO)

    anonymous = server.client()
    response = anonymous.get("/health")
    assert response.status_code == 200, response.text  # degraded: Airflow works, a human is needed
    body = response.json()
    assert body["status"] == "degraded"
    broken = body["components"]["targets"]["live_typo"]
    assert broken["status"] == "degraded" and broken["config_valid"] is False
    assert f"{target_file}:19: max_prs_per_hr: unknown key; did you mean 'max_prs_per_hour'?" in broken["reason"]
    assert broken["files"] == [str(target_file)]
    assert body["components"]["targets"]["live_fine"]["status"] == "healthy"  # no healthy target is affected
    samples = _samples(viewer)
    assert samples[("leviathan_target_config_valid", "live_typo")] == 0
    assert samples[("leviathan_target_config_valid", "live_fine")] == 1
    assert samples[("leviathan_open_prs", "live_typo")] == 1  # its series stay, with its PRs

    # Its DAG keeps its id and history; a run records config_invalid, carries the ledger and fails.
    dags = build_all(targets_dir)
    assert "config-error" in dags[names.dag_id("live_typo")].tags
    assert "config-error" not in dags[names.dag_id("live_fine")].tags
    run = dags[names.dag_id("live_typo")].test()
    assert run.state == "failed"
    record = evidence_record(run)
    assert record["stopped_reason"] == "config_invalid" and "max_prs_per_hr" in record["stopped_detail"]
    assert [pr["number"] for pr in record["ledger"]["open_prs"]] == [1]
    events = [e for e in _all_events(viewer) if e["target_id"] == "live_typo"]
    assert events[-1]["type"] == "target.config_invalid" and "did you mean" in events[-1]["data"]["detail"]

    # Fixed: the next cycle continues where the target was (its open PR still holds it).
    target_file.write_text(target_file.read_text().replace(TYPO, ""))
    fixed, _ = run_cycle(target_file)
    assert evidence_record(fixed)["reasons"] == ["open_pr_limit"]
    assert anonymous.get("/health").json()["components"]["targets"]["live_typo"]["status"] == "healthy"


def _all_events(client) -> list[dict]:
    events, after = [], 0
    for _ in range(1000):
        response = client.get("/events", params={"after": after})
        page = [json.loads(line) for line in response.text.splitlines()]
        if not page:
            break
        events += page
        after = page[-1]["id"]
    return events


def test_a_target_that_stopped_cycling_is_stale_unless_paused_or_switched_off(tmp_path, targets_dir, server,
                                                                               viewer, scheduler_beats):
    target_file = create_demo_target(tmp_path, target_id="live_stale", targets_dir=targets_dir)
    run, _ = run_cycle(target_file)
    old = CycleRecord.model_validate(evidence_record(run))
    old.dag_run_id, old.recorded_at = "scheduled__old", datetime.now(UTC) - timedelta(hours=1)
    _write_record(old)  # the newest cycle, an hour ago: two */5 intervals have passed without one
    dag = names.dag_id("live_stale")
    anonymous = server.client()
    try:
        _set_paused(dag, False)
        entry = anonymous.get("/health").json()["components"]["targets"]["live_stale"]
        assert entry["status"] == "degraded" and entry["reason"].startswith("stale: last cycle 36")
        assert entry["cycle_interval_seconds"] == 300
        samples = _samples(viewer)
        assert samples[("leviathan_cycle_stale", "live_stale")] == 1
        assert samples[("leviathan_cycle_expected", "live_stale")] == 1
        assert 3500 < samples[("leviathan_last_cycle_age_seconds", "live_stale")] < 3800
        assert samples[("leviathan_cycle_interval_seconds", "live_stale")] == 300

        set_switch(False)  # switched off: nothing is expected, no alert
        assert _samples(viewer)[("leviathan_cycle_stale", "live_stale")] == 0
        assert anonymous.get("/health").json()["components"]["targets"]["live_stale"]["status"] == "healthy"
        set_switch(True)
        _set_paused(dag, True)  # paused: the same
        assert _samples(viewer)[("leviathan_cycle_expected", "live_stale")] == 0
        assert _samples(viewer)[("leviathan_cycle_stale", "live_stale")] == 0
    finally:
        set_switch(True)
        _set_paused(dag, True)
