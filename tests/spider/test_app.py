"""Spider inside a real ``airflow api-server`` (simple auth manager): auth, metrics, events, switch, UI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from leviathan_lib.core import names
from leviathan_lib.core.names import evidence_asset_uri
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.records import CycleRecord, Totals
from tests.airflow_helpers import evidence_record, run_cycle, scheduler_heartbeat, set_switch


@pytest.fixture
def switch_variable():
    """The global switch is switched back on (as an admin does) after a test that changes it."""
    yield
    set_switch(True)


def _variable():
    from airflow.models.variable import Variable

    return Variable.get("leviathan_autonomy_enabled", default_var=None)


def _events(client, after=0, **params):
    response = client.get("/events", params={"after": after, **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def _all_events(client):
    events, after = [], 0
    while page := _events(client, after):
        events += page
        after = page[-1]["id"]
    return events


def test_unauthenticated_and_non_admin_callers_change_nothing(server, viewer, switch_variable):
    anonymous = server.client()
    assert anonymous.get("/autonomy").status_code == 401
    assert anonymous.get("/events").status_code == 401
    assert anonymous.get("/metrics").status_code == 401
    assert anonymous.get("/ui").status_code == 401
    bad_token = httpx.Client(base_url=f"{server.base}/leviathan", headers={"Authorization": "Bearer nonsense"})
    assert bad_token.get("/autonomy").status_code in (401, 403)
    assert viewer.get("/autonomy").status_code == 200
    before = _all_events(viewer)
    body = {"enabled": False, "reason": "not allowed"}
    assert anonymous.put("/autonomy", json=body).status_code == 401
    assert bad_token.put("/autonomy", json=body).status_code in (401, 403)
    assert viewer.put("/autonomy", json=body).status_code == 403
    with server.client("op") as op:  # may edit Variables and config in Airflow, but is not an admin
        assert op.put("/autonomy", json=body).status_code == 403
        assert op.put("/autonomy/anything", json=body).status_code == 403
    assert anonymous.put("/autonomy", content=b"{not json").status_code == 401
    assert _variable() == "true"
    assert _all_events(viewer) == before
    # Health needs no login and names its components.
    health = anonymous.get("/health")
    assert health.status_code in (200, 503)
    assert health.json()["components"]["database"] == {"status": "healthy"}



def test_every_response_carries_security_headers(server, viewer):
    page = viewer.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    from leviathan_lib.spider.view import CSP

    assert page.headers["content-security-policy"] == CSP  # the view's own style and script, by hash (test_view)
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    anonymous = server.client()
    for response in (page, viewer.get("/autonomy"), viewer.get("/events"), viewer.get("/metrics"),
                     anonymous.get("/health"), anonymous.get("/autonomy")):
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        # The view's pages send their origin to themselves (form POSTs need it), to nobody else.
        policy = "same-origin" if response is page else "no-referrer"
        assert response.headers["referrer-policy"] == policy, response.url
        assert response.headers["cache-control"] == "no-store", response.url
        if response is not page:
            assert response.headers["content-security-policy"] == (
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"), response.url
            assert response.headers["x-frame-options"] == "DENY", response.url
    # No Swagger/ReDoc pages: they would load third-party scripts on the Airflow origin.
    assert anonymous.get("/docs").status_code == 404 and anonymous.get("/redoc").status_code == 404


def test_cookie_authenticated_changes_must_be_same_origin(server, viewer, switch_variable):
    """The Airflow UI's session cookie (``_token``) alone cannot switch autonomy: a cross-site page could send it."""
    before = _all_events(viewer)
    body = {"enabled": False, "reason": "via the browser"}
    with httpx.Client(base_url=f"{server.base}/leviathan", cookies={"_token": server.token("admin")},
                      timeout=30) as browser:
        assert browser.get("/autonomy").status_code == 200  # the cookie authenticates reads as it is
        refused = [
            browser.put("/autonomy", json=body),  # no Origin at all
            browser.put("/autonomy", json=body, headers={"Origin": "https://evil.example"}),
            browser.put("/autonomy", json=body, headers={"Origin": "null"}),
            browser.put("/autonomy", json=body, headers={"Origin": server.base, "Sec-Fetch-Site": "cross-site"}),
            browser.put("/autonomy", json=body, headers={"Origin": server.base, "Sec-Fetch-Site": "same-site"}),
            browser.put("/autonomy/spider_x", json=body, headers={"Origin": "https://evil.example"}),
        ]
        assert [r.status_code for r in refused] == [403] * len(refused), [r.text for r in refused]
        assert "Origin" in refused[0].json()["detail"]
        assert _variable() == "true" and _all_events(viewer) == before

        same_origin = {"Origin": server.base, "Sec-Fetch-Site": "same-origin"}
        response = browser.put("/autonomy", json=body, headers=same_origin)
        assert response.status_code == 200, response.text
        assert _variable() == "false"
    with httpx.Client(base_url=f"{server.base}/leviathan", cookies={"_token": server.token("viewer")},
                      timeout=30) as viewer_browser:  # same origin is necessary, not sufficient
        assert viewer_browser.put("/autonomy", json=body, headers=same_origin).status_code == 403
    # A bearer token is never attached by a browser on its own: token callers need no Origin.
    with server.client("admin") as admin:
        assert "origin" not in {k.lower() for k in admin.headers}
        assert admin.put("/autonomy", json={"enabled": True, "reason": "token"}).status_code == 200
    assert _variable() == "true"


