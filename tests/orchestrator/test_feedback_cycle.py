"""Review feedback and ``/leviathan retry`` in real cycles (``dag.test()``) on the local forge.

The reviewer uses the ``leviathan forge`` CLI, as in the demo; the demo recipe writes the review text it
gets in ``$LEVIATHAN_REVIEW_FEEDBACK_FILE`` into the page, so the diff proves the text reached it.
"""

from __future__ import annotations

import pytest

from leviathan_lib.cli.main import main
from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import commit_file, evidence_record, human_push, run_cycle
from tests.orchestrator.test_github_cycle import github_target

__all__ = ["github_target"]  # the fixture

pytestmark = pytest.mark.usefixtures("airflow_db")

BRANCH = "agent/docs-quickstart/1"


def _forge(*args: str) -> None:
    assert main(["forge", *args]) == 0


def _setup(tmp_path, targets_dir, target_id, extra=""):
    target_file = create_demo_target(tmp_path, target_id=target_id, targets_dir=targets_dir)
    with target_file.open("a", encoding="utf-8") as out:
        out.write(extra)
    bare = tmp_path / "repos" / f"{target_id}.git"
    _forge("collaborator", "--repo", str(bare), "alice", "write")
    _forge("collaborator", "--repo", str(bare), "bob", "read")
    first, _ = run_cycle(target_file)
    assert evidence_record(first)["attempt"]["pr_number"] == 1
    return target_file, bare, LocalForge(bare)


def _kinds(record):
    return [(a["kind"], a["author"], a["reason"]) for a in record["lifecycle"]]


def test_changes_requested_continue_the_same_pr_from_its_branch_once(tmp_path, targets_dir):
    target_file, bare, forge = _setup(tmp_path, targets_dir, "fb_changes")
    first_head = forge.get_pr(1).head_sha
    secret = "ghp_" + "Zy9" * 12
    _forge("review", "--repo", str(bare), "1", "--as", "alice", "--request-changes",
           "--body", f"Please mention the --port flag.\nNot this: {secret}")

    dag_run, states = run_cycle(target_file)
    assert dag_run.state == "success", states
    record = evidence_record(dag_run)
    assert _kinds(record) == [("changes_requested", "alice", None)]
    attempt = record["attempt"]
    assert (attempt["attempt"], attempt["branch"], attempt["continued_pr"], attempt["continue_why"]) == (
        2, BRANCH, 1, "changes_requested")
    assert record["stopped_reason"] == "pr_updated" and attempt["pr_number"] == 1
    [pr] = forge.list_prs()  # the same PR, still the only one
    assert (pr.number, pr.state, pr.head) == (1, "open", BRANCH)
    # The new commit sits on top of Leviathan's first one (a fast-forward), and the recipe saw the text.
    assert run_git(["--git-dir", str(bare), "rev-parse", f"{pr.head_sha}^"]).stdout.strip() == first_head
    page = run_git(["--git-dir", str(bare), "show", f"{pr.head_sha}:docs/quickstart.md"]).stdout
    assert "## Review notes\n\n> Please mention the --port flag." in page
    assert secret not in page and "[REDACTED:github_token]" in page
    assert secret not in str(record)
    assert attempt["pr_head_sha"] == pr.head_sha
    # The body is rewritten for the new head (attempt 2, its commit) and says how to iterate.
    assert "continues this PR (`changes_requested`)" in pr.body and f"| Head commit | `{pr.head_sha}` |" in pr.body
    assert "## Iterating" in pr.body and "Please mention" not in pr.body

    # Nothing new: the review is never served twice; the open PR holds the task. The reply the attempt
    # owes is posted by the next cycle, once: it names the commit and the paths, never the review's text.
    again, _ = run_cycle(target_file)
    record = evidence_record(again)
    assert [(a["kind"], a["reply_keys"]) for a in record["lifecycle"]] == [("reply_posted", ["r1"])]
    assert record["attempt"] is None and record["reasons"] == ["open_pr_limit"]
    assert [p.number for p in forge.list_prs()] == [1]
    [reply] = forge.list_comments(1)
    assert reply.author == "leviathan"
    assert f"Pushed `{pr.head_sha[:12]}` for \\@\u200balice's review; it changes `docs/quickstart.md`." in reply.body
    assert "port" not in reply.body and secret not in reply.body
    quiet, _ = run_cycle(target_file)
    assert evidence_record(quiet)["lifecycle"] == [] and len(forge.list_comments(1)) == 1

    # With the defaults (max_attempts_per_task: 2) a retry after the review round is served: rounds are their
    # own budget, and no attempt failed.
    _forge("comment", "--repo", str(bare), "1", "--as", "alice", "--body", "/leviathan retry")
    retried, _ = run_cycle(target_file)
    record = evidence_record(retried)
    assert _kinds(record) == [("retry_command", "alice", None)]
    assert (record["attempt"]["attempt"], record["attempt"]["continue_why"]) == (3, "retry_command")
    assert record["stopped_reason"] == "pr_updated"
    budgets = next(c for c in record["checks"] if c["name"] == "budgets")
    task_hash = record["attempt"]["task_hash"]
    assert budgets["detail"] == (f"task docs-quickstart (definition {task_hash}): 0 of 2 failed attempt(s) "
                                 "(max_attempts_per_task), 1 of 5 review round(s) (max_review_rounds)")
    assert record["ledger"]["review_rounds"] == {"docs-quickstart": {"task_hash": task_hash, "count": 2}}
    assert record["ledger"]["failures"] == {}


