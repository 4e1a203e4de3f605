"""A hostile recipe on one target of the same Airflow: its cycle records ``resource_limit``, the machine is
fine and the other target's cycle opens its PR (real Airflow ``dag.test()``, real bubblewrap)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from tests.airflow_helpers import commit_file, evidence_record, run_cycle
from tests.worker.backends.test_local import wait_marked_gone

pytestmark = pytest.mark.usefixtures("airflow_db")

#: Forks 400 processes, fills /tmp with 1 GiB and writes 1 GiB into the checkout, all at once.
HOSTILE = """\
import os, sys, threading, time
from pathlib import Path


def keep_trying(what):
    for _ in range(2000):
        try:
            return what()
        except OSError:
            time.sleep(0.01)


def fork_bomb():
    def child():
        if os.fork() == 0:
            time.sleep(120)
            os._exit(0)
    for _ in range(400):
        keep_trying(child)


def fill_tmp():
    for i in range(1024):
        keep_trying(lambda: Path(f"/tmp/fill-{i}").write_bytes(b"x" * (1 << 20)))


def fill_checkout():
    for i in range(1024):
        keep_trying(lambda: Path(f"docs/fill-{i}.bin").write_bytes(b"x" * (1 << 20)))


threads = [threading.Thread(target=f) for f in (fork_bomb, fill_tmp, fill_checkout)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def test_a_hostile_recipe_hits_its_limits_while_another_target_opens_its_pr(tmp_path, targets_dir):
    marker = f"leviathan-limits-cycle-{os.getpid()}-{time.monotonic_ns()}"
    hostile_file = create_demo_target(tmp_path, target_id="limits_hostile", targets_dir=targets_dir)
    calm_file = create_demo_target(tmp_path, target_id="limits_calm", targets_dir=targets_dir)
    with hostile_file.open("a", encoding="utf-8") as target:  # the target lowers the deployment's caps
        target.write("limits: {processes: 64, memory_mb: 256, cpu_seconds: 60, disk_mb: 64}\n")
    bare, work = tmp_path / "repos" / "limits_hostile.git", tmp_path / "hostile-work"
    commit_file(bare, work, ".leviathan/recipes/write_doc.py", HOSTILE, "a hostile recipe")
    recipes = (work / ".leviathan/recipes.yaml").read_text(encoding="utf-8").replace(
        '"quickstart"]', f'"quickstart", "{marker}"]')
    commit_file(bare, work, ".leviathan/recipes.yaml", recipes, "the marker the test looks for")

    scratch = Path(os.environ["LEVIATHAN_STATE_DIR"]) / "scratch"
    earlier = set(scratch.glob("leviathan-attempt-*"))  # a crash another test staged is the sweep's (test_limits)
    started = time.monotonic()
    dag_run, states = run_cycle(hostile_file)
    assert dag_run.state == "failed" and states[names.TASK_RUN_WORKER] == "failed"
    attempt = evidence_record(dag_run)["attempt"]
    assert attempt["outcome"] == "failed" and attempt["error_code"] == "resource_limit", attempt
    assert attempt["limits"]["exceeded"] in ("processes", "memory", "disk")
    assert attempt["limits"]["mechanism"] in ("cgroup-v2", "cgroup-v1", "rlimit")
    assert (attempt["limits"]["processes"], attempt["limits"]["memory_mb"], attempt["limits"]["disk_mb"]) == (
        64, 256, 64)
    assert time.monotonic() - started < 300
    wait_marked_gone(marker)  # nothing of the sandbox runs on
    assert set(scratch.glob("leviathan-attempt-*")) <= earlier

    dag_run, _ = run_cycle(calm_file)
    assert dag_run.state == "success"
    assert evidence_record(dag_run)["attempt"]["limits"]["exceeded"] is None
    assert [p.head for p in LocalForge(tmp_path / "repos" / "limits_calm.git").list_open_prs()] == [
        "agent/docs-quickstart/1"]
