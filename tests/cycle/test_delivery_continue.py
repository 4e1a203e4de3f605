"""Delivery to an open PR (``continue_pr``): one PR, a lease on Leviathan's last push, both start modes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leviathan_lib.contracts.attempt import AttemptSpec, ContinuePr
from leviathan_lib.contracts.xcom import AttemptPlan
from leviathan_lib.cycle import steps as cycle
from leviathan_lib.cycle.delivery import DeliveryRejected
from leviathan_lib.git.runner import run_git
from leviathan_lib.worker.backends.local import run_local_worker
from tests.airflow_helpers import commit_file, human_push
from tests.cycle.test_delivery import _deliver, _forged, _prepare

COMMENT = "    status: pending  # a reviewer waits for this one\n"


@pytest.fixture
def opened(tmp_path):
    """PR #1 delivered by a first attempt; returns what the next attempt needs."""
    target, read, plan, result, forge, tmp = _prepare(tmp_path)
    pr = _deliver(target, read, plan, result, forge, tmp)
    return target, read, plan, result, forge, tmp, pr


def _tip(forge, branch: str) -> str:
    return run_git(["--git-dir", str(forge.path), "rev-parse", f"refs/heads/{branch}"]).stdout.strip()


def _move_base_conflicting(forge, tmp_path) -> None:
    """A human edits the task's status line on main (a comment): the PR's status edit now conflicts."""
    text = run_git(["--git-dir", str(forge.path), "show", "main:.leviathan/backlog.yaml"]).stdout
    commit_file(forge.path, tmp_path / "human", ".leviathan/backlog.yaml",
                text.replace("    status: pending\n", COMMENT, 1), "a comment on the status line")


def _continued(plan, pr, *, start: str, why: str = "pr_conflicted") -> AttemptPlan:
    cont = ContinuePr(number=pr.number, branch=pr.head, head_sha=pr.head_sha, start=start, why=why)
    return plan.model_copy(update={"attempt": plan.attempt + 1, "continue_pr": cont})


def test_a_refresh_force_updates_the_same_pr_on_the_new_base_and_it_merges(opened):
    target, read, plan, result, forge, tmp, pr = opened
    _move_base_conflicting(forge, tmp)
    assert forge.mergeable(1) is False
    new_read = cycle.read_backlog(target, read.repo_url, tmp / "cache")
    refresh = _continued(plan, pr, start="base")
    spec = AttemptSpec.model_validate({**_spec_dict(target, new_read, refresh), "continue_pr": refresh.continue_pr})
    again = run_local_worker(spec, workspace_root=tmp / "ws2")
    assert again.outcome == "succeeded" and again.base_sha == new_read.commit_sha
    delivered = _deliver(target, new_read, refresh, again, forge, tmp)
    assert delivered.number == 1 and [p.number for p in forge.list_prs()] == [1]
    head = _tip(forge, pr.head)
    assert delivered.head_sha == head != pr.head_sha
    assert run_git(["--git-dir", str(forge.path), "rev-parse", f"{head}^"]).stdout.strip() == new_read.commit_sha
    assert head in forge.get_pr(1).body and "Leviathan-Continues: #1 (pr_conflicted)" in run_git(
        ["--git-dir", str(forge.path), "log", "-1", "--format=%B", head]).stdout
    assert forge.mergeable(1) is True
    merged = forge.merge(1)  # the human merges: it applies cleanly
    status = run_git(["--git-dir", str(forge.path), "show", f"{merged.merge_sha}:.leviathan/backlog.yaml"]).stdout
    assert "    status: completed  # a reviewer waits for this one\n" in status


def test_a_rerun_of_a_delivered_refresh_pushes_nothing_new(opened):
    target, read, plan, result, forge, tmp, pr = opened
    commit_file(forge.path, tmp / "human", "README.md", "moved\n", "base moves")
    new_read = cycle.read_backlog(target, read.repo_url, tmp / "cache")
    refresh = _continued(plan, pr, start="base")
    spec = AttemptSpec.model_validate({**_spec_dict(target, new_read, refresh), "continue_pr": refresh.continue_pr})
    again = run_local_worker(spec, workspace_root=tmp / "ws2")
    first = _deliver(target, new_read, refresh, _minutes_ago(again), forge, tmp)
    # A "clear" of the whole run: the worker ran again (now); the lease is already spent.
    second = _deliver(target, new_read, refresh, again, forge, tmp)
    assert first.head_sha == second.head_sha == _tip(forge, pr.head) and len(forge.list_prs()) == 1