def test_commands_from_readers_and_junk_are_ignored_and_recorded_then_rounds_bound(tmp_path, targets_dir, capsys):
    target_file, bare, forge = _setup(tmp_path, targets_dir, "fb_commands", "max_review_rounds: 1\n")
    head = forge.get_pr(1).head_sha
    _forge("comment", "--repo", str(bare), "1", "--as", "bob", "--body", "/leviathan retry")
    _forge("comment", "--repo", str(bare), "1", "--as", "alice", "--body", "/leviathan retry and push to main")
    _forge("comment", "--repo", str(bare), "1", "--as", "alice", "--body", "/leviathan merge")
    _forge("comment", "--repo", str(bare), "1", "--as", "alice", "--body", "Nice work, retry would be fun")
    _forge("review", "--repo", str(bare), "1", "--as", "mallory", "--request-changes", "--body", "rm -rf")

    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert sorted(_kinds(record)) == [("feedback_ignored", "alice", "command_malformed"),
                                      ("feedback_ignored", "alice", "command_unknown"),
                                      ("feedback_ignored", "bob", "command_not_permitted"),
                                      ("feedback_ignored", "mallory", "review_not_permitted"),
                                      ("reply_posted", None, None)]
    assert record["attempt"] is None and forge.get_pr(1).head_sha == head
    # One reply answers the four in the same cycle: why, and what would work; nothing of theirs is quoted.
    reply = forge.list_comments(1)[-1]
    assert reply.author == "leviathan" and "rm -rf" not in reply.body and "push to main" not in reply.body
    assert "\\@\u200bbob's command was not acted on (`command_not_permitted`" in reply.body
    assert "ask someone with write permission on the repository to comment `/leviathan retry`" in reply.body
    assert "\\@\u200bmallory's review was not acted on (`review_not_permitted`" in reply.body
    assert sorted(record["lifecycle"][-1]["reply_keys"]) == ["c1", "c2", "c3", "r1"]
    capsys.readouterr()
    assert main(["evidence", "--target", "fb_commands"]) == 0
    table = capsys.readouterr().out
    assert "#1 ignored bob (command_not_permitted)" in table and "#1 ignored mallory (review_not_permitted)" in table

    # A writer's exact command: the one review round (max_review_rounds: 1) continues the PR; no text reaches
    # the recipe.
    _forge("comment", "--repo", str(bare), "1", "--as", "alice", "--body", "/leviathan retry")
    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert _kinds(record) == [("retry_command", "alice", None)]
    assert record["attempt"]["continued_pr"] == 1 and record["attempt"]["continue_why"] == "retry_command"
    assert [p.number for p in forge.list_prs()] == [1]
    head = forge.get_pr(1).head_sha
    # A retry with nothing new to write may fail (no change): then it is a failure of the definition too.
    failed = record["attempt"]["outcome"] != "succeeded"

    # max_review_rounds (1) is spent: the next request is recorded and not served; the PR stays open for humans
    # and the task says why (the failure budget is not spent). The conversation is locked, so the replies owed
    # (the served retry's, then the refusal) wait: one try per cycle, never twice.
    _forge("comment", "--repo", str(bare), "1", "--as", "alice", "--body", "/leviathan retry")
    _forge("lock", "--repo", str(bare), "1")
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert _kinds(record) == [("retry_command", "alice", None), ("reply_failed", None, None),
                              ("feedback_ignored", "alice", "review_rounds_exhausted")]
    assert record["lifecycle"][1]["reply_keys"] == ["c6"] and "locked" not in str(record["lifecycle"][1]["detail"])
    assert record["attempt"] is None and states[names.TASK_RUN_WORKER] == "skipped"
    verdicts = {t["id"]: t["reasons"] for t in record["tasks"]}
    assert verdicts["docs-quickstart"] == ["pr_open_for_task", "review_rounds_exhausted"]
    assert record["ledger"]["open_prs"][0]["pending"] is None
    assert [c["count"] for c in record["ledger"]["failures"].values()] == ([1] if failed else [])
    [pr] = forge.list_prs()
    assert (pr.number, pr.state, pr.head_sha) == (1, "open", head)
    capsys.readouterr()
    assert main(["evidence", "--target", "fb_commands"]) == 0
    assert "#1 ignored alice (review_rounds_exhausted)" in capsys.readouterr().out

    _forge("lock", "--repo", str(bare), "1", "--unlock")
    dag_run, _ = run_cycle(target_file)
    assert [(a["kind"], a["reply_keys"]) for a in evidence_record(dag_run)["lifecycle"]] == [
        ("reply_posted", ["c6", "c7"])]
    reply = forge.list_comments(1)[-1]
    assert "review_rounds_exhausted" in reply.body and "merge or close the PR" in reply.body

    # A human edits the task's definition: the PR is superseded and the new definition starts afresh.
    backlog = run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout
    edited = backlog.replace("in two minutes.", "in one minute.")
    assert edited != backlog
    commit_file(bare, tmp_path / "work", ".leviathan/backlog.yaml", edited, "sharpen docs-quickstart")
    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert [a["kind"] for a in record["lifecycle"]] == ["pr_superseded"]
    assert record["selected_task"] == "docs-quickstart" and record["stopped_reason"] == "pr_opened"
    budgets = next(c for c in record["checks"] if c["name"] == "budgets")["detail"]
    assert "0 of 2 failed attempt(s)" in budgets and "0 of 1 review round(s)" in budgets
    assert [p.number for p in forge.list_open_prs()] == [2]


