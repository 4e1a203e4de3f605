"""The shared names: the agent branch scheme round-trips and refuses anything outside ``agent/``."""

import pytest

from leviathan_lib.core import names


def test_an_agent_branch_names_its_task_and_attempt():
    branch = names.agent_branch("fix-readme", 3)
    assert branch == "agent/fix-readme/3"
    assert names.is_agent_branch(branch) and names.require_agent_branch(branch) == branch
    assert names.branch_task_id(branch) == "fix-readme"


@pytest.mark.parametrize("branch", ["main", "agent/", "agent//", "agents/x/1", "feature/agent/x", ""])
def test_only_agent_branches_may_be_touched(branch):
    assert not names.is_agent_branch(branch)
    with pytest.raises(ValueError, match="only agent/"):
        names.require_agent_branch(branch)


@pytest.mark.parametrize(("branch", "task_id"), [
    ("agent/t1/1", "t1"), ("agent/t1", "t1"), ("agent/", None), ("agent//1", None), ("main", None),
    ("feature/t1/1", None),
])
def test_branch_task_id(branch, task_id):
    assert names.branch_task_id(branch) == task_id


def test_dag_ids_and_their_target():
    assert names.dag_id("widgets") == "leviathan__widgets"
    assert names.dag_target_id(names.dag_id("widgets")) == "widgets"
    assert names.dag_target_id(names.invalid_dag_id("broken")) is None
    assert names.dag_target_id("other_dag") is None and names.dag_target_id(None) is None
    assert names.dag_target_id(names.DAG_ID_PREFIX) is None


def test_every_cycle_task_id_is_known():
    assert {names.TASK_PLAN, names.TASK_RUN_WORKER, names.TASK_SKIP, names.TASK_PREPARE_ATTEMPT,
            names.TASK_CONFIG_ERROR, names.TASK_APPROVE_PLAN, names.TASK_APPROVE_PULL_REQUEST} <= names.TASK_IDS
    assert len(names.TASK_IDS) == 10
    assert set(names.RECORD_TASK_IDS) <= names.TASK_IDS
