"""The one decision builder shows both budgets, and only a human's request is held by the review rounds."""

from __future__ import annotations

import yaml

from leviathan_lib.contracts.attempt import ContinuePr
from leviathan_lib.contracts.xcom import ReadResult
from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.config import parse_target
from leviathan_lib.core.guardrails import CycleState, OpenPR, TaskCount
from leviathan_lib.cycle.decision import DecisionInputs, build_decision
from leviathan_lib.cycle.steps import ContinueRequest

TARGET = parse_target(yaml.safe_dump({
    "target_id": "t", "target_repo_url": "/srv/t.git", "autonomy_enabled": True, "executor": "llm",
    "max_open_prs": 1, "max_review_rounds": 2}), "t.yaml")
BACKLOG = yaml.safe_dump({"tasks": [{"id": "a", "title": "A", "ready": True, "allowed_paths": ["docs/a.md"]}]})
HASH = parse_backlog(BACKLOG, "b.yaml")[0].tasks[0].definition_hash()
READ = ReadResult(repo_url="/srv/t.git", branch="main", commit_sha="c" * 40, backlog_path=".leviathan/backlog.yaml",
                  backlog_text=BACKLOG)
PR = OpenPR(number=1, branch="agent/a/1", task_id="a", head_sha="1" * 40)


def _decide(rounds: int, why: str | None = None, failures: int = 1):
    state = CycleState(open_prs=[PR] if why else [], attempt_counts={"a": 3},
                       failures={"a": TaskCount(task_hash=HASH, count=failures)},
                       review_rounds={"a": TaskCount(task_hash=HASH, count=rounds)})
    cont = ContinueRequest(task_id="a", pr=ContinuePr(number=1, branch="agent/a/1", head_sha="1" * 40,
                                                      start="branch", why=why)) if why else None
    return build_decision(DecisionInputs(target=TARGET, read=READ, state=state, continue_request=cont))


def _check(result, name):
    return next((c for c in result.decision.checks if c.name == name), None)


def test_a_run_names_both_budgets_of_the_task_definition():
    result = _decide(rounds=1, why="changes_requested")
    assert result.decision.decision == "run" and result.attempt.continue_pr is not None
    assert _check(result, "budgets").detail == (
        f"task a (definition {HASH}): 1 of 2 failed attempt(s) (max_attempts_per_task), 1 of 2 review round(s) "
        "(max_review_rounds)")
    assert result.attempt.attempt == 4  # attempt numbers still count every attempt


def test_spent_review_rounds_hold_a_humans_request_but_not_a_ci_fix():
    held = _decide(rounds=2, why="retry_command")
    assert held.decision.decision == "skip" and _check(held, "budgets") is None
    assert not _check(held, "continue_pr").passed
    assert _check(held, "continue_pr").detail.endswith("not attempted: review_rounds_exhausted")
    assert held.decision.tasks[0].reasons == ["pr_open_for_task", "review_rounds_exhausted"]
    fix = _decide(rounds=2, why="ci_failed")
    assert fix.decision.decision == "run" and _check(fix, "continue_pr").passed


def test_spent_failures_hold_every_continuation_but_a_refresh():
    for why in ("changes_requested", "ci_failed"):
        held = _decide(rounds=0, why=why, failures=2)
        assert _check(held, "continue_pr").detail.endswith("not attempted: attempts_exhausted"), why
    assert _decide(rounds=0, why="pr_conflicted", failures=2).decision.decision == "run"


def test_a_new_definition_starts_afresh():
    state = CycleState(failures={"a": TaskCount(task_hash="0" * 16, count=9)},
                       review_rounds={"a": TaskCount(task_hash="0" * 16, count=9)})
    result = build_decision(DecisionInputs(target=TARGET, read=READ, state=state))
    assert result.decision.task_id == "a"
    assert "0 of 2 failed attempt(s)" in _check(result, "budgets").detail
