"""Reverts in real cycles (``dag.test()``) on the local forge: a human merges Leviathan's PR, a commit that
merely says "Revert" changes nothing, then a real ``git revert`` of the merge is recorded ``reverted`` and
opens the breaker (``circuit_breaker_failures: 1`` here); the backlog stays as the humans left it."""

from __future__ import annotations

import pytest

from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.events import events_from
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import commit_file, evidence_record, run_cycle
from tests.orchestrator.test_github_cycle import github_target  # noqa: F401 — the fixture

pytestmark = pytest.mark.usefixtures("airflow_db")


def _cycle(target_file) -> dict:
    dag_run, _ = run_cycle(target_file)
    return evidence_record(dag_run)


def test_a_real_git_revert_of_a_merged_pr_is_recorded_and_counts_for_the_breaker(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="revert_demo", targets_dir=targets_dir)
    target_file.write_text(target_file.read_text().replace("circuit_breaker_failures: 2",
                                                           "circuit_breaker_failures: 1"))
    bare, work = tmp_path / "repos" / "revert_demo.git", tmp_path / "human"
    assert _cycle(target_file)["attempt"]["pr_number"] == 1
    merge = LocalForge(bare).merge(1).merge_sha  # a human merges it
    record = _cycle(target_file)
    assert [(c["state"], c["merge_sha"]) for c in record["pr_sync"]] == [("merged", merge)]
    assert record["attempt"]["pr_number"] == 2  # the next task's PR
    assert [m["number"] for m in record["ledger"]["merged_prs"]] == [1]

    # Fooled: a commit that says it reverts the merge but changes something else.
    commit_file(bare, work, "README.md", "no revert here\n", f'Revert "Merge #1"\n\nThis reverts commit {merge}.')
    record = _cycle(target_file)
    assert record["pr_sync"] == [] and record["ledger"]["revert_scan_sha"] == record["commit_sha"]

    run_git(["pull", "--quiet", "--ff-only"], cwd=work)
    run_git(["revert", "--no-edit", "-m", "1", merge], cwd=work)
    run_git(["push", "--quiet", "origin", "HEAD:main"], cwd=work)
    revert = run_git(["rev-parse", "HEAD"], cwd=work).stdout.strip()
    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    [change] = record["pr_sync"]
    assert (change["number"], change["state"], change["revert_sha"]) == (1, "reverted", revert)
    assert record["breaker_opened"] and "circuit_breaker_open" in record["reasons"]
    breaker = next(c for c in record["checks"] if c["name"] == "circuit_breaker")
    assert breaker["detail"].startswith("1 consecutive failed attempt(s)")
    assert dag_run.state == "success"  # a skip: the breaker stops the next attempts, nothing failed here
    ledger = record["ledger"]
    assert ledger["merged_prs"] == [] and ledger["recent_attempts"][-1]["continue_why"] == "reverted"
    assert ledger["attempt_counts"] == {"docs-quickstart": 1, "docs-changelog": 1}  # no attempt was made
    assert record["totals"]["prs_reverted"] == 1
    assert "pr.reverted" in [e.type for e in events_from([(1, record["recorded_at"], None, record)])]
    # The humans' revert also took back the task's status; Leviathan changes nothing in the backlog.
    assert "status: pending" in run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout
    assert _cycle(target_file)["pr_sync"] == []  # recorded once


def test_on_github_the_shallow_mirror_is_deepened_to_find_a_revert(github_target, tmp_path):  # noqa: F811
    fake, target_file, bare = github_target
    assert _cycle(target_file)["attempt"]["pr_number"] == 1
    fake.human_merge("acme/widgets", 1, into_base=True)
    merge = fake.repos["acme/widgets"].pulls[0]["merge_commit_sha"]
    record = _cycle(target_file)
    assert [(c["state"], c["merge_sha"]) for c in record["pr_sync"]] == [("merged", merge)]
    work = tmp_path / "human"
    run_git(["clone", "--quiet", str(bare), str(work)])
    commit_file(bare, work, "README.md", "unrelated\n", "a later commit")
    run_git(["revert", "--no-edit", "-m", "1", merge], cwd=work)
    run_git(["push", "--quiet", "origin", "HEAD:main"], cwd=work)
    record = _cycle(target_file)
    assert [(c["number"], c["state"]) for c in record["pr_sync"]] == [(1, "reverted")]
    assert record["pr_sync"][0]["revert_sha"] == run_git(["rev-parse", "HEAD"], cwd=work).stdout.strip()