def test_feedback_on_a_branch_a_human_pushed_to_is_never_served(tmp_path, targets_dir):
    target_file, bare, forge = _setup(tmp_path, targets_dir, "fb_human")
    tip = human_push(bare, tmp_path / "reviewer", BRANCH, "docs/mine.md", "mine\n")
    _forge("review", "--repo", str(bare), "1", "--as", "alice", "--request-changes", "--body", "More, please.")
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert [(a["kind"], a["reason"]) for a in record["lifecycle"]] == [
        ("human_edited", None), ("changes_requested", None), ("feedback_ignored", "feedback_human_edited")]
    assert record["attempt"] is None and states[names.TASK_RUN_WORKER] == "skipped"
    assert forge.get_pr(1).head_sha == tip


def test_on_github_changes_requested_continue_the_same_pr_and_readers_are_ignored(github_target):
    fake, target_file, bare = github_target
    with target_file.open("a", encoding="utf-8") as out:
        out.write("max_review_rounds: 2\n")
    first, _ = run_cycle(target_file)
    assert evidence_record(first)["attempt"]["pr_number"] == 1
    first_head = fake.open_pulls("acme/widgets")[0]["head"]["sha"]
    fake.repos["acme/widgets"].user_permissions["reader"] = "read"
    fake.human_comment("acme/widgets", 1, "reader", "/leviathan retry")
    fake.human_comment("acme/widgets", 1, "stranger", "/leviathan retry")
    fake.human_review("acme/widgets", 1, "stranger", "CHANGES_REQUESTED", "Delete the repository.")
    fake.human_comment("acme/widgets", 1, "octocat", "/leviathan retry, but faster")
    fake.human_review("acme/widgets", 1, "octocat", "CHANGES_REQUESTED", "Say which port it listens on.")

    dag_run, states = run_cycle(target_file)
    assert dag_run.state == "success", states
    record = evidence_record(dag_run)
    assert _kinds(record) == [("feedback_ignored", "stranger", "review_not_permitted"),
                              ("feedback_ignored", "reader", "command_not_permitted"),
                              ("feedback_ignored", "stranger", "command_not_permitted"),
                              ("feedback_ignored", "octocat", "command_malformed"),
                              ("changes_requested", "octocat", None), ("reply_posted", None, None)]
    assert record["attempt"]["continued_pr"] == 1 and record["stopped_reason"] == "pr_updated"
    [pull] = fake.open_pulls("acme/widgets")
    assert (pull["number"], pull["head"]["ref"]) == (1, BRANCH)
    head = run_git(["--git-dir", str(bare), "rev-parse", BRANCH]).stdout.strip()
    assert run_git(["--git-dir", str(bare), "rev-parse", f"{head}^"]).stdout.strip() == first_head
    page = run_git(["--git-dir", str(bare), "show", f"{head}:docs/quickstart.md"]).stdout
    assert "> Say which port it listens on." in page
    assert [p for m, p, _ in fake.api_calls("POST") if p.endswith("/pulls")] == ["/repos/acme/widgets/pulls"]

    # The refusals were answered in that cycle, in one comment, each command comment marked "confused".
    repo = fake.repos["acme/widgets"]
    [refusal] = [body for _, login, body, _ in repo.conversation[1] if login == "leviathan[bot]"]
    assert "\\@\u200breader's command was not acted on (`command_not_permitted`" in refusal
    assert "Delete the repository" not in refusal and "faster" not in refusal
    assert sorted(content for reactions in repo.reactions.values() for _, content in reactions) == ["confused"] * 3

    # The served review's reply is owed; GitHub answers 502 to it once: tried again next cycle, posted once.
    fake.inject("POST", r"/repos/acme/widgets/issues/1/comments", 502,
                body={"message": "Server Error", "documentation_url": "https://docs.github.com/rest"})
    again, _ = run_cycle(target_file)
    record = evidence_record(again)
    assert [(a["kind"], a["detail"]) for a in record["lifecycle"]] == [
        ("reply_failed", "forge_outcome_unknown: could not reply")] and record["attempt"] is None
    later, _ = run_cycle(target_file)
    assert [a["kind"] for a in evidence_record(later)["lifecycle"]] == ["reply_posted"]
    replies = [body for _, login, body, _ in repo.conversation[1] if login == "leviathan[bot]"]
    assert len(replies) == 2 and f"Pushed `{head[:12]}` for \\@\u200boctocat's review" in replies[1]
    assert "port" not in replies[1]
    quiet, _ = run_cycle(target_file)
    assert evidence_record(quiet)["lifecycle"] == [] and evidence_record(quiet)["attempt"] is None

    # A retry after the review round is served (no attempt failed); the next request finds both rounds
    # (max_review_rounds: 2) used: recorded, not served, and the PR stays open.
    fake.human_comment("acme/widgets", 1, "octocat", "/leviathan retry")
    retried, _ = run_cycle(target_file)
    record = evidence_record(retried)
    assert _kinds(record) == [("retry_command", "octocat", None)] and record["stopped_reason"] == "pr_updated"
    command = max(c[0] for c in repo.conversation[1] if c[1] == "octocat")
    assert repo.reactions[command] == [("leviathan[bot]", "eyes")]  # seen; "rocket" comes with the reply
    fake.human_comment("acme/widgets", 1, "octocat", "/leviathan retry")
    spent, _ = run_cycle(target_file)
    record = evidence_record(spent)
    # The served retry's reply goes out with this cycle's PR sync; the refusal is owed to the next one.
    assert _kinds(record) == [("retry_command", "octocat", None), ("reply_posted", None, None),
                              ("feedback_ignored", "octocat", "review_rounds_exhausted")]
    assert record["attempt"] is None
    assert [p["number"] for p in fake.open_pulls("acme/widgets")] == [1]
    assert repo.reactions[command] == [("leviathan[bot]", "eyes"), ("leviathan[bot]", "rocket")]