@pytest.mark.parametrize("body", [
    {}, {"enabled": False}, {"reason": "x"}, {"enabled": "false", "reason": "x"}, {"enabled": 0, "reason": "x"},
    {"enabled": False, "reason": ""}, {"enabled": False, "reason": "   "}, {"enabled": False, "reason": "x" * 501},
    {"enabled": False, "reason": "x", "by": "someone-else"}, [], "off",
])
def test_malformed_switch_bodies_are_422_and_change_nothing(admin, body, switch_variable):
    assert admin.put("/autonomy", json=body).status_code == 422
    assert _variable() == "true"


def test_switch_off_stops_the_next_attempt_and_is_on_the_record(tmp_path, targets_dir, admin, viewer,
                                                                 switch_variable):
    target_file = create_demo_target(tmp_path, target_id="spider_switch", targets_dir=targets_dir)
    after = (_all_events(viewer) or [{"id": 0}])[-1]["id"]
    response = admin.put("/autonomy", json={"enabled": False, "reason": "maintenance window"})
    assert response.status_code == 200, response.text
    assert response.json()["global"]["enabled"] is False
    assert _variable() == "false"

    dag_run, states = run_cycle(target_file)  # the next cycle: no attempt starts
    assert evidence_record(dag_run)["reasons"] == ["autonomy_disabled"]
    assert states[names.TASK_RUN_WORKER] == "skipped"

    changes = [e for e in _events(viewer, after) if e["type"] == "autonomy.changed"]
    assert [(c["target_id"], c["data"]) for c in changes] == [
        (None, {"enabled": False, "by": "admin", "reason": "maintenance window", "how": "leviathan",
                "outside": False})]

    # Per target: the DAG is paused (the Airflow UI shows it) and Spider reports it.
    assert admin.put("/autonomy", json={"enabled": True, "reason": "done"}).status_code == 200
    assert admin.put("/autonomy/spider_switch", json={"enabled": True, "reason": "go"}).status_code == 200
    state = {t["target_id"]: t for t in viewer.get("/autonomy").json()["targets"]}["spider_switch"]
    assert state["dag_paused"] is False and state["target_flag"] is True and state["effective_enabled"] is True
    assert admin.put("/autonomy/spider_switch", json={"enabled": False, "reason": "bad PRs"}).status_code == 200
    state = {t["target_id"]: t for t in viewer.get("/autonomy").json()["targets"]}["spider_switch"]
    assert state["dag_paused"] is True and state["effective_enabled"] is False
    changes = [e for e in _events(viewer, after) if e["type"] == "autonomy.changed"]
    assert [(c["target_id"], c["data"]["enabled"], c["data"]["reason"]) for c in changes[1:]] == [
        (None, True, "done"), ("spider_switch", True, "go"), ("spider_switch", False, "bad PRs")]
    assert admin.put("/autonomy/not_configured", json={"enabled": True, "reason": "x"}).status_code == 404
    assert admin.put("/autonomy/Bad..Id", json={"enabled": True, "reason": "x"}).status_code == 422
    page = viewer.get("/ui")
    assert page.status_code == 200 and "spider_switch" in page.text and "paused" in page.text


