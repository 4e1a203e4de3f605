"""Emergency stop and resume, in Airflow terms, on the record.

Stop: switch autonomy off globally (the Variable, recorded as an ``autonomy.changed`` event), pause every
Leviathan DAG, stop running workers (Kubernetes: delete the worker pods; local backend: mark the running
``run_worker`` task instances failed, which makes Airflow terminate them), then check that nothing is
running. Resume switches the global flag back on and unpauses only the targets the operator names:
which targets were meant to run is a decision, not something to guess.

Like the ``airflow`` CLI, this runs where Airflow's configuration (and so the metadata DB) is.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from leviathan_lib.control import switch
from leviathan_lib.control.fleet import configured_targets
from leviathan_lib.core.names import DAG_ID_PREFIX, TASK_RUN_WORKER

WORKER_POD_LABEL = "app=leviathan-worker"
WORKER_NAMESPACE = "leviathan"
#: Task states in which something executes or is about to (a paused DAG's "scheduled" tasks are not queued).
ACTIVE_STATES = ("running", "queued", "restarting", "deferred")


class Activity(BaseModel):
    #: Runs of paused DAGs stay "running" but execute nothing; their remaining tasks (the evidence) go on
    #: after resume. Reported, not waited for.
    running_dag_runs: list[str] = Field(default_factory=list)
    active_task_instances: list[str] = Field(default_factory=list)

    @property
    def idle(self) -> bool:
        return not self.active_task_instances


class StopReport(BaseModel):
    paused_dags: list[str]
    failed_worker_tasks: list[str]
    deleted_pods: list[str]
    pod_problem: str | None = None
    activity: Activity


def _leviathan(column: Any) -> Any:
    """``dag_id`` starts with ``leviathan__`` (escaped: ``_`` is a LIKE wildcard)."""
    return column.startswith(DAG_ID_PREFIX, autoescape=True)


def pause_all() -> list[str]:
    """Pause every Leviathan DAG (valid and invalid targets alike); return those that were running."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dags = session.scalars(select(DagModel).where(_leviathan(DagModel.dag_id))).all()
        changed = sorted(d.dag_id for d in dags if not d.is_paused)
        for dag in dags:
            dag.is_paused = True
    return changed


def fail_local_workers() -> list[str]:
    """Mark running/queued ``run_worker`` task instances failed; Airflow then terminates their processes."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(
            _leviathan(TaskInstance.dag_id), TaskInstance.task_id == TASK_RUN_WORKER,
            TaskInstance.state.in_(ACTIVE_STATES))).all()
        names = sorted(f"{ti.dag_id}/{ti.run_id}/{ti.task_id}" for ti in tis)
        for ti in tis:
            ti.state = "failed"
            ti.end_date = datetime.now(UTC)
    return names


def delete_worker_pods(namespace: str = WORKER_NAMESPACE) -> list[str]:
    """Delete the worker pods (label ``app=leviathan-worker``) through the cncf.kubernetes provider's
    ``KubernetesHook`` on the connection the worker pods are started with (``kubernetes_default``: when it does
    not exist, the in-cluster configuration, else the kube config)."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    api = KubernetesHook().core_v1_client
    pods = api.list_namespaced_pod(namespace, label_selector=WORKER_POD_LABEL, _request_timeout=30).items
    for pod in pods:
        api.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=30, _request_timeout=30)
    return sorted(p.metadata.name for p in pods)


def activity() -> Activity:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.execute(select(DagRun.dag_id, DagRun.run_id).where(
            _leviathan(DagRun.dag_id), DagRun.state.in_(("running", "queued")))).all()
        tis = session.execute(select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id).where(
            _leviathan(TaskInstance.dag_id), TaskInstance.state.in_(ACTIVE_STATES))).all()
    return Activity(running_dag_runs=sorted(f"{d}/{r}" for d, r in runs),
                    active_task_instances=sorted(f"{d}/{r}/{t}" for d, r, t in tis))


def stop(*, by: str, reason: str, wait_seconds: float = 0.0) -> StopReport:
    switch.set_global(False, by=by, reason=f"emergency stop: {reason}")
    paused = pause_all()
    failed = fail_local_workers()
    pods: list[str] = []
    problem = None
    namespaces = {t.worker_namespace for t in configured_targets().values() if t.worker_backend == "kubernetes"}
    for namespace in sorted(namespaces):
        try:
            pods += delete_worker_pods(namespace)
        except Exception as exc:  # noqa: BLE001 — report, do not hide: the operator must stop the pods another way
            problem = f"could not delete worker pods in namespace {namespace}: {type(exc).__name__}: {exc}"
    deadline = time.monotonic() + wait_seconds
    state = activity()
    while not state.idle and time.monotonic() < deadline:
        time.sleep(1)
        state = activity()
    return StopReport(paused_dags=paused, failed_worker_tasks=failed, deleted_pods=pods, pod_problem=problem,
                      activity=state)


def resume(*, by: str, reason: str, targets: list[str]) -> list[str]:
    """Switch the global flag on and unpause the named targets' DAGs (recorded per target)."""
    known = configured_targets()
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise switch.UnknownTarget(f"not a configured target: {', '.join(unknown)}")
    switch.set_global(True, by=by, reason=f"resume: {reason}")
    for target_id in targets:
        switch.set_target(target_id, known[target_id].dag_id, True, by=by, reason=f"resume: {reason}")
    return [known[t].dag_id for t in targets]
