"""``airflow backfill create`` through the real scheduler is an audit replay: records, no PR, no push.

A date before the repository's first commit is a green ``no_commit_at_date`` replay; the run the scheduler
makes on unpausing (dated at the last missed tick) is an ordinary cycle, never a failing replay.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.demo.runner import Api, Stack, _environment, _wait
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import switch_on_in
from tests.e2e.test_scheduler import _free_port
from tests.evidence.test_records import _dated_repo

pytestmark = pytest.mark.scheduler
DAG_ID = names.dag_id("history")


def test_backfill_replays_each_date_and_opens_nothing(tmp_path, own_metadata_db):
    port = _free_port()
    demo = tmp_path / "stack"
    demo.mkdir()
    env = {**_environment(demo, port), **own_metadata_db}  # a fresh DB of its own (PostgreSQL by default)
    target_file = create_demo_target(demo, target_id="history", schedule="0 0 * * *")
    bare = demo / "repos" / "history.git"
    shutil.rmtree(bare)
    _dated_repo(bare, tmp_path / "work", [("2026-03-01T12:00:00+00:00", "docs-quickstart"),
                                          ("2026-03-03T12:00:00+00:00", "docs-faq")])
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    switch_on_in(env)  # a new metadata DB has no switch: off until an operator switches it on
    stack = Stack(env, demo / "logs")
    try:
        stack.start()
        api = Api(f"http://127.0.0.1:{port}")
        _wait("the API server", lambda: api.call("GET", "/api/v2/monitor/health"), 180, stack)
        from leviathan_lib.demo.runner import _password

        password = _wait("the admin password", lambda: _password(demo / "airflow"), 60, stack)
        api.login("admin", password)
        _wait("the DAG", lambda: api.call("GET", f"/api/v2/dags/{DAG_ID}"), 180, stack)
        # Create the backfill while the DAG is still paused, then unpause: the CLI's inserts then do not
        # race the scheduler's first scheduled run for SQLite's single write lock.
        for _ in range(3):  # SQLite under load can stay locked past the busy timeout: bounded retries
            created = subprocess.run(
                [sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", DAG_ID,
                 "--from-date", "2026-02-28", "--to-date", "2026-03-04"],
                env=env, capture_output=True, text=True, timeout=180)
            if created.returncode == 0 or "database is locked" not in created.stderr:
                break
        assert created.returncode == 0, created.stderr[-2000:]
        api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})

        def backfill_done():
            runs = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?run_type=backfill&limit=100")["dag_runs"]
            return runs if len(runs) == 5 and all(r["state"] in ("success", "failed") for r in runs) else None

        runs = _wait("the backfill runs", backfill_done, 300, stack)
        by_date = {}
        for run in runs:
            assert run["state"] == "success", run
            record = api.cycle_record(DAG_ID, run["dag_run_id"])
            assert record["replay"] is True and record["run_type"] == "backfill" and record["attempt"] is None
            by_date[run["logical_date"][:10]] = record["selected_task"] or record["stopped_reason"]

        def scheduled_done():
            runs = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?run_type=scheduled&limit=10")["dag_runs"]
            return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else None

        scheduled = _wait("the run made on unpausing", scheduled_done, 300, stack)
        for run in scheduled:  # dated at the last midnight, hours ago: a cycle on the tip, not a replay
            assert run["state"] == "success", run
            record = api.cycle_record(DAG_ID, run["dag_run_id"])
            assert record["replay"] is False and record["stopped_reason"] == "pr_opened", record
    finally:
        stack.stop()
    # The backlog as it was: nothing before the first commit, docs-quickstart until 2026-03-03, then docs-faq.
    assert by_date == {"2026-02-28": "no_commit_at_date", "2026-03-01": "no_commit_at_date",
                       "2026-03-02": "docs-quickstart", "2026-03-03": "docs-quickstart", "2026-03-04": "docs-faq"}
    # Only the scheduled cycle opened a PR; no replay pushed anything.
    assert [p.head for p in LocalForge(bare).list_prs()] == ["agent/docs-faq/1"]
    assert run_git(["--git-dir", str(bare), "branch", "--list", "agent/*"]).stdout.split() == ["agent/docs-faq/1"]
    assert target_file.exists()