def _write_record(record: CycleRecord) -> None:
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == evidence_asset_uri(record.target_id)))
        asset_manager.register_asset_change(asset=asset, extra=record.model_dump(mode="json"), session=session)


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_parse_with_promtool_and_match_the_evidence(tmp_path, targets_dir, viewer):
    target_file = create_demo_target(tmp_path, target_id="spider_metrics", targets_dir=targets_dir)
    run1, _ = run_cycle(target_file)   # opens PR #1
    run2, _ = run_cycle(target_file)   # skipped: open_pr_limit
    first, second = evidence_record(run1), evidence_record(run2)
    assert first["stopped_reason"] == "pr_opened" and second["reasons"] == ["open_pr_limit"]
    # A record whose reason is not a known code (as a hostile backlog or a bug could leave) cannot create a label.
    injected = CycleRecord.model_validate({**second, "dag_run_id": "manual__injected",
                                           "reasons": ['x"} evil_metric 1', "open_pr_limit"]})
    injected.totals = Totals.model_validate(second["totals"]).with_cycle(injected)  # as its cycle would count
    injected.totals.skips['x"} evil_metric 1'] = 5  # a tampered key is not a label either
    _write_record(injected)

    response = viewer.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    check = subprocess.run(["promtool", "check", "metrics"], input=response.text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    samples = _samples(response.text)
    target = (("target_id", "spider_metrics"),)

    def value(name, **labels):
        return samples[(name, tuple(sorted((*target, *labels.items()))))]

    assert value("leviathan_cycles_total", decision="run") == 1
    assert value("leviathan_cycles_total", decision="skip") == 2
    assert value("leviathan_skips_total", reason="open_pr_limit") == 2
    assert value("leviathan_skips_total", reason="other") == 1
    assert value("leviathan_attempts_total", outcome="succeeded") == 1
    assert value("leviathan_prs_created_total") == 1
    assert value("leviathan_open_prs") == 1
    assert value("leviathan_breaker_open") == 0
    assert value("leviathan_approvals_pending") == 0
    assert value("leviathan_attempt_duration_seconds_count") == 1
    assert value("leviathan_last_cycle_timestamp_seconds") > 0
    assert value("leviathan_evidence_totals_known") == 1
    assert samples[("leviathan_autonomy_global_enabled", ())] == 1
    assert "evil_metric" not in response.text
    # Only configured targets are labels (other tests' targets in the same DB are not).
    assert {dict(k[1]).get("target_id") for k in samples} <= {None, "spider_metrics"}


def test_events_resume_by_id_in_bounded_pages(tmp_path, targets_dir, viewer, server):
    target_file = create_demo_target(tmp_path, target_id="spider_events", targets_dir=targets_dir)
    run_cycle(target_file)
    run_cycle(target_file)
    events = _all_events(viewer)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    mine = [e for e in events if e["target_id"] == "spider_events"]
    assert [e["type"] for e in mine][:2] == ["cycle.started", "attempt.created"]
    assert "pr.created" in {e["type"] for e in mine}
    middle = ids[len(ids) // 2]
    assert [e["id"] for e in _events(viewer, middle)] == [i for i in ids if i > middle][:500]
    page = viewer.get("/events", params={"after": 0, "limit": 3})
    assert len(page.text.splitlines()) == 3 and page.headers["x-leviathan-next-after"] == str(ids[2])
    assert _events(viewer, 2**62) == []  # a huge id is an empty page, not a scan
    assert viewer.get("/events", params={"after": 2**63}).status_code == 422
    assert viewer.get("/events", params={"after": -1}).status_code == 422
    assert viewer.get("/events", params={"limit": 100_000}).status_code == 422

    # Server-Sent Events: resume with Last-Event-ID, receive exactly the events after it.
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(middle)}
    received = []
    with viewer.stream("GET", "/events", headers=headers, timeout=20) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("id: "):
                received.append(int(line[4:]))
            if line.startswith(": keep-alive"):
                break
    assert received == [i for i in ids if i > middle]


def test_health_reports_each_component(tmp_path, targets_dir, server):
    create_demo_target(tmp_path, target_id="spider_health", targets_dir=targets_dir)
    anonymous = server.client()
    body = anonymous.get("/health").json()
    if body["components"]["scheduler"]["status"] == "unhealthy":
        assert anonymous.get("/health").status_code == 503
        assert body["components"]["scheduler"]["reason"]
    # A scheduler that heartbeats now makes it healthy (a real Job row, as the scheduler writes it).
    with scheduler_heartbeat():
        response = anonymous.get("/health")
        assert response.status_code == 200, response.text
        assert response.json()["components"]["targets"]["spider_health"]["last_cycle_age_seconds"] is None


def test_metrics_can_be_made_public_by_configuration(monkeypatch, airflow_db):
    from starlette.testclient import TestClient

    from leviathan_lib.spider.app import create_app

    client = TestClient(create_app())
    assert client.get("/metrics").status_code == 401
    monkeypatch.setenv("AIRFLOW__LEVIATHAN__METRICS_PUBLIC", "True")
    response = client.get("/metrics")
    assert response.status_code == 200 and "leviathan_autonomy_global_enabled" in response.text
    assert client.get("/autonomy").status_code == 401  # only /metrics becomes public


def test_the_plugin_module_is_cheap_to_import_in_task_processes():
    """Airflow imports plugins in every task process: the app, FastAPI security and prometheus stay out."""
    code = ("import sys, leviathan_lib.spider.plugin; "
            "print(sorted(m for m in ('prometheus_client', 'leviathan_lib.spider.app', 'statsd',"
            " 'airflow.api_fastapi.core_api.security') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip().splitlines()[-1] == "[]"
