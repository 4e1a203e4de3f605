"""The PR body: how to iterate, who approved, and links to the evidence only when Airflow says where it is."""

from leviathan_lib.contracts.attempt import ContinuePr
from leviathan_lib.contracts.xcom import AttemptPlan, ReadResult
from leviathan_lib.core.backlog import Task
from leviathan_lib.cycle.pr_body import render_pr_body

PLAN = AttemptPlan(task_id="t", attempt=3, branch="agent/t/1", task_hash="h", recipe="r",
                   continue_pr=ContinuePr(number=1, branch="agent/t/1", head_sha="a" * 40, start="branch",
                                          why="retry_command"))
READ = ReadResult(repo_url="/r.git", branch="main", commit_sha="b" * 40, backlog_path=".leviathan/backlog.yaml")


def _body(**evidence):
    return render_pr_body(task=Task(id="t", title="T"), plan=PLAN, read=READ, changed_paths=["a.md"], run_id="run",
                          evidence={"target_id": "x", "checks": [], **evidence}, note="", head_sha="c" * 40)


def test_the_body_says_how_to_iterate_and_names_the_approver_inertly():
    body = _body(approval={"gate": "plan", "choice": "approved", "by": "7", "by_name": "@ops <b>",
                           "at": "2026-12-06T23:00:00Z"})
    assert "| Attempt | 3 (branch `agent/t/1`, task hash `h`); continues this PR (`retry_command`) |" in body
    assert f"| Head commit | `{'c' * 40}` |" in body
    assert "| Approved | the plan, by \\@\u200bops \\<b\\> at 2026-12-06 23:00:00 UTC |" in body
    assert "## Iterating" in body and "**Request changes**" in body and "`/leviathan retry`" in body
    assert "Evidence:" not in body
    assert not any(line.startswith("/leviathan") for line in body.splitlines())


def test_links_appear_only_with_a_base_url_and_a_rejection_names_nobody():
    body = _body(approval={"gate": "plan", "choice": "rejected", "by": "7"},
                 view_url="https://af.example/leviathan/ui/targets/x", run_url="https://af.example/dags/d/runs/r")
    assert "Approved" not in body
    assert ("Evidence: [Leviathan view](https://af.example/leviathan/ui/targets/x) · "
            "[Airflow run](https://af.example/dags/d/runs/r)") in body