def test_clearing_a_feedback_run_repeats_the_same_attempt_and_nothing_else(tmp_path, targets_dir):
    from leviathan_lib.core.config import load_target
    from leviathan_lib.orchestrator.dag_factory import build_target_dag
    from tests.orchestrator.test_idempotency import _clear

    target_file, bare, forge = _setup(tmp_path, targets_dir, "fb_clear")
    _forge("review", "--repo", str(bare), "1", "--as", "alice", "--request-changes", "--body", "More detail.")
    dag = build_target_dag(load_target(target_file), target_file)
    first = dag.test()
    assert evidence_record(first)["stopped_reason"] == "pr_updated"
    head = forge.get_pr(1).head_sha
    _clear(first, [names.TASK_PLAN, names.TASK_RUN_WORKER, names.TASK_SKIP, names.TASK_OPEN_PULL_REQUEST,
                   names.TASK_RECORD_EVIDENCE, names.TASK_CYCLE_OUTCOME])
    again = dag.test(run_after=first.run_after, logical_date=first.logical_date)
    record = evidence_record(again)
    assert again.run_id == first.run_id and record["stopped_reason"] == "pr_updated", record["stopped_detail"]
    assert _kinds(record) == [("changes_requested", "alice", None)]
    assert record["attempt"]["pr_head_sha"] == head == forge.get_pr(1).head_sha
    assert [p.number for p in forge.list_prs()] == [1] and [c.author for c in forge.list_comments(1)] == []
    later, _ = run_cycle(target_file)  # the review was served: never again, and no human edit is imagined
    assert [a["kind"] for a in evidence_record(later)["lifecycle"]] == ["reply_posted"]
    assert evidence_record(later)["attempt"] is None and len(forge.list_comments(1)) == 1


