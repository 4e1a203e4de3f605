"""Exactly one PR per attempt when Airflow re-runs tasks of the same DAG run ("clear" in the UI, retries)."""

from __future__ import annotations

import pytest

from leviathan_lib.core import names
from leviathan_lib.core.config import load_target
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from leviathan_lib.orchestrator.dag_factory import build_target_dag
from tests.airflow_helpers import evidence_record

pytestmark = pytest.mark.usefixtures("airflow_db")


def _clear(dag_run, task_ids: list[str]) -> None:
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id,
            TaskInstance.task_id.in_(task_ids))).all()
        assert len(tis) == len(task_ids)
        clear_task_instances(list(tis), session)


@pytest.mark.parametrize("cleared", [
    [names.TASK_OPEN_PULL_REQUEST, names.TASK_RECORD_EVIDENCE, names.TASK_CYCLE_OUTCOME],
    [names.TASK_RUN_WORKER, names.TASK_OPEN_PULL_REQUEST, names.TASK_RECORD_EVIDENCE, names.TASK_CYCLE_OUTCOME],
    [names.TASK_PLAN, names.TASK_RUN_WORKER, names.TASK_SKIP, names.TASK_OPEN_PULL_REQUEST,
     names.TASK_RECORD_EVIDENCE, names.TASK_CYCLE_OUTCOME],
])
def test_clearing_tasks_of_a_run_never_opens_a_second_pr(tmp_path, targets_dir, cleared):
    target_id = f"idem{len(cleared)}"  # evidence is per target: one target per case
    target_file = create_demo_target(tmp_path, target_id=target_id, targets_dir=targets_dir)
    bare = tmp_path / "repos" / f"{target_id}.git"
    dag = build_target_dag(load_target(target_file), target_file)
    first = dag.test()
    assert evidence_record(first)["attempt"]["pr_number"] == 1
    head = run_git(["--git-dir", str(bare), "rev-parse", "agent/docs-quickstart/1"]).stdout

    _clear(first, cleared)
    again = dag.test(run_after=first.run_after, logical_date=first.logical_date)
    assert again.run_id == first.run_id and again.state == "success"
    record = evidence_record(again)
    # The re-run is the same attempt: same branch, same PR, same commit; the forge holds one PR.
    assert record["attempt"]["branch"] == "agent/docs-quickstart/1"
    assert record["attempt"]["pr_number"] == 1
    assert [p.number for p in LocalForge(bare).list_prs()] == [1]
    assert run_git(["--git-dir", str(bare), "rev-parse", "agent/docs-quickstart/1"]).stdout == head
