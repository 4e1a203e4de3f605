"""Answer a cycle's approval gate the way a human does: through Airflow's real REST API, with a token.

``dag.test()`` keeps a run alive while a task waits in ``awaiting_input``; a thread finds the waiting
task and answers it through the HITL endpoint of the core API app (the same routes, auth and resume as
the API server's, in process), or lets the real scheduler's timeout sweep answer it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from leviathan_lib.core.config import load_target

#: How long the answering thread waits for the gate to start waiting.
WAIT_SECONDS = 240


def _waiting(dag_id: str) -> Any:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalars(select(TaskInstance).where(
            TaskInstance.dag_id == dag_id, TaskInstance.state == TaskInstanceState.AWAITING_INPUT)).first()
        return (ti.run_id, ti.task_id, ti.trigger_timeout) if ti else None


def _password(user: str) -> str:
    import os

    home = Path(os.environ["AIRFLOW_HOME"])
    return str(json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())[user])


_CLIENT: Any = None


def api_client() -> Any:
    """One in-process client of Airflow's core API app (auth manager included) per test session."""
    global _CLIENT
    if _CLIENT is None:
        from airflow.api_fastapi.app import create_app
        from fastapi.testclient import TestClient

        _CLIENT = TestClient(create_app(apps="core"))
    return _CLIENT


def answer(dag_id: str, run_id: str, task_id: str, option: str, user: str, reason: str | None = None) -> Any:
    """``PATCH .../hitlDetails`` as ``user`` (SimpleAuthManager, its generated password), with the gate's
    reason field when given (the UI's form sends it): the response."""
    client = api_client()
    token = client.post("/auth/token", json={"username": user, "password": _password(user)}).json()["access_token"]
    return client.patch(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
                        json={"chosen_options": [option], "params_input": {} if reason is None else {"reason": reason}},
                        headers={"Authorization": f"Bearer {token}"})


def sweep_timeouts() -> None:
    """The real scheduler's sweep of ``awaiting_input`` tasks past their response timeout."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()


class Answerer(threading.Thread):
    """Waits for the target's gate, then answers ``option`` as ``user``; with ``option=None``, or an answer the
    API refused, the gate is left to time out."""

    def __init__(self, dag_id: str, option: str | None, user: str = "admin", reason: str | None = None):
        super().__init__(daemon=True)
        self.dag_id, self.option, self.user, self.reason = dag_id, option, user, reason
        self.responses: list[Any] = []
        self.asked: tuple[str, str] | None = None
        #: What Leviathan's control layer saw waiting before the answer (control.approvals).
        self.pending: list[Any] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 — reported by run_gated_cycle in the test's thread
            self.error = exc

    def _run(self) -> None:
        from datetime import UTC, datetime

        deadline = time.monotonic() + WAIT_SECONDS
        while (found := _waiting(self.dag_id)) is None:
            if self.stop.is_set():
                return  # the run ended without asking
            if time.monotonic() > deadline:
                raise TimeoutError(f"no task of {self.dag_id} waited for input")
            time.sleep(0.5)
        run_id, task_id, timeout_at = found
        self.asked = (run_id, task_id)
        from leviathan_lib.control.approvals import pending_approvals

        self.pending = pending_approvals([self.dag_id]).get(self.dag_id, [])
        if self.option is not None:
            self.responses.append(answer(self.dag_id, run_id, task_id, self.option, self.user, self.reason))
            if self.responses[-1].status_code == 200:
                return
        # Nobody (allowed) answered: the scheduler's sweep resolves the gate once its timeout has passed.
        while timeout_at and datetime.now(UTC) <= timeout_at:
            time.sleep(0.5)
        sweep_timeouts()


def run_gated_cycle(target_file: Path, option: str | None, user: str = "admin",
                    reason: str | None = None) -> tuple[Any, dict[str, str], Answerer]:
    """One real cycle whose gate is answered ``option`` by ``user`` (None: nobody answers, it times out), with
    ``reason`` in the gate's form."""
    import airflow.jobs.scheduler_job_runner  # noqa: F401 — import in this thread: two threads importing
    import airflow.serialization.serialized_objects  # noqa: F401 — Airflow's modules can deadlock
    from airflow.models import import_all_models

    from leviathan_lib.orchestrator.dag_factory import build_target_dag

    import_all_models()
    api_client()
    target = load_target(target_file)
    answerer = Answerer(target.dag_id, option, user, reason)
    answerer.start()
    try:
        dag_run = build_target_dag(target, target_file).test()
    finally:
        answerer.stop.set()
        answerer.join(timeout=60)
    if answerer.error:
        raise answerer.error
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    return dag_run, states, answerer