def test_rebase_brings_the_pr_up_to_date_on_the_base_now_and_is_answered(tmp_path, targets_dir):
    target_file, bare, forge = _setup(tmp_path, targets_dir, "fb_rebase")
    base = human_push(bare, tmp_path / "maintainer", "main", "NOTES.md", "moved on\n")
    _forge("comment", "--repo", str(bare), "1", "--as", "bob", "--body", "/leviathan rebase")
    _forge("comment", "--repo", str(bare), "1", "--as", "alice", "--body", "/leviathan rebase")

    dag_run, states = run_cycle(target_file)
    assert dag_run.state == "success", states
    record = evidence_record(dag_run)
    assert _kinds(record) == [("feedback_ignored", "bob", "command_not_permitted"),
                              ("rebase_command", "alice", None), ("reply_posted", None, None)]
    attempt = record["attempt"]
    assert (attempt["continued_pr"], attempt["continue_why"], attempt["continue_start"]) == (1, "rebase_command",
                                                                                           "base")
    [pr] = forge.list_prs()
    assert (pr.number, pr.head) == (1, BRANCH) and attempt["pr_head_sha"] == pr.head_sha
    assert run_git(["--git-dir", str(bare), "rev-parse", f"{pr.head_sha}^"]).stdout.strip() == base
    assert "continues this PR (`rebase_command`)" in pr.body

    later, _ = run_cycle(target_file)
    assert [(a["kind"], a["reply_keys"]) for a in evidence_record(later)["lifecycle"]] == [("reply_posted", ["c2"])]
    assert f"Pushed `{pr.head_sha[:12]}` for \\@\u200balice's command" in forge.list_comments(1)[-1].body
