"""Ticks on the dashboard issue in real cycles (``dag.test()``): the local forge and the spec-validated fake GitHub.

A maintainer ticks a box instead of commenting a command (Renovate's dashboard): the next cycle serves it
like the command, with the same permission check and budgets, answers on the PR, unticks it and lists it.
"""

from __future__ import annotations

import hashlib

import pytest

from leviathan_lib.cli.main import main
from leviathan_lib.cycle import ticks
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import evidence_record, human_push, run_cycle
from tests.orchestrator.test_dashboard_cycle import REPO, github_target

__all__ = ["github_target"]  # the fixture

pytestmark = pytest.mark.usefixtures("airflow_db")


def _forge(*args: str) -> None:
    assert main(["forge", *args]) == 0


def _ticks(record: dict) -> list[tuple]:
    return [(a["kind"], a["number"], a["tick"], a["author"], a["reason"]) for a in record["lifecycle"]
            if a["tick"] is not None]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_local_ticks_are_served_once_refused_for_readers_and_a_tampered_body_is_restored(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="ticks_local", targets_dir=targets_dir)
    target_file.write_text(target_file.read_text() + "dashboard: true\n")
    bare = tmp_path / "repos" / "ticks_local.git"
    repo, forge = str(bare), LocalForge(bare)
    _forge("collaborator", "--repo", repo, "alice", "write")
    _forge("collaborator", "--repo", repo, "bob", "read")
    assert evidence_record(run_cycle(target_file)[0])["attempt"]["pr_number"] == 1
    run_cycle(target_file)  # the PR is open now: the dashboard offers its boxes
    assert "- [ ] bring #1 up to date with its base now <!-- leviathan-tick: rebase 1 -->" in forge.get_issue(1).body

    # A reader's tick: refused, answered on the PR and on the dashboard, unticked; nothing runs.
    _forge("tick", "--repo", repo, "1", "--pr", "1", "--action", "retry", "--as", "bob")
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert dag_run.state == "success", states
    assert _ticks(record) == [("feedback_ignored", 1, 1, "bob", "command_not_permitted")]
    assert record["attempt"] is None and record["reasons"] == ["open_pr_limit"]
    body = forge.get_issue(1).body
    assert "[x]" not in body and _sha(body) == record["dashboard"]["body_sha256"]
    assert "- tick 1: retry on #1 by \\@\u200bbob: refused (`command_not_permitted`" in body
    reply = forge.list_comments(1)[-1].body
    assert "\\@\u200bbob's tick on the dashboard was not acted on (`command_not_permitted`" in reply
    assert "<!-- leviathan-reply: t1 -->" in reply

    # A writer's tick after the base moved on: the PR is brought up to date, then answered once.
    base = human_push(bare, tmp_path / "maintainer", "main", "NOTES.md", "moved on\n")
    _forge("tick", "--repo", repo, "1", "--pr", "1", "--action", "rebase", "--as", "alice")
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert dag_run.state == "success", states
    assert _ticks(record) == [("rebase_command", 1, 2, "alice", None)]
    attempt = record["attempt"]
    assert (attempt["continued_pr"], attempt["continue_why"], attempt["continue_start"]) == (1, "rebase_command",
                                                                                           "base")
    assert record["ledger"]["dashboard"]["ticks_read"] == 2
    head = forge.get_pr(1).head_sha
    assert run_git(["--git-dir", repo, "rev-parse", f"{head}^"]).stdout.strip() == base
    assert "- tick 2: rebase on #1 by \\@\u200balice: queued" in forge.get_issue(1).body
    later = evidence_record(run_cycle(target_file)[0])
    assert _ticks(later) == [] and [(a["kind"], a["reply_keys"]) for a in later["lifecycle"]] == [
        ("reply_posted", ["t2"])]
    assert f"Pushed `{head[:12]}` for \\@\u200balice's tick on the dashboard" in forge.list_comments(1)[-1].body

    # A writer's edit beyond the boxes: no tick read, no attempt, the body restored.
    edited = ticks.tick(forge.get_issue(1).body, "retry", 1).replace("Written by Leviathan", "Also run task x")
    forge.edit_issue_body(1, edited, editor="alice")
    record = evidence_record(run_cycle(target_file)[0])
    assert _ticks(record) == [("feedback_ignored", None, 3, "alice", "dashboard_tampered")]
    assert record["attempt"] is None
    body = forge.get_issue(1).body
    assert "Also run task x" not in body and "[x]" not in body and _sha(body) == record["dashboard"]["body_sha256"]
    assert "- tick 3: an edit beyond the boxes by \\@\u200balice: refused (`dashboard_tampered`" in body
    assert evidence_record(run_cycle(target_file)[0])["dashboard"] is None  # settled: nothing more to write


@pytest.mark.parametrize("github_target", [True], ids=["autonomy"], indirect=True)
def test_github_tick_is_served_as_from_write_access_and_answered(github_target, tmp_path):
    fake, target_file, bare = github_target
    assert evidence_record(run_cycle(target_file)[0])["attempt"]["pr_number"] == 2
    run_cycle(target_file)
    human_push(bare, tmp_path / "maintainer", "main", "NOTES.md", "moved on\n")
    fake.human_edit_issue(REPO, 1, ticks.tick(fake.issue(REPO, 1)["body"], "rebase", 2))

    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert dag_run.state == "success", states
    assert _ticks(record) == [("rebase_command", 2, 1, "", None)]
    assert (record["attempt"]["continued_pr"], record["attempt"]["continue_why"]) == (2, "rebase_command")
    body = fake.issue(REPO, 1)["body"]
    assert "[x]" not in body and "- tick 1: rebase on #2 by someone with write access: queued" in body

    mark = len(fake.requests)
    later = evidence_record(run_cycle(target_file)[0])
    assert [(a["kind"], a["reply_keys"]) for a in later["lifecycle"]] == [("reply_posted", ["t1"])]
    assert [(m, s) for m, p, s, _ in fake.requests[mark:] if m == "POST" and p.endswith("/issues/2/comments")] == [
        ("POST", 201)]
    assert "for a tick on the dashboard by someone with write access; it changes" in fake.repos[REPO].comments[2][-1]
    # One conditional read of the unchanged dashboard per idle cycle, answered 304 once it was read after its
    # last write.
    run_cycle(target_file)
    mark = len(fake.requests)
    run_cycle(target_file)
    assert [(m, s) for m, p, s, _ in fake.requests[mark:] if p == f"/repos/{REPO}/issues/1"] == [("GET", 304)]
