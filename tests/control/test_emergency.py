"""The emergency runbook (``leviathan stop`` / ``leviathan resume``) against a real local Airflow.

A real worker is running (the real scheduler with the LocalExecutor, a recipe that hangs) when the
operator stops everything; the stop must end it, pause the DAGs, switch autonomy off and find nothing
running; the next cycle must not start an attempt; resume switches back on and unpauses what is named.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from tests.airflow_helpers import commit_file, evidence_record, run_cycle, set_switch
from tests.api_server import ApiServer, free_port

pytestmark = pytest.mark.usefixtures("airflow_db")

def leviathan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", *args], capture_output=True, text=True,
                          timeout=180, env={**os.environ, **(env or {})})


def api_connection(api: ApiServer, user: str) -> dict[str, str]:
    """The ``leviathan_airflow_api`` connection to the test's API server, as an Airflow user."""
    conn = {"conn_type": "http", "host": api.base, "login": user, "password": api.password(user)}
    return {"AIRFLOW_CONN_LEVIATHAN_AIRFLOW_API": json.dumps(conn)}


def _json(stdout: str):
    """The command's JSON document (Airflow's log lines may share stdout, as with the ``airflow`` CLI)."""
    return json.loads(stdout[stdout.index("{\n"):])


def _worker_state(dag_id: str) -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        states = session.scalars(select(TaskInstance.state).where(
            TaskInstance.dag_id == dag_id, TaskInstance.task_id == names.TASK_RUN_WORKER)).all()
    return str(states[-1]) if states else None


def _paused(dag_id: str) -> bool:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.get(DagModel, dag_id).is_paused


def test_stop_ends_the_running_worker_pauses_switches_off_and_resume_restores(tmp_path, targets_dir, airflow_db,
                                                                             request):
    from airflow.models.variable import Variable

    target_file = create_demo_target(tmp_path, target_id="estop", targets_dir=targets_dir)
    commit_file(tmp_path / "repos" / "estop.git", tmp_path / "work", ".leviathan/recipes/write_doc.py",
                "import time\ntime.sleep(300)\n", "a recipe that hangs")
    for command in (["dags", "reserialize"], ["dags", "unpause", names.dag_id("estop")]):
        subprocess.run([sys.executable, "-m", "airflow", *command], check=True, capture_output=True)
    api = ApiServer(airflow_db).start()  # LocalExecutor tasks talk to its execution API
    request.addfinalizer(lambda: set_switch(True))  # whatever fails below, the next test finds the switch on
    log = open(tmp_path / "scheduler.log", "wb")  # noqa: SIM115 - closed in finally
    env = {**os.environ, "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api.base}/execution/"}
    scheduler = subprocess.Popen([sys.executable, "-m", "airflow", "scheduler"], env=env, stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while _worker_state(names.dag_id("estop")) != "running":
            assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()[-3000:]
            time.sleep(0.5)
        wrong = {**api_connection(api, "op"), "AIRFLOW_CONN_LEVIATHAN_AIRFLOW_API": json.dumps(
            {"conn_type": "http", "host": api.base, "login": "op", "password": "wrong"})}
        refused = leviathan("stop", "--reason", "runaway worker", "--wait", "0", env=wrong)
        assert refused.returncode == 1 and "refused the login 'op'" in refused.stderr, refused.stderr
        # A viewer may read but not pause or fail: the stop says so, exits non-zero and changes nothing in
        # Airflow (the switch is off all the same).
        refused = leviathan("stop", "--reason", "runaway worker", "--by", "oncall", "--wait", "0",
                            env=api_connection(api, "viewer"))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "may not do this (403)" in refused.stderr and "role User, Op or Admin" in refused.stderr
        assert "Traceback" not in refused.stderr and api.password("viewer") not in refused.stdout + refused.stderr
        assert _json(refused.stdout)["paused_dags"] == [] and _json(refused.stdout)["idle"] is False
        assert Variable.get("leviathan_autonomy_enabled") == "false"
        assert not _paused(names.dag_id("estop")) and _worker_state(names.dag_id("estop")) == "running"

        stop = leviathan("stop", "--reason", "runaway worker", "--by", "oncall", "--wait", "90",
                         env=api_connection(api, "op"))
        assert stop.returncode == 0, stop.stdout + stop.stderr
        report = _json(stop.stdout)
        assert report["idle"] is True and report["activity"]["active_task_instances"] == []
        assert names.dag_id("estop") in report["paused_dags"]  # (and whatever other tests left unpaused)
        assert report["failed_worker_tasks"] and report["failed_worker_tasks"][0].startswith("leviathan__estop/")
    finally:
        os.killpg(scheduler.pid, 15)
        try:
            scheduler.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(scheduler.pid, 9)
            scheduler.wait()
        log.close()
        api.stop()
    try:
        assert _worker_state(names.dag_id("estop")) == "failed"
        assert Variable.get("leviathan_autonomy_enabled") == "false"
        assert _paused(names.dag_id("estop"))
        # The next cycle (run by hand: the DAG is paused for the scheduler) starts no attempt.
        dag_run, states = run_cycle(target_file)
        assert evidence_record(dag_run)["reasons"] == ["autonomy_disabled"]
        assert states[names.TASK_RUN_WORKER] == "skipped"

        unknown = leviathan("resume", "--reason", "fixed", "--target", "nope")
        assert unknown.returncode == 2 and "not a configured target: nope" in unknown.stderr
        assert Variable.get("leviathan_autonomy_enabled") == "false"
        resume = leviathan("resume", "--reason", "recipe fixed", "--by", "oncall", "--target", "estop")
        assert resume.returncode == 0, resume.stderr
        assert _json(resume.stdout)["unpaused_dags"] == [names.dag_id("estop")]
        assert Variable.get("leviathan_autonomy_enabled") == "true"
        assert not _paused(names.dag_id("estop"))
    finally:  # leave nothing a later test's scheduler could pick up (the DAG is unpaused, its repo hangs)
        from airflow.api.common.delete_dag import delete_dag

        set_switch(True)
        delete_dag(names.dag_id("estop"), keep_records_in_log=False)


def test_stop_without_the_api_connection_switches_off_and_says_what_is_missing(airflow_db, request):
    from airflow.models.variable import Variable

    request.addfinalizer(lambda: set_switch(True))
    result = leviathan("stop", "--reason", "drill", "--wait", "0", "--conn-id", "no_such_api")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the Airflow connection 'no_such_api' is not available" in result.stderr
    assert "AIRFLOW_CONN_NO_SUCH_API=" in result.stderr and "Traceback" not in result.stderr
    report = _json(result.stdout)
    assert report["idle"] is False and report["activity"] is None and report["api_problem"]
    assert Variable.get("leviathan_autonomy_enabled") == "false"  # the switch needs no API: it is off

    generated = secrets.token_hex(12)  # must never be printed
    closed = {"AIRFLOW_CONN_LEVIATHAN_AIRFLOW_API": json.dumps(
        {"conn_type": "http", "host": f"127.0.0.1:{free_port()}", "login": "op", "password": generated})}
    result = leviathan("stop", "--reason", "drill", "--wait", "0", env=closed)
    assert result.returncode == 1 and "is unreachable (ConnectError)" in result.stderr, result.stderr
    assert generated not in result.stdout + result.stderr


def test_stop_and_resume_need_a_reason():
    result = leviathan("stop", "--reason", "  ")
    assert result.returncode == 2 and "--reason" in result.stderr and "Traceback" not in result.stderr
