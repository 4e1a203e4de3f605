"""One cycle's guardrail check and its attempt spec, on the demo target's real repository (no Airflow)."""

from datetime import UTC, datetime

import pytest

from leviathan_lib.core.config import load_target
from leviathan_lib.core.names import agent_branch
from leviathan_lib.cycle.attempt_spec import attempt_spec, worker_source
from leviathan_lib.cycle.check import check_cycle
from leviathan_lib.cycle.read import read_with_forge_auth
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.records import History, Ledger, LedgerPR, UnreadableRecord


@pytest.fixture
def demo(tmp_path):
    target_file = create_demo_target(tmp_path, target_id="chk", targets_dir=tmp_path / "targets")
    target = load_target(target_file)
    repo_url = target.repo_location(target_file)
    read = read_with_forge_auth(target, repo_url, tmp_path / "cache", as_of=None)
    assert read.error is None
    return target, repo_url, read, tmp_path / "cache"


def test_a_clean_history_runs_the_first_attempt_and_builds_its_spec(demo):
    target, repo_url, read, cache = demo
    result = check_cycle(target, read, history=History(), ledger=Ledger(), run_id="r1", repo_url=repo_url,
                         global_autonomy=True)
    assert result.decision.decision == "run" and result.attempt is not None
    assert result.attempt.branch == agent_branch(result.attempt.task_id, 1) and result.pr_sync == []
    spec = attempt_spec(read, target, result.attempt, cache)
    assert (spec.commit_sha, spec.attempt, spec.task["id"]) == (read.commit_sha, 1, result.attempt.task_id)
    assert worker_source(target, read, cache) == read.repo_url  # the local forge needs no mirror


def test_an_unreadable_history_stops_the_cycle(demo):
    target, repo_url, read, _ = demo
    history = History(unreadable=[UnreadableRecord(run_id="old", problem="bad")])
    result = check_cycle(target, read, history=history, ledger=Ledger(), run_id="r1", repo_url=repo_url,
                         global_autonomy=True)
    assert result.decision is None and result.error.code == "history_unreadable"


def test_a_replay_counts_the_ledgers_open_prs_without_asking_the_forge(demo):
    target, repo_url, read, _ = demo
    read.as_of = datetime(2026, 1, 1, tzinfo=UTC)
    ledger = Ledger(open_prs=[LedgerPR(number=n, task_id=f"t{n}", branch=f"agent/t{n}/1", task_hash="h")
                              for n in range(1, target.max_open_prs + 1)])
    result = check_cycle(target, read, history=History(), ledger=ledger, run_id="r1",
                         repo_url="/nonexistent/forge.git", global_autonomy=True)
    assert result.replay and result.attempt is None and result.decision.reasons == ["open_pr_limit"]


def test_an_unreadable_forge_fails_closed(demo):
    target, _, read, _ = demo
    result = check_cycle(target, read, history=History(), ledger=Ledger(), run_id="r1",
                         repo_url="/nonexistent/forge.git", global_autonomy=True)
    assert result.attempt is None and "forge_state_unknown" in result.decision.reasons
