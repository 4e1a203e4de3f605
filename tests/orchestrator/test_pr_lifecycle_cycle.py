"""Conflicted and superseded PRs in real cycles (``dag.test()``) on the local forge: one open PR per task,
and it merges cleanly, at every step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from leviathan_lib.control.evidence_db import read_events
from leviathan_lib.core import names
from leviathan_lib.cycle.lifecycle import BRANCH_DELETED_COMMENT, HUMAN_EDITED_COMMENT, SUPERSEDED_COMMENT
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.events import events_from
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import commit_file, evidence_record, human_push, run_cycle
from tests.evidence.test_records import leviathan

pytestmark = pytest.mark.usefixtures("airflow_db")

BACKLOG = ".leviathan/backlog.yaml"
BRANCH = "agent/docs-quickstart/1"


class Demo:
    """A demo target on the local forge, and a human working on its main branch."""

    def __init__(self, tmp_path: Path, targets_dir: Path, target_id: str, extra: str = ""):
        self.target_file = create_demo_target(tmp_path, target_id=target_id, targets_dir=targets_dir)
        if extra:
            self.target_file.write_text(self.target_file.read_text() + extra)
        self.bare = tmp_path / "repos" / f"{target_id}.git"
        self.forge = LocalForge(self.bare)
        self.work = tmp_path / "human"
        self.tmp = tmp_path

    def cycle(self) -> tuple[dict, dict]:
        dag_run, states = run_cycle(self.target_file)
        return evidence_record(dag_run), states

    def git(self, *args: str) -> str:
        return run_git(["--git-dir", str(self.bare), *args]).stdout.strip()

    def tip(self, branch: str) -> str:
        return self.git("rev-parse", f"refs/heads/{branch}")

    def backlog(self) -> str:
        return self.git("show", f"main:{BACKLOG}") + "\n"

    def edit_backlog(self, old: str, new: str, message: str) -> str:
        text = self.backlog()
        assert old in text
        commit_file(self.bare, self.work, BACKLOG, text.replace(old, new, 1), message)
        return self.tip("main")

    def conflict(self, note: str = "a reviewer waits for this one") -> str:
        """A human comments on the task's status line on main: the PR's own status edit now conflicts."""
        line = next(x for x in self.backlog().splitlines(keepends=True) if x.startswith("    status: pending"))
        return self.edit_backlog(line, f"    status: pending  # {note}\n", "a comment on the status line")

    def open_prs(self) -> list[tuple[int, str]]:
        return [(p.number, p.head) for p in self.forge.list_open_prs()]

    def merges_cleanly(self, number: int) -> bool:
        pr = self.forge.get_pr(number)
        merged = run_git(["--git-dir", str(self.bare), "merge-tree", "--write-tree", self.tip("main"), pr.head_sha],
                         check=False)
        return merged.returncode == 0


def _events(record: dict) -> list[str]:
    return [e.type for e in events_from([(1, datetime.now(UTC), record["dag_run_id"], record)])]


def test_a_conflicted_pr_is_brought_up_to_date_once_per_base_and_merges(tmp_path, targets_dir):
    demo = Demo(tmp_path, targets_dir, "refresh_local")
    first, _ = demo.cycle()
    assert first["attempt"]["pr_number"] == 1 and demo.open_prs() == [(1, BRANCH)]
    pushed = demo.tip(BRANCH)

    base = demo.conflict()
    assert demo.forge.mergeable(1) is False and not demo.merges_cleanly(1)
    record, states = demo.cycle()
    attempt = record["attempt"]
    assert record["stopped_reason"] == "pr_refreshed" and states[names.TASK_OPEN_PULL_REQUEST] == "success"
    assert (attempt["continued_pr"], attempt["continue_why"], attempt["pr_number"], attempt["branch"]) == (
        1, "pr_conflicted", 1, BRANCH)
    assert next(c for c in record["checks"] if c["name"] == "continue_pr")["passed"] is True
    head = demo.tip(BRANCH)
    assert head == attempt["pr_head_sha"] != pushed and demo.git("rev-parse", f"{head}^") == base
    assert demo.open_prs() == [(1, BRANCH)] and demo.merges_cleanly(1)
    assert head in demo.forge.get_pr(1).body
    ledger_pr = record["ledger"]["open_prs"][0]
    assert (ledger_pr["head_sha"], ledger_pr["base_sha"], ledger_pr["conflict_bases"]) == (head, base, [base])
    assert "pr.refreshed" in _events(record) and "pr.created" not in _events(record)
    assert record["ledger"]["prs_opened_at"] == first["ledger"]["prs_opened_at"]  # no new PR was opened

    again, _ = demo.cycle()  # the same base: nothing to do, the open PR blocks new work as before
    assert again["attempt"] is None and again["reasons"] == ["open_pr_limit"] and again["lifecycle"] == []
    assert demo.tip(BRANCH) == head

    commit_file(demo.bare, demo.work, "README.md", "# widgets\n\nNow with a tagline.\n", "unrelated change")
    behind, _ = demo.cycle()  # merely behind, merging cleanly: left alone (no rebase storm)
    assert behind["attempt"] is None and demo.tip(BRANCH) == head and demo.forge.mergeable(1) is True

    table = leviathan("evidence", "--target", "refresh_local")  # `leviathan evidence` shows the refresh
    assert table.returncode == 0 and "LIFECYCLE" in table.stdout and "#1 refreshed" in table.stdout, table.stderr
    assert "pr_refreshed" in table.stdout
    assert "pr.refreshed" in [e.type for e in read_events(target_id="refresh_local", limit=1000)]

    merged = demo.forge.merge(1)  # the human merges it: cleanly
    status = demo.git("show", f"{merged.merge_sha}:{BACKLOG}")
    assert "    status: completed  # a reviewer waits for this one\n" in status


def test_refreshes_are_bounded_per_task(tmp_path, targets_dir):
    demo = Demo(tmp_path, targets_dir, "refresh_bound", extra="max_pr_refreshes: 1\n")
    demo.cycle()
    demo.conflict("first")
    refreshed, _ = demo.cycle()
    assert refreshed["stopped_reason"] == "pr_refreshed"
    head = demo.tip(BRANCH)
    base = demo.conflict("second")
    limited, _ = demo.cycle()
    assert limited["attempt"] is None
    assert [(a["kind"], a["number"], a["base_sha"]) for a in limited["lifecycle"]] == [("pr_refresh_limit", 1, base)]
    assert "pr.refresh_limit" in _events(limited)
    assert demo.tip(BRANCH) == head and demo.open_prs() == [(1, BRANCH)]
    quiet, _ = demo.cycle()  # noted once per base commit
    assert quiet["lifecycle"] == [] and demo.tip(BRANCH) == head


def test_a_changed_task_definition_supersedes_the_open_pr(tmp_path, targets_dir):
    demo = Demo(tmp_path, targets_dir, "supersede_local")
    demo.cycle()
    demo.edit_backlog("so a new user can install and run widgets in two minutes.",
                      "so a new user can install and run widgets in one minute.", "a sharper goal")
    record, _ = demo.cycle()
    actions = record["lifecycle"]
    assert [(a["kind"], a["number"], a["closed"], a["commented"]) for a in actions] == [
        ("pr_superseded", 1, True, True)]
    assert demo.forge.get_pr(1).state == "closed"
    assert [c.body for c in demo.forge.comments(1)] == [SUPERSEDED_COMMENT]
    assert BRANCH not in demo.git("branch", "--list")
    # The task runs again at once, under the attempt rules: attempt 2, its own branch and PR.
    assert (record["attempt"]["attempt"], record["attempt"]["pr_number"]) == (2, 2)
    assert demo.open_prs() == [(2, "agent/docs-quickstart/2")] and demo.merges_cleanly(2)
    assert "pr.superseded" in _events(record)
    assert [p["number"] for p in record["ledger"]["open_prs"]] == [2]
    later, _ = demo.cycle()
    assert later["lifecycle"] == [] and later["pr_sync"] == [] and demo.open_prs() == [(2, "agent/docs-quickstart/2")]
    assert "#1 pr_superseded" in leviathan("evidence", "--target", "supersede_local").stdout


def test_a_human_push_is_never_rewritten_even_when_the_base_conflicts(tmp_path, targets_dir):
    demo = Demo(tmp_path, targets_dir, "human_local")
    demo.cycle()
    edited = human_push(demo.bare, tmp_path / "reviewer", BRANCH, "docs/extra.md", "mine\n")
    demo.conflict()
    demo.edit_backlog("in two minutes.", "in one minute.", "and a new definition")
    record, _ = demo.cycle()
    assert [(a["kind"], a["commented"]) for a in record["lifecycle"]] == [("human_edited", True)]
    assert record["attempt"] is None
    later, _ = demo.cycle()
    assert later["lifecycle"] == [] and later["attempt"] is None
    assert demo.tip(BRANCH) == edited and demo.open_prs() == [(1, BRANCH)]
    assert [c.body for c in demo.forge.comments(1)] == [HUMAN_EDITED_COMMENT]


def test_a_pr_branch_deleted_by_hand_is_left_alone_with_one_comment(tmp_path, targets_dir):
    demo = Demo(tmp_path, targets_dir, "deleted_local")
    demo.cycle()
    demo.git("update-ref", "-d", f"refs/heads/{BRANCH}")
    demo.conflict()
    record, _ = demo.cycle()
    assert [(a["kind"], a["number"], a["commented"]) for a in record["lifecycle"]] == [("pr_branch_deleted", 1, True)]
    assert record["attempt"] is None and "pr.branch_deleted" in _events(record)
    later, _ = demo.cycle()
    assert later["lifecycle"] == [] and later["attempt"] is None
    assert demo.open_prs() == [(1, BRANCH)] and [c.body for c in demo.forge.comments(1)] == [BRANCH_DELETED_COMMENT]


@pytest.mark.parametrize("history", ["amended", "unrelated"])
def test_a_force_pushed_base_is_handled_like_any_moved_base(tmp_path, targets_dir, history):
    demo = Demo(tmp_path, targets_dir, f"forced_{history}")
    demo.cycle()
    demo.conflict()
    # main is force-pushed: its last commit amended, or a history of its own (no common ancestor).
    parents = ["-p", demo.tip("main") + "^"] if history == "amended" else []
    rewritten = demo.git("commit-tree", f"{demo.tip('main')}^{{tree}}", *parents, "-m", "main, rewritten")
    demo.git("update-ref", "refs/heads/main", rewritten)
    record, _ = demo.cycle()
    assert record["stopped_reason"] == "pr_refreshed" and demo.git("rev-parse", f"{demo.tip(BRANCH)}^") == rewritten
    assert demo.open_prs() == [(1, BRANCH)] and demo.merges_cleanly(1)
    demo.forge.merge(1)


def test_a_deleted_base_branch_is_a_reason_code_and_no_pr(tmp_path, targets_dir):
    demo = Demo(tmp_path, targets_dir, "nobase_local")
    demo.cycle()
    demo.git("symbolic-ref", "HEAD", f"refs/heads/{BRANCH}")
    demo.git("update-ref", "-d", "refs/heads/main")
    record, states = demo.cycle()
    assert record["stopped_reason"] == "repo_unreachable" and "branch 'main' not found" in record["stopped_detail"]
    assert states[names.TASK_RUN_WORKER] == "skipped" and demo.open_prs() == [(1, BRANCH)]


def test_a_push_between_plan_and_delivery_is_human_edited_and_nothing_is_rewritten(tmp_path, targets_dir,
                                                                                    monkeypatch):
    from leviathan_lib.worker.backends import local

    demo = Demo(tmp_path, targets_dir, "lease_local")
    demo.cycle()
    demo.conflict()
    real = local.run_local_worker
    pushed: list[str] = []

    def worker_then_human(*args, **kwargs):
        result = real(*args, **kwargs)
        pushed.append(human_push(demo.bare, tmp_path / "reviewer", BRANCH, "docs/extra.md", "mine\n"))
        return result

    monkeypatch.setattr(local, "run_local_worker", worker_then_human)
    record, _ = demo.cycle()
    assert record["attempt"]["outcome"] == "rejected_by_guardrail" and record["attempt"]["error_code"] == "human_edited"
    assert demo.tip(BRANCH) == pushed[0] and demo.open_prs() == [(1, BRANCH)]
    monkeypatch.undo()
    later, _ = demo.cycle()  # the human's push is noticed and commented on once; never refreshed
    assert [a["kind"] for a in later["lifecycle"]] == ["human_edited"] and later["attempt"] is None
    assert demo.tip(BRANCH) == pushed[0]


def test_clearing_a_refresh_run_repeats_the_same_refresh_and_nothing_else(tmp_path, targets_dir):
    from leviathan_lib.core.config import load_target
    from leviathan_lib.orchestrator.dag_factory import build_target_dag
    from tests.orchestrator.test_idempotency import _clear

    demo = Demo(tmp_path, targets_dir, "refresh_clear")
    demo.cycle()
    demo.conflict()
    dag = build_target_dag(load_target(demo.target_file), demo.target_file)
    first = dag.test()
    assert evidence_record(first)["stopped_reason"] == "pr_refreshed"
    head = demo.tip(BRANCH)
    _clear(first, [names.TASK_PLAN, names.TASK_RUN_WORKER, names.TASK_SKIP, names.TASK_OPEN_PULL_REQUEST,
                   names.TASK_RECORD_EVIDENCE, names.TASK_CYCLE_OUTCOME])
    again = dag.test(run_after=first.run_after, logical_date=first.logical_date)
    record = evidence_record(again)
    assert again.run_id == first.run_id and record["stopped_reason"] == "pr_refreshed", record["stopped_detail"]
    assert record["lifecycle"] == [] and record["attempt"]["pr_head_sha"] == head == demo.tip(BRANCH)
    assert demo.open_prs() == [(1, BRANCH)] and demo.forge.comments(1) == []
    later, _ = demo.cycle()  # the ledger carries the refreshed head: no human edit is imagined
    assert later["lifecycle"] == [] and later["attempt"] is None
