"""Fleet-wide limits through the real scheduler: the fleet breaker trips on another target's failures, an
admin resets it on the record, and the account's open-PR cap holds across two targets.

The real API server, scheduler, dag-processor and triggerer on a fresh metadata DB; three demo targets on the
local forge (one account, ``local``) with a daily cron whose tick was hours ago, so unpausing a target starts
exactly one run and every later run is one the test triggers. The cycle records are read from the REST API.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.demo.runner import Api, Stack, _environment, _password, _wait
from tests.airflow_helpers import commit_file, switch_on_in
from tests.e2e.test_scheduler import _free_port

pytestmark = pytest.mark.scheduler
FLEET = "fleet_max_open_prs: 1\nfleet_breaker_min_attempts: 2\nfleet_breaker_failure_rate: 0.5\n"


def _quiet() -> str:
    tick = datetime.now(UTC) - timedelta(hours=6)
    return f"{tick.minute} {tick.hour} * * *"


def _runs(api: Api, dag: str) -> list[dict]:
    return api.call("GET", f"/api/v2/dags/{dag}/dagRuns?limit=100&order_by=run_after")["dag_runs"]


def _next_record(api: Api, stack: Stack, target: str, known: int, *, unpause: bool = False) -> dict:
    """Unpause (its one scheduled run) or trigger ``target``, wait for that run to end, and return its record."""
    dag = names.dag_id(target)
    if unpause:
        api.call("PATCH", f"/api/v2/dags/{dag}", {"is_paused": False})
    else:
        api.call("POST", f"/api/v2/dags/{dag}/dagRuns", {"logical_date": None})
    run = _wait(f"{target}'s run to end", lambda: (runs := _runs(api, dag)) and len(runs) > known and
                runs[-1]["state"] in ("success", "failed") and runs[-1], 300, stack)
    return api.cycle_record(dag, run["dag_run_id"])


def _check(record: dict, name: str) -> dict:
    return next(c for c in record["checks"] if c["name"] == name)


def test_the_fleet_breaker_trips_and_resets_and_the_account_cap_holds_through_the_scheduler(
        tmp_path, own_metadata_db):
    port = _free_port()
    root = tmp_path / "stack"
    root.mkdir()
    env = {**_environment(root, port), **own_metadata_db}
    for target in ("flaky", "one", "two"):
        create_demo_target(root, target_id=target, schedule=_quiet())
    (root / "targets" / "fleet.yaml").write_text(FLEET, encoding="utf-8")
    commit_file(root / "repos" / "flaky.git", tmp_path / "work", ".leviathan/recipes/write_doc.py",
                "import sys\nsys.exit(3)\n", "a recipe that fails (a bad model release, say)")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    switch_on_in(env)
    stack = Stack(env, root / "logs")
    try:
        stack.start()
        api = Api(f"http://127.0.0.1:{port}")
        _wait("the API server", lambda: api.call("GET", "/api/v2/monitor/health"), 180, stack)
        api.login("admin", _wait("the admin password", lambda: _password(root / "airflow"), 60, stack))
        for target in ("flaky", "one", "two"):
            _wait(f"DAG {target}", lambda t=target: api.call("GET", f"/api/v2/dags/{names.dag_id(t)}"), 180, stack)

        # Two failed attempts of one target: more than half of at least two attempts of the fleet failed.
        for known in (0, 1):
            record = _next_record(api, stack, "flaky", known, unpause=known == 0)
            assert record["stopped_reason"] == "recipe_failed" and record["attempt"]["outcome"] == "failed", record
        # Another target, which never failed, stops with the fleet breaker open and runs no worker.
        record = _next_record(api, stack, "one", 0, unpause=True)
        assert record["reasons"] == ["fleet_breaker_open"] and record.get("attempt") is None, record
        assert _check(record, "fleet_breaker")["detail"].startswith("2 of 2 attempt(s) of the fleet failed")

        # An admin resets it, with a reason, on the record; the next cycle delivers.
        reset = subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", "breaker", "reset", "--fleet",
                                "--reason", "model rolled back", "--by", "oncall"], env=env, capture_output=True,
                               text=True, timeout=120)
        assert reset.returncode == 0, reset.stderr
        assert json.loads(reset.stdout.splitlines()[-1])["kind"] == "fleet_breaker_reset"
        record = _next_record(api, stack, "one", 1)
        assert record["stopped_reason"] == "pr_opened", record
        assert "since the reset at" in _check(record, "fleet_breaker")["detail"]

        # That PR is the account's one: the third target, whose own limit would allow one, waits.
        record = _next_record(api, stack, "two", 0, unpause=True)
        assert record["reasons"] == ["fleet_open_prs_limit"] and record.get("attempt") is None, record
        assert _check(record, "fleet_open_prs")["detail"] == "1 open PR(s) on account local (0 of this target), limit 1"
        assert _check(record, "open_prs")["passed"]
    finally:
        stack.stop()

