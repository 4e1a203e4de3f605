"""Webhooks through the real scheduler: a signed delivery starts the target's cycle within seconds, a forged
one starts nothing, and a burst while a cycle runs queues at most one more run.

The real API server (Spider's receiver), scheduler, dag-processor and triggerer on a fresh metadata DB;
the target is the demo repository on the local forge with ``webhooks: true`` and a safety-net cron whose
tick was hours ago: unpausing starts that tick's run (catchup is off), and every later run is one a
delivery started. Every payload validates against the
shared GitHub description (tests/webhook_payloads.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.demo.runner import Api, Stack, _environment, _password, _wait
from tests.airflow_helpers import switch_on_in
from tests.e2e.test_scheduler import _free_port
from tests.webhook_payloads import payload, send

pytestmark = pytest.mark.scheduler
TARGET = "hooked"
DAG_ID = names.dag_id(TARGET)
SECRET = "e2e-webhook-secret"


def webhooks_target(root: Path, target_id: str = TARGET) -> Path:
    """The demo target with ``webhooks: true`` and a safety net that does not fire for hours."""
    target_file = create_demo_target(root, target_id=target_id)
    tick = datetime.now(UTC) - timedelta(hours=12)
    text = "\n".join(f'webhooks: true\nwebhooks_safety_cron: "{tick.minute} {tick.hour} * * *"'
                     if line.startswith("schedule_cron:") else line
                     for line in target_file.read_text(encoding="utf-8").splitlines())
    target_file.write_text(text + "\n", encoding="utf-8")
    return target_file


def secret_env(secret: str = SECRET) -> dict[str, str]:
    return {"AIRFLOW_CONN_LEVIATHAN_WEBHOOK_GITHUB": json.dumps({"conn_type": "generic", "password": secret})}


def _runs(api: Api) -> list[dict]:
    return api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]


def _asset_runs(api: Api) -> list[dict]:
    return [r for r in _runs(api) if r["run_type"] == "asset_triggered"]


def _done(runs: list[dict]) -> bool:
    return all(r["state"] in ("success", "failed") for r in runs)


def _plan_start(api: Api, run_id: str) -> datetime | None:
    ti = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{names.TASK_PLAN}")
    return datetime.fromisoformat(ti["start_date"]) if ti.get("start_date") else None


def test_a_signed_delivery_starts_the_cycle_a_forged_one_nothing_and_a_burst_one_more(tmp_path, own_metadata_db):
    port = _free_port()
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    env = {**_environment(stack_dir, port), **own_metadata_db, **secret_env()}
    webhooks_target(stack_dir)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    switch_on_in(env)
    stack = Stack(env, stack_dir / "logs")
    base = f"http://127.0.0.1:{port}"
    bare = stack_dir / "repos" / f"{TARGET}.git"
    repo = "local/hooked"
    try:
        stack.start()
        api = Api(base)
        _wait("the API server", lambda: api.call("GET", "/api/v2/monitor/health"), 180, stack)
        api.login("admin", _wait("the admin password", lambda: _password(stack_dir / "airflow"), 60, stack))
        _wait("the DAG", lambda: api.call("GET", f"/api/v2/dags/{DAG_ID}"), 180, stack)
        api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        push = payload("push", repo, clone_url=f"file://{bare}", branch="main")
        # Spider is built on its first request (the plugin's LazyApp): do that before timing anything.
        _wait("Spider", lambda: httpx.get(f"{base}/leviathan/health", timeout=120).status_code < 600, 180, stack)

        # Unpausing starts the safety net's latest tick (catchup is off): let that cycle finish first.
        _wait("the safety net's first run", lambda: _runs(api) and _done(_runs(api)), 300, stack)
        forged = send(base, "push", push, "not-the-secret")
        assert forged.status_code == 401, forged.text
        time.sleep(10)  # the scheduler loops every second or so: a run would have been created by now
        assert _asset_runs(api) == []

        sent = datetime.now(UTC)
        answer = send(base, "push", push, SECRET)
        assert answer.status_code == 202 and answer.json()["targets"][0]["outcome"] == "recorded", answer.text
        run = _wait("the asset-triggered run", lambda: _asset_runs(api), 120, stack)[0]
        started = _wait("plan to start", lambda: _plan_start(api, run["dag_run_id"]), 120, stack)
        latency = (started - sent).total_seconds()
        print(f"delivery -> plan started: {latency:.1f} s")
        assert latency < 60, latency  # the bench (bench/webhooks.py) measures it under no other load

        # A burst while that cycle runs: the first wakes the target once more, the rest are coalesced.
        webhooks = ["push", "pull-request-closed", "issue-comment-created", "check-run-completed"]
        burst = [(w, payload(w, repo, clone_url=f"file://{bare}",
                             branch="main" if w == "push" else "agent/docs-quickstart/1")) for w in webhooks * 5]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda item: send(base, item[0], item[1], SECRET), burst))
        assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
        outcomes = [a.json()["targets"][0]["outcome"] for a in answers]
        queued = [r for r in _runs(api) if r["state"] == "queued"]
        assert len(queued) <= 1, queued
        # Each delivery recorded a change only when no run was waiting; typically just the first of the burst.
        assert set(outcomes) <= {"recorded", "coalesced"} and outcomes.count("recorded") <= 2, outcomes
        # A recorded change waits as an asset trigger until the running cycle ends (max_active_runs=1).
        expected = 1 + outcomes.count("recorded")

        def all_ran() -> list[dict] | None:
            runs = _asset_runs(api)
            return runs if len(runs) >= expected and _done(runs) else None

        runs = _wait("the runs to finish", all_ran, 300, stack)
        time.sleep(5)  # nothing more is created afterwards
        runs = _asset_runs(api)
        assert len(runs) == expected, (runs, outcomes)
        assert all(r["state"] == "success" for r in runs), runs
        health = httpx.get(f"{base}/leviathan/health").json()["components"]["webhooks"]
        assert health["targets"] == [TARGET] and health["deliveries_last_hour"]["accepted"] == 1 + len(burst)
        # The target page shows the last delivery, what it did and the time from delivery to cycle.
        page = httpx.get(f"{base}/leviathan/ui/targets/{TARGET}", headers={"Authorization": f"Bearer {api.token}"},
                         timeout=120).text
        shown = page[page.find('id="webhooks"'):][:1500]
        assert 'id="webhooks"' in page and "last delivery" in shown, shown
        assert re.search(r"plan started <strong>[0-9.]+ s</strong> after the delivery", shown), shown
    finally:
        stack.stop()
