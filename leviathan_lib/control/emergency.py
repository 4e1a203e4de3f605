"""Emergency stop and resume, in Airflow terms, on the record.

Stop: switch autonomy off globally (the Variable, recorded as an ``autonomy.changed`` event), pause every
Leviathan DAG and mark the active ``run_worker`` task instances failed through Airflow's REST API (Airflow then
terminates them), delete the worker pods through ``KubernetesHook``, then check through the API that nothing
is running. Resume switches the global flag back on and unpauses only the targets the operator names:
which targets were meant to run is a decision, not something to guess.

The switch is Leviathan's own record (a Variable and an asset event, as Spider writes it), so, like the
``airflow`` CLI, this runs where Airflow's configuration is; Airflow's task and DAG state is changed only
through its API (:mod:`leviathan_lib.control.airflow_api`).
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from leviathan_lib.control import switch
from leviathan_lib.control.airflow_api import AirflowApiHook, AirflowApiUnavailable
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
    #: Why Airflow's API could not be used: the DAGs may still be unpaused and the workers running (the
    #: switch is off all the same, so no cycle starts new work).
    api_problem: str | None = None
    #: None when it could not be read.
    activity: Activity | None

    @property
    def idle(self) -> bool:
        return self.activity is not None and self.activity.idle


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


def activity(api: AirflowApiHook) -> Activity:
    return Activity(running_dag_runs=api.dag_runs(DAG_ID_PREFIX, ("running", "queued")),
                    active_task_instances=api.task_instances(DAG_ID_PREFIX, ACTIVE_STATES))


def _stop_in_airflow(api: AirflowApiHook) -> tuple[list[str], list[str]]:
    """Pause every unpaused Leviathan DAG, then fail the active ``run_worker`` task instances."""
    paused = api.dag_ids(DAG_ID_PREFIX, paused=False)
    for dag_id in paused:
        api.pause(dag_id)
    failed = api.task_instances(DAG_ID_PREFIX, ACTIVE_STATES, task_id=TASK_RUN_WORKER)
    for name in failed:
        api.fail(*name.split("/", 2))
    return paused, failed


def stop(*, by: str, reason: str, wait_seconds: float = 0.0, api: AirflowApiHook) -> StopReport:
    """Switch off first (from then on no cycle starts new work, whatever fails below), then pause and fail
    through Airflow's API, delete the pods, and wait (bounded) until nothing Leviathan's is active."""
    switch.set_global(False, by=by, reason=f"emergency stop: {reason}")
    paused: list[str] = []
    failed: list[str] = []
    api_problem = None
    try:
        paused, failed = _stop_in_airflow(api)
    except AirflowApiUnavailable as exc:
        api_problem = str(exc)
    pods: list[str] = []
    pod_problem = None
    namespaces = {t.worker_namespace for t in configured_targets().values() if t.worker_backend == "kubernetes"}
    for namespace in sorted(namespaces):
        try:
            pods += delete_worker_pods(namespace)
        except Exception as exc:  # noqa: BLE001 — report, do not hide: the operator must stop the pods another way
            pod_problem = f"could not delete worker pods in namespace {namespace}: {type(exc).__name__}: {exc}"
    state = None
    if api_problem is None:
        deadline = time.monotonic() + wait_seconds
        try:
            state = activity(api)
            while not state.idle and time.monotonic() < deadline:
                time.sleep(1)
                state = activity(api)
        except AirflowApiUnavailable as exc:
            api_problem, state = str(exc), None
    return StopReport(paused_dags=paused, failed_worker_tasks=failed, deleted_pods=pods, pod_problem=pod_problem,
                      api_problem=api_problem, activity=state)


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
