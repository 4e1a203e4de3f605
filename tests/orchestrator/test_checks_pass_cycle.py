"""``pr_creation: checks_pass`` in real cycles (``dag.test()``) on the local forge: the branch is pushed, and
its PR opens only once CI on it is green (with a note when no CI reports), is fixed once when red, or is
deleted and its task recorded ``ci_failed`` when no fix is left."""

from __future__ import annotations

import pytest

from leviathan_lib.cli.main import main
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.events import events_from
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import evidence_record, run_cycle

pytestmark = pytest.mark.usefixtures("airflow_db")

BRANCH = "agent/docs-quickstart/1"


def _setup(tmp_path, targets_dir, target_id, extra: str = ""):
    target_file = create_demo_target(tmp_path, target_id=target_id, targets_dir=targets_dir)
    target_file.write_text(target_file.read_text() + "pr_creation: checks_pass\n" + extra)
    bare = tmp_path / "repos" / f"{target_id}.git"
    record = _cycle(target_file)
    assert record["stopped_reason"] == "pushed_awaiting_ci", record["stopped_detail"]
    attempt = record["attempt"]
    assert attempt["awaiting_ci"] and attempt["pr_number"] is None and attempt["outcome"] == "succeeded"
    forge = LocalForge(bare)
    assert forge.list_prs() == [] and forge.branch_sha(BRANCH) == attempt["pr_head_sha"]
    return target_file, bare, forge, attempt["pr_head_sha"]


def _cycle(target_file) -> dict:
    dag_run, states = run_cycle(target_file)
    assert dag_run.state == "success", states
    return evidence_record(dag_run)


def _status(bare, state: str, description: str = "") -> None:
    assert main(["forge", "status", "--repo", str(bare), "--branch", BRANCH, "--context", "ci/tests",
                 "--state", state, "--description", description]) == 0


def _kinds(record) -> list[str]:
    return [a["kind"] for a in record["lifecycle"]]


def _verdict(record, task_id: str) -> list[str]:
    return next(t["reasons"] for t in record["tasks"] if t["id"] == task_id)


def test_the_pr_opens_only_after_a_green_status(tmp_path, targets_dir):
    target_file, bare, forge, head = _setup(tmp_path, targets_dir, "cp_green")
    record = _cycle(target_file)  # no CI yet, well within ci_wait_minutes: it waits, and holds a PR slot
    assert _kinds(record) == [] and forge.list_prs() == []
    assert record["reasons"] == ["open_pr_limit"] and "1 pushed branch(es) awaiting CI" in record["stopped_detail"]
    assert _verdict(record, "docs-quickstart") == ["awaiting_ci"]
    _status(bare, "pending")
    record = _cycle(target_file)
    assert _kinds(record) == ["ci_pending"] and forge.list_prs() == []
    _status(bare, "success")
    record = _cycle(target_file)
    assert _kinds(record) == ["ci_passed", "pr_created"]
    [pr] = forge.list_prs()
    assert (pr.number, pr.head, pr.head_sha, pr.state) == (1, BRANCH, head, "open")
    assert pr.title == "[leviathan] Write the quickstart guide" and "docs/quickstart.md" in pr.body
    assert "No CI reported" not in pr.body
    [opened] = record["ledger"]["open_prs"]
    assert opened["number"] == 1 and opened["ci"]["first_push"] == "success"
    assert record["ledger"]["held_branches"] == [] and record["totals"]["prs_opened"] == 1
    assert "pr.created" in [e.type for e in events_from([(1, record["recorded_at"], None, record)])]
    record = _cycle(target_file)  # the open PR holds the target as any PR does
    assert _kinds(record) == [] and record["reasons"] == ["open_pr_limit"] and len(forge.list_prs()) == 1


def test_no_ci_within_the_wait_opens_the_pr_with_a_note(tmp_path, targets_dir):
    target_file, bare, forge, head = _setup(tmp_path, targets_dir, "cp_nowait", "ci_wait_minutes: 0\n")
    record = _cycle(target_file)
    assert _kinds(record) == ["pr_created"]
    assert record["lifecycle"][0]["detail"] == "no CI reported within ci_wait_minutes"
    [pr] = forge.list_prs()
    assert f"**No CI reported** on `{head}` within 0 minutes" in pr.body


def test_red_ci_gets_one_fix_on_the_branch_then_opens_when_green(tmp_path, targets_dir):
    target_file, bare, forge, head = _setup(tmp_path, targets_dir, "cp_fix")
    _status(bare, "failure", "test_port failed")
    record = _cycle(target_file)
    assert _kinds(record) == ["ci_failed"]
    attempt = record["attempt"]
    assert (attempt["continue_why"], attempt["continued_pr"], attempt["awaiting_ci"]) == ("ci_failed", None, True)
    assert record["stopped_reason"] == "pushed_awaiting_ci" and forge.list_prs() == []
    fixed = forge.branch_sha(BRANCH)
    assert fixed == attempt["pr_head_sha"] != head
    assert run_git(["--git-dir", str(bare), "rev-parse", f"{fixed}^"]).stdout.strip() == head
    assert "> - ci/tests:\n> test_port failed" in run_git(
        ["--git-dir", str(bare), "show", f"{fixed}:docs/quickstart.md"]).stdout
    [held] = record["ledger"]["held_branches"]
    assert held["head_sha"] == fixed and held["ci"]["fix_attempts"] == 1
    _status(bare, "success")
    record = _cycle(target_file)
    assert _kinds(record) == ["ci_passed", "pr_created"] and forge.get_pr(1).head_sha == fixed


def test_red_ci_with_no_fix_left_deletes_the_branch_and_the_task_waits(tmp_path, targets_dir):
    target_file, bare, forge, head = _setup(tmp_path, targets_dir, "cp_red", "max_ci_fix_attempts: 0\n")
    _status(bare, "failure")
    record = _cycle(target_file)
    assert _kinds(record) == ["ci_failed", "ci_branch_deleted"]
    assert forge.branch_sha(BRANCH) is None and forge.list_prs() == []
    assert [c["task_id"] for c in record["ledger"]["ci_failed"]] == ["docs-quickstart"]
    assert _verdict(record, "docs-quickstart") == ["ci_failed"]
    # The freed slot goes to the next task, pushed and held the same way.
    assert record["attempt"]["task_id"] == "docs-faq" and record["stopped_reason"] == "pushed_awaiting_ci"
    assert [h["branch"] for h in record["ledger"]["held_branches"]] == ["agent/docs-faq/1"]
    assert "pr.ci_branch_deleted" in [e.type for e in events_from([(1, record["recorded_at"], None, record)])]
