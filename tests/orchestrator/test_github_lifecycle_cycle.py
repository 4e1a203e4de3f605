"""Conflicted and superseded PRs in real cycles against the spec-validated fake GitHub (git over HTTP):
one open PR per task, and it merges cleanly, at every step."""

from __future__ import annotations

import pytest

from leviathan_lib.cycle.lifecycle import SUPERSEDED_COMMENT
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import commit_file, evidence_record, run_cycle
from tests.orchestrator.test_github_cycle import github_target  # noqa: F401 — the fixture

pytestmark = pytest.mark.usefixtures("airflow_db")

REPO = "acme/widgets"
BRANCH = "agent/docs-quickstart/1"
BACKLOG = ".leviathan/backlog.yaml"
ERROR = {"message": "Server Error", "documentation_url": "https://docs.github.com/rest"}


def _git(bare, *args: str) -> str:
    return run_git(["--git-dir", str(bare), *args]).stdout.strip()


def _edit_backlog(bare, work, old: str, new: str) -> str:
    text = _git(bare, "show", f"main:{BACKLOG}") + "\n"
    assert old in text
    commit_file(bare, work, BACKLOG, text.replace(old, new, 1), "a human edits the backlog")
    return _git(bare, "rev-parse", "main")


def _conflict(bare, work) -> str:
    """A comment on the task's status line on main: the PR's status edit now conflicts."""
    return _edit_backlog(bare, work, "    status: pending\n", "    status: pending  # a reviewer waits\n")


def _cycle(target_file) -> dict:
    dag_run, _ = run_cycle(target_file)
    return evidence_record(dag_run)


def _open(fake) -> list[tuple[int, str]]:
    return [(p["number"], p["head"]["ref"]) for p in fake.open_pulls(REPO)]


def _posts(fake, path: str) -> int:
    return sum(1 for _, p, _ in fake.api_calls("POST") if p == path)


def test_a_conflicted_pr_is_force_updated_with_a_lease_and_merges(github_target, tmp_path):  # noqa: F811
    fake, target_file, bare = github_target
    _cycle(target_file)
    pushed = _git(bare, "rev-parse", BRANCH)
    base = _conflict(bare, tmp_path / "human")
    record = _cycle(target_file)
    attempt = record["attempt"]
    assert record["stopped_reason"] == "pr_refreshed", record["stopped_detail"]
    assert (attempt["continued_pr"], attempt["pr_number"]) == (1, 1)
    head = _git(bare, "rev-parse", BRANCH)
    assert head == attempt["pr_head_sha"] != pushed and _git(bare, "rev-parse", f"{head}^") == base
    assert _open(fake) == [(1, BRANCH)] and _posts(fake, f"/repos/{REPO}/pulls") == 1
    assert ("PATCH", f"/repos/{REPO}/pulls/1", 200) in fake.api_calls("PATCH")
    assert head in fake.repos[REPO].pulls[0]["body"]

    again = _cycle(target_file)  # the same base: no second refresh
    assert again["attempt"] is None and again["lifecycle"] == [] and _git(bare, "rev-parse", BRANCH) == head
    fake.human_merge(REPO, 1, into_base=True)  # and the human's merge is clean
    assert "    status: completed  # a reviewer waits\n" in _git(bare, "show", f"main:{BACKLOG}")


def test_a_changed_definition_closes_the_pr_with_a_comment_and_opens_the_next(github_target, tmp_path):  # noqa: F811
    fake, target_file, bare = github_target
    _cycle(target_file)
    _edit_backlog(bare, tmp_path / "human", "in two minutes.", "in one minute.")
    record = _cycle(target_file)
    assert [(a["kind"], a["closed"], a["commented"]) for a in record["lifecycle"]] == [("pr_superseded", True, True)]
    assert fake.repos[REPO].pulls[0]["state"] == "closed" and fake.repos[REPO].comments[1] == [SUPERSEDED_COMMENT]
    # Deleted by a git push with a lease (a REST DELETE has no condition and is never sent).
    assert fake.api_calls("DELETE") == []
    assert run_git(["--git-dir", str(bare), "branch", "--list", BRANCH]).stdout == ""
    assert record["attempt"]["pr_number"] == 2 and _open(fake) == [(2, "agent/docs-quickstart/2")]
    fake.human_merge(REPO, 2, into_base=True)


