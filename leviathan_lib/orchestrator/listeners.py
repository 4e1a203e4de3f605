"""Airflow listeners: Leviathan DAG-run and task-instance state changes as StatsD events.

They run inside the scheduler and every task process, so they must be cheap and must never raise:
each hook only formats a counter name from fixed parts and sends one UDP datagram (or nothing when
StatsD is off). If the StatsD agent, Spider or any event consumer is down, the datagram is lost and
the cycle goes on. The durable event stream is the evidence in the metadata DB, not this.

``on_starting`` in an Airflow job (scheduler, dag-processor, triggerer; never in a task process) imports
what a task process needs to parse a Leviathan DAG file and run an idle cycle's ``plan``, once, before the
scheduler forks its LocalExecutor workers: every task process forked from them starts with those modules
(copy-on-write) instead of importing them again.
"""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any

from airflow.listeners import hookimpl

from leviathan_lib.core.names import TASK_IDS, dag_target_id

log = logging.getLogger(__name__)

#: Only ids that are safe as a StatsD name segment become one.
TARGET_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


#: What a task process imports to parse the DAG file and run an idle cycle's ``plan`` (no I/O at import):
#: the Task SDK's decorators and Leviathan's DAG factory (the parse), then the Airflow-free cycle modules.
PRELOAD = (
    "airflow.sdk.definitions.decorators",
    "airflow.providers.standard.decorators.python",
    "leviathan_lib.orchestrator.dag_factory",
    "leviathan_lib.orchestrator.tasks",
    "leviathan_lib.cycle.check",
    "leviathan_lib.cycle.history",
    "leviathan_lib.cycle.outcome",
    "leviathan_lib.cycle.read",
    "leviathan_lib.cycle.replay",
    "leviathan_lib.cycle.protected",
    "leviathan_lib.core.autonomy",
    "leviathan_lib.core.paths",
    "leviathan_lib.worker.recipes",
)


@hookimpl
def on_starting(component: Any) -> None:
    """In a job process only (a task process's component is the task runner's marker): preload."""
    if type(component).__name__ != "Job":
        return
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    except Exception:  # the task process imports what is missing; never break the scheduler
        log.warning("Leviathan could not preload its cycle modules", exc_info=True)


def _target(dag_id: str | None) -> str | None:
    target_id = dag_target_id(dag_id)
    return target_id if target_id and TARGET_ID.fullmatch(target_id) else None


def _emit(kind: str, obj: object, state: str) -> None:
    try:
        dag_id = getattr(obj, "dag_id", None)
        task_id = getattr(obj, "task_id", None) if kind == "ti" else None
        target_id = _target(dag_id)
        if target_id is None:
            return
        from leviathan_lib.orchestrator import metrics

        if kind == "dag_run":
            metrics.incr(f"dagrun.{target_id}.{state}")
        else:
            metrics.incr(f"ti.{target_id}.{task_id if task_id in TASK_IDS else 'other'}.{state}")
    except Exception:  # a listener must never break a task or the scheduler
        log.debug("Leviathan listener could not emit %s", kind, exc_info=True)


@hookimpl
def on_dag_run_running(dag_run: Any, msg: Any) -> None:
    _emit("dag_run", dag_run, "running")


@hookimpl
def on_dag_run_success(dag_run: Any, msg: Any) -> None:
    _emit("dag_run", dag_run, "success")


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: Any) -> None:
    _emit("dag_run", dag_run, "failed")


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    _emit("ti", task_instance, "running")


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _emit("ti", task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _emit("ti", task_instance, "failed")


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    _emit("ti", task_instance, "skipped")