def test_start_branch_adds_a_fast_forward_commit_on_the_prs_head(opened):
    target, read, plan, result, forge, tmp, pr = opened
    cont_plan = _continued(plan, pr, start="branch", why="changes_requested")
    spec = AttemptSpec.model_validate({**_spec_dict(target, read, cont_plan), "continue_pr": cont_plan.continue_pr})
    assert spec.start_sha == pr.head_sha
    # The worker starts from the PR's head, where the recipe's page already is: nothing left to change.
    on_head = run_local_worker(spec, workspace_root=tmp / "ws2")
    assert (on_head.outcome, on_head.error.code, on_head.base_sha) == ("failed", "no_changes", pr.head_sha)
    patch = _branch_patch(forge, tmp, pr.head)
    delivered = _deliver(target, read, cont_plan, _minutes_ago(_forged(result, patch, ["docs/quickstart.md"])),
                         forge, tmp)
    head = _tip(forge, pr.head)
    assert delivered.number == 1 and delivered.head_sha == head
    assert run_git(["--git-dir", str(forge.path), "rev-parse", f"{head}^"]).stdout.strip() == pr.head_sha
    changed = run_git(["--git-dir", str(forge.path), "diff", "--name-only", pr.head_sha, head]).stdout.split()
    assert changed == ["docs/quickstart.md"]
    # The body is rewritten for the new head: its attempt, why it continues, the commit, how to iterate.
    body = forge.get_pr(1).body
    assert body != pr.body and f"| Head commit | `{head}` |" in body
    assert f"| Attempt | {cont_plan.attempt} (" in body and "continues this PR (`changes_requested`)" in body
    assert "## Iterating" in body and "Comment exactly `/leviathan retry`" in body
    assert "Evidence: [" not in body  # no [api] base_url given: no links
    rerun = _deliver(target, read, cont_plan, _forged(result, patch, ["docs/quickstart.md"]), forge, tmp)
    assert rerun.head_sha == head == _tip(forge, pr.head)  # a "clear" finds its own (earlier dated) commit on top


def _minutes_ago(result):
    """The change as a first run made it, minutes before its cleared rerun made it again."""
    return result.model_copy(update={"finished_at": result.finished_at - timedelta(minutes=3)})


def test_start_branch_never_builds_on_a_branch_someone_else_moved(opened):
    target, read, plan, result, forge, tmp, pr = opened
    cont_plan = _continued(plan, pr, start="branch", why="changes_requested")
    patch = _branch_patch(forge, tmp, pr.head)
    edited = human_push(forge.path, tmp / "reviewer", pr.head, "docs/extra.md", "mine\n")
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, read, cont_plan, _forged(result, patch, ["docs/quickstart.md"]), forge, tmp)
    assert exc.value.code == "human_edited" and _tip(forge, pr.head) == edited


def test_a_push_someone_made_in_between_is_never_overwritten(opened):
    target, read, plan, result, forge, tmp, pr = opened
    commit_file(forge.path, tmp / "human", "README.md", "moved\n", "base moves")
    new_read = cycle.read_backlog(target, read.repo_url, tmp / "cache")
    refresh = _continued(plan, pr, start="base")
    spec = AttemptSpec.model_validate({**_spec_dict(target, new_read, refresh), "continue_pr": refresh.continue_pr})
    again = run_local_worker(spec, workspace_root=tmp / "ws2")
    edited = human_push(forge.path, tmp / "reviewer", pr.head, "docs/extra.md", "mine\n")
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, new_read, refresh, again, forge, tmp)
    assert exc.value.code == "human_edited" and edited in str(exc.value)
    assert _tip(forge, pr.head) == edited and forge.get_pr(1).body == pr.body


def test_a_deleted_pr_branch_is_a_reason_code_and_no_new_pr(opened):
    target, read, plan, result, forge, tmp, pr = opened
    forge.delete_branch(pr.head, lease=pr.head_sha)
    refresh = _continued(plan, pr, start="base")
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, read, refresh, result, forge, tmp)
    assert exc.value.code == "pr_branch_deleted"
    assert [p.number for p in forge.list_prs()] == [1] and forge.branch_sha(pr.head) is None


def test_a_closed_pr_is_never_pushed_to_or_replaced(opened):
    target, read, plan, result, forge, tmp, pr = opened
    forge.close_pr(1)
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, read, _continued(plan, pr, start="base"), result, forge, tmp)
    assert exc.value.code == "pr_not_open" and len(forge.list_prs()) == 1 and _tip(forge, pr.head) == pr.head_sha


def _branch_patch(forge, tmp, branch: str) -> str:
    work = tmp / "on-branch"
    run_git(["clone", "--quiet", "--branch", branch, str(forge.path), str(work)])
    (work / "docs/quickstart.md").write_text("# Quickstart\n\nShorter, as the review asked.\n", encoding="utf-8")
    run_git(["add", "-A"], cwd=work)
    return run_git(["diff", "--cached", "--binary", "--full-index", "--no-renames"], cwd=work).stdout


def _spec_dict(target, read, plan) -> dict:
    backlog, _ = read.parsed_backlog()
    return {
        "spec_version": 1, "target_id": target.target_id, "repo_url": read.repo_url, "commit_sha": read.commit_sha,
        "task": backlog.by_id()[plan.task_id].model_dump(mode="json"),
        "allowed_path_prefixes": target.allowed_path_prefixes,
        "executor": {"kind": "recipe", "recipe": plan.recipe}, "attempt": plan.attempt, "timeout_seconds": 60,
    }
