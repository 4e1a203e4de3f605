"""The listeners' preload: a job (the scheduler before it forks LocalExecutor workers) imports an idle
cycle's modules once; a task process imports nothing for it. Real listener managers, in a fresh process."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from airflow.sdk.execution_time.task_runner import TaskRunnerMarker
from airflow.sdk.listener import get_listener_manager
from leviathan_lib.orchestrator.listeners import PRELOAD
get_listener_manager().hook.on_starting(component=TaskRunnerMarker())
in_task_process = [m for m in PRELOAD if m in sys.modules]
from airflow.jobs.job import Job
Job()  # what the scheduler, dag-processor and triggerer commands create first; calls on_starting
print(in_task_process, [m for m in PRELOAD if m not in sys.modules])
"""


def test_a_job_preloads_the_idle_cycle_and_a_task_process_does_not():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[] []"


def test_the_preloaded_modules_import_nothing_heavy():
    """Copy-on-write into every task process of the scheduler: the DAG file's parse and the idle cycle's code,
    never a client library (Kubernetes, GitHub, a model provider, metrics)."""
    code = ("import sys, importlib; from leviathan_lib.orchestrator.listeners import PRELOAD; "
            "before = set(sys.modules); [importlib.import_module(m) for m in PRELOAD]; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} & "
            "{'kubernetes', 'github', 'pydantic_ai', 'openai', 'anthropic', 'statsd', 'prometheus_client', 'httpx'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]"
