"""A cycle that runs past its expected time reaches the notifier in airflow.cfg, through the real scheduler.

The scheduler evaluates Airflow's ``DeadlineAlert`` and runs the callback on the LocalExecutor; the
notifier (Leviathan's ``DeadlineNotifier``, named by ``[leviathan] deadline_notifier``) counts the miss in
StatsD, which a UDP listener on 127.0.0.1 receives. The expected time is the target's attempt timeout
(1 s here) with no margin, so any real cycle misses it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.demo.runner import Api, Stack, _environment, _password, _wait
from tests.airflow_helpers import switch_on_in
from tests.e2e.test_scheduler import _free_port
from tests.orchestrator.test_metrics import UdpListener

pytestmark = pytest.mark.scheduler
DAG_ID = names.dag_id("late")


def test_a_cycle_past_its_deadline_reaches_the_configured_notifier(tmp_path, own_metadata_db):
    port = _free_port()
    statsd = UdpListener()
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    env = {**_environment(stack_dir, port), **own_metadata_db,
           "AIRFLOW__LEVIATHAN__DEADLINE_NOTIFIER": "leviathan_lib.orchestrator.deadline.DeadlineNotifier",
           "AIRFLOW__LEVIATHAN__DEADLINE_MARGIN_SECONDS": "0",
           "AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
           "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port)}
    create_demo_target(stack_dir, target_id="late", timeout=1)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    switch_on_in(env)  # a new metadata DB has no switch: off until an operator switches it on
    stack = Stack(env, stack_dir / "logs")
    try:
        stack.start()
        api = Api(f"http://127.0.0.1:{port}")
        _wait("the API server", lambda: api.call("GET", "/api/v2/monitor/health"), 180, stack)
        api.login("admin", _wait("the admin password", lambda: _password(stack_dir / "airflow"), 60, stack))
        _wait("the DAG", lambda: api.call("GET", f"/api/v2/dags/{DAG_ID}"), 180, stack)
        api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None})
        metric = "airflow.leviathan.deadline_missed.late:1|c"
        _wait("the deadline notifier's metric", lambda: metric in statsd.lines, 240, stack)
        # Airflow's own count of the miss, from the scheduler, next to Leviathan's.
        assert any(line.startswith("airflow.deadline_alerts.deadline_missed") for line in statsd.lines)
        time.sleep(1)
        # Unpausing also starts the scheduled run; each run is reported at most once.
        runs = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]
        assert 1 <= statsd.lines.count(metric) <= len(runs), (statsd.lines.count(metric), len(runs))
    finally:
        stack.stop()
        statsd.close()
