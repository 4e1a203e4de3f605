"""Approval gates through real Airflow: ``dag.test()`` waits in ``awaiting_input`` and a human answers through
the real HITL REST API (tests/hitl.py), or nobody answers and the scheduler's timeout sweep rejects."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from leviathan_lib.core import names
from leviathan_lib.cycle.approval import md
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import commit_file, evidence_record, xcom
from tests.hitl import run_gated_cycle

pytestmark = pytest.mark.usefixtures("airflow_db")


def _gated(tmp_path: Path, targets_dir: Path, target_id: str, gate: str, extra: str = "") -> Path:
    target_file = create_demo_target(tmp_path, target_id=target_id, targets_dir=targets_dir)
    with target_file.open("a", encoding="utf-8") as out:
        out.write(f"approval: {gate}\n{extra}")
    return target_file


def _verdicts(record: dict) -> dict[str, list[str]]:
    return {t["id"]: t["reasons"] for t in record["tasks"]}


def _hitl_detail(dag_run, task_id: str):
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalars(select(HITLDetail).join(TaskInstance, HITLDetail.ti_id == TaskInstance.id).where(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id,
            TaskInstance.task_id == task_id)).one()


def test_plan_gate_approved_opens_the_pr_and_records_who_approved(tmp_path, targets_dir):
    target_file = _gated(tmp_path, targets_dir, "gate_ok", "plan", "approval_assignees: [admin]\n")
    dag_run, states, answerer = run_gated_cycle(target_file, "Approve")
    assert answerer.responses[0].status_code == 200, answerer.responses[0].text
    assert answerer.asked == (dag_run.run_id, names.TASK_APPROVE_PLAN)
    assert dag_run.state == "success"
    assert states[names.TASK_APPROVE_PLAN] == "success" and states[names.TASK_OPEN_PULL_REQUEST] == "success"
    record = evidence_record(dag_run)
    assert record["stopped_reason"] == "pr_opened" and record["attempt"]["pr_number"] == 1
    approval = record["approval"]
    assert approval["gate"] == "plan" and approval["choice"] == "approved" and approval["reason"] == "human"
    assert approval["by"] == "admin" and approval["at"] and approval["assignees"] == ["admin"]
    # What the approver was shown: the task, its scope and the recipe's steps (escaped Markdown).
    detail = _hitl_detail(dag_run, names.TASK_APPROVE_PLAN)
    assert detail.subject == "gate_ok / docs-quickstart: approve the plan (attempt 1)"
    # While it waited, Leviathan's own pages saw it: since when, until when, the link to the Required Action.
    [pending] = answerer.pending
    assert pending.subject == detail.subject and pending.since == detail.created_at
    assert pending.rejects_at is not None and (pending.rejects_at - pending.since).total_seconds() > 86000
    assert pending.url == f"/dags/{dag_run.dag_id}/runs/{quote(dag_run.run_id, safe='')}/tasks/approve_plan/" \
                          "required_actions"
    assert pending.text().startswith("awaiting approval since ")
    assert "**Task docs\\-quickstart**" in detail.body
    assert f"the task may change {md('docs/quickstart.md')}" in detail.body
    assert "**Plan**: recipe write\\-quickstart" in detail.body and "```sh\n" in detail.body
    assert detail.assigned_users == [{"id": "admin", "name": "admin"}]
    [pr] = LocalForge(tmp_path / "repos" / "gate_ok.git").list_open_prs()
    assert pr.head == "agent/docs-quickstart/1"
    at = datetime.fromisoformat(approval["at"]).astimezone(UTC)
    assert f"| Approved | the plan, by admin at {at:%Y-%m-%d %H:%M:%S} UTC |" in pr.body  # who and when


def test_plan_gate_rejected_pushes_nothing_and_the_task_waits_for_a_new_definition(tmp_path, targets_dir):
    target_file = _gated(tmp_path, targets_dir, "gate_no", "plan", "dashboard: true\n")
    bare = tmp_path / "repos" / "gate_no.git"
    dag_run, states, answerer = run_gated_cycle(target_file, "Reject", reason="Too broad <b>@team</b>")
    assert answerer.responses[0].status_code == 200
    assert dag_run.state == "success"  # a human decision is no error
    assert states[names.TASK_RUN_WORKER] == "skipped" and states[names.TASK_RECORD_EVIDENCE] == "skipped"
    assert states[names.TASK_CYCLE_OUTCOME] == "success"
    record = evidence_record(dag_run)
    assert xcom(dag_run, names.TASK_APPROVE_PLAN, names.XCOM_RECORD) == record  # the gate wrote it
    assert record["stopped_reason"] == "rejected_by_human" and record["attempt"] is None
    assert record["approval"]["choice"] == "rejected" and record["approval"]["by"] == "admin"
    assert "admin rejected the plan at" in record["stopped_detail"]
    assert record["approval"]["note"] == "Too broad <b>@team</b>"
    assert record["stopped_detail"].endswith(": Too broad <b>@team</b>")
    assert record["ledger"]["rejected"] == [{"task_id": "docs-quickstart", "task_hash": record["approval"]["task_hash"],
                                             "by": "admin", "at": record["approval"]["at"],
                                             "note": "Too broad <b>@team</b>"}]
    # The dashboard plan wrote showed the task selected and awaiting approval; the rejection rewrote it.
    [issue] = LocalForge(bare).list_issues()
    assert record["dashboard"]["content_hash"] in issue.body
    assert "**selected**" not in issue.body and "awaiting approval since" not in issue.body
    assert f"**Rejected at the approval gate**: task {md('docs-quickstart')} — rejected by admin at " in issue.body
    assert md("Too broad <b>@team</b>") in issue.body  # the reason, inert
    assert LocalForge(bare).list_prs() == []
    assert run_git(["--git-dir", str(bare), "branch", "--list", "agent/*"]).stdout == ""

    # Next cycle: the rejected task waits (its own reason, not "PR closed"); the next task is asked for.
    dag_run2, _, answerer2 = run_gated_cycle(target_file, "Reject")
    record2 = evidence_record(dag_run2)
    assert _verdicts(record2)["docs-quickstart"] == ["rejected_by_human"]
    assert record2["selected_task"] == "docs-faq" and record2["approval"]["task_id"] == "docs-faq"
    assert record2["approval"]["note"] is None  # no reason given: none recorded
    [issue] = LocalForge(bare).list_issues()
    [row] = [line for line in issue.body.splitlines() if line.startswith(f"| {md('docs-quickstart')} |")]
    assert "`rejected_by_human`" in row and "rejected by admin at" in row and "Too broad" in row

    # A human changes the task's definition: it is eligible again (and approved this time).
    backlog = run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout
    edited = backlog.replace("so a new user can install and run widgets in two minutes.",
                             "so a new user can install and run widgets in one minute.")
    assert edited != backlog
    commit_file(bare, tmp_path / "work", ".leviathan/backlog.yaml", edited, "sharpen docs-quickstart")
    dag_run3, states3, _ = run_gated_cycle(target_file, "Approve")
    record3 = evidence_record(dag_run3)
    assert _verdicts(record3)["docs-quickstart"] == []
    assert record3["selected_task"] == "docs-quickstart" and record3["stopped_reason"] == "pr_opened"
    assert record3["attempt"]["branch"] == "agent/docs-quickstart/1"  # nothing was attempted before


def test_pull_request_gate_shows_the_final_diff_and_a_rejection_pushes_nothing(tmp_path, targets_dir):
    target_file = _gated(tmp_path, targets_dir, "gate_pr", "pull_request")
    bare = tmp_path / "repos" / "gate_pr.git"
    dag_run, states, _ = run_gated_cycle(target_file, "Reject")
    assert dag_run.state == "success"
    assert states[names.TASK_RUN_WORKER] == "success" and states[names.TASK_OPEN_PULL_REQUEST] == "skipped"
    detail = _hitl_detail(dag_run, names.TASK_APPROVE_PULL_REQUEST)
    assert "**Final diff**:" in detail.body and "+++ b/docs/quickstart.md" in detail.body
    record = evidence_record(dag_run)
    assert record["stopped_reason"] == "rejected_by_human"
    assert record["attempt"]["outcome"] == "rejected_by_human" and record["attempt"]["pr_number"] is None
    assert record["approval"]["gate"] == "pull_request"
    # The worker ran but it is no failure: the breaker's count does not move; the ledger has the attempt.
    assert [a["outcome"] for a in record["ledger"]["recent_attempts"]] == ["succeeded"]
    assert LocalForge(bare).list_prs() == []
    assert run_git(["--git-dir", str(bare), "branch", "--list", "agent/*"]).stdout == ""
    # A rejection is a human round of that definition, not a failure.
    first_hash = record["attempt"]["task_hash"]
    assert record["ledger"]["review_rounds"] == {"docs-quickstart": {"task_hash": first_hash, "count": 1}}
    assert record["ledger"]["failures"] == {}

    # Rejected again after a definition change (two attempts, max_attempts_per_task: 2), then changed once more:
    # each new definition runs, as the gate's text promises (rejections use no failure budget).
    for number, (old, new, answer) in enumerate([("two minutes.", "one minute.", "Reject"),
                                                 ("one minute.", "ninety seconds.", "Approve")], start=2):
        backlog = run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout
        assert old in backlog
        commit_file(bare, tmp_path / "work", ".leviathan/backlog.yaml", backlog.replace(old, new), "edit the task")
        dag_run, _, _ = run_gated_cycle(target_file, answer)
        record = evidence_record(dag_run)
        assert _verdicts(record)["docs-quickstart"] == [] and record["attempt"]["attempt"] == number
    assert record["stopped_reason"] == "pr_opened" and record["attempt"]["task_hash"] != first_hash
    budgets = next(c for c in record["checks"] if c["name"] == "budgets")["detail"]
    assert "0 of 2 failed attempt(s)" in budgets and "0 of 5 review round(s)" in budgets


def test_pull_request_gate_approved_opens_the_pr(tmp_path, targets_dir):
    target_file = _gated(tmp_path, targets_dir, "gate_pr_ok", "pull_request")
    dag_run, states, _ = run_gated_cycle(target_file, "Approve")
    assert dag_run.state == "success" and states[names.TASK_OPEN_PULL_REQUEST] == "success"
    record = evidence_record(dag_run)
    assert record["stopped_reason"] == "pr_opened" and record["approval"]["choice"] == "approved"
    assert len(LocalForge(tmp_path / "repos" / "gate_pr_ok.git").list_open_prs()) == 1


def test_nobody_answering_in_time_rejects(tmp_path, targets_dir):
    target_file = _gated(tmp_path, targets_dir, "gate_late", "plan", "approval_timeout_seconds: 2\n")
    dag_run, states, _ = run_gated_cycle(target_file, None)
    assert dag_run.state == "success" and states[names.TASK_RUN_WORKER] == "skipped"
    record = evidence_record(dag_run)
    assert record["stopped_reason"] == "rejected_by_human"
    assert record["approval"]["reason"] == "timeout" and record["approval"]["by"] is None
    assert "nobody answered the plan approval in time" in record["stopped_detail"]


def test_a_user_not_assigned_cannot_answer(tmp_path, targets_dir):
    target_file = _gated(tmp_path, targets_dir, "gate_who", "plan",
                         "approval_assignees: [viewer]\napproval_timeout_seconds: 3\n")
    dag_run, _, answerer = run_gated_cycle(target_file, "Approve", user="admin")
    assert answerer.responses[0].status_code == 403
    assert "is not a respondent" in answerer.responses[0].text
    # Only the assigned user may answer; nobody did, so the gate timed out and rejected.
    record = evidence_record(dag_run)
    assert record["approval"]["choice"] == "rejected" and record["approval"]["reason"] == "timeout"
    assert record["approval"]["assignees"] == ["viewer"]