def test_a_forge_error_mid_update_keeps_the_push_and_opens_nothing(github_target, tmp_path):  # noqa: F811
    fake, target_file, bare = github_target
    _cycle(target_file)
    _conflict(bare, tmp_path / "human")
    fake.inject("PATCH", rf"/repos/{REPO}/pulls/1", 502, body=ERROR, times=10)
    record = _cycle(target_file)
    head = _git(bare, "rev-parse", BRANCH)
    assert record["stopped_reason"] == "pr_refreshed" and record["attempt"]["pr_head_sha"] == head
    assert record["attempt"]["delivery_note"].startswith("pr_body_not_updated: ")
    assert _open(fake) == [(1, BRANCH)] and _posts(fake, f"/repos/{REPO}/pulls") == 1
    fake.faults.clear()
    later = _cycle(target_file)  # Leviathan's own push is not mistaken for a human's
    assert later["lifecycle"] == [] and later["attempt"] is None and _git(bare, "rev-parse", BRANCH) == head


def test_an_unreadable_pr_is_refreshed_a_cycle_later(github_target, tmp_path):  # noqa: F811
    fake, target_file, bare = github_target
    _cycle(target_file)
    _conflict(bare, tmp_path / "human")
    fake.inject("GET", rf"/repos/{REPO}/pulls/1", 503, body=ERROR, times=10)
    record = _cycle(target_file)
    assert record["attempt"] is None and record["reasons"] == ["open_pr_limit"]
    fake.faults.clear()
    fake.repos[REPO].mergeable_unknown = True  # then GitHub is still computing: wait again
    assert _cycle(target_file)["attempt"] is None
    fake.repos[REPO].mergeable_unknown = False
    assert _cycle(target_file)["stopped_reason"] == "pr_refreshed" and _open(fake) == [(1, BRANCH)]


def test_a_pr_branch_deleted_on_github_closes_the_pr_and_opens_no_other(github_target, tmp_path):  # noqa: F811
    fake, target_file, bare = github_target
    _cycle(target_file)
    fake.human_delete_branch(REPO, BRANCH)  # GitHub closes the PR with it
    record = _cycle(target_file)
    assert [(c["number"], c["state"]) for c in record["pr_sync"]] == [(1, "closed")]
    verdicts = {t["id"]: t["reasons"] for t in record["tasks"]}
    assert verdicts["docs-quickstart"] == ["pr_closed_unchanged"]
    assert record["attempt"]["task_id"] != "docs-quickstart"  # another task's PR, never a duplicate of #1
    assert [p["head"]["ref"] for p in fake.open_pulls(REPO)] == ["agent/docs-faq/1"]


def test_a_base_that_moves_without_conflict_leaves_the_pr_alone(github_target, tmp_path):  # noqa: F811
    fake, target_file, bare = github_target
    _cycle(target_file)
    pushed = _git(bare, "rev-parse", BRANCH)
    commit_file(bare, tmp_path / "human", "README.md", "# widgets\n\nNow with a tagline.\n", "unrelated change")
    for _ in range(2):
        record = _cycle(target_file)
        assert record["attempt"] is None and record["lifecycle"] == [] and record["reasons"] == ["open_pr_limit"]
    assert _git(bare, "rev-parse", BRANCH) == pushed and fake.api_calls("PATCH") == []
    assert fake.repos[REPO].pulls[0]["head"]["sha"] == pushed
    fake.human_merge(REPO, 1, into_base=True)  # behind, and still merges cleanly


def test_a_deleted_base_branch_stops_the_cycle_with_a_reason_code(github_target, tmp_path):  # noqa: F811
    fake, target_file, bare = github_target
    _cycle(target_file)
    _git(bare, "symbolic-ref", "HEAD", f"refs/heads/{BRANCH}")
    _git(bare, "update-ref", "-d", "refs/heads/main")
    record = _cycle(target_file)
    assert record["stopped_reason"] == "repo_unreachable" and "main" in record["stopped_detail"]
    assert "Traceback" not in record["stopped_detail"] and _open(fake) == [(1, BRANCH)]
    assert _posts(fake, f"/repos/{REPO}/pulls") == 1
