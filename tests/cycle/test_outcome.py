"""Outcome precedence of an attempt and of a cycle, without Airflow."""

from datetime import UTC, datetime, timedelta

import pytest

from leviathan_lib.contracts.xcom import AttemptPlan
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.cycle.outcome import attempt_evidence, cycle_failure, missing_result_outcome
from leviathan_lib.cycle.replay import REPLAY_AFTER, replay_time

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
TARGET = TargetConfig(target_id="t", target_repo_url="x", attempt_timeout_seconds=600)
PLAN = AttemptPlan(task_id="a", attempt=2, branch="agent/a/2", task_hash="h", recipe="r")
SUCCEEDED = {"outcome": "succeeded", "changed_paths": ["docs/a.md"], "started_at": NOW.isoformat(),
             "finished_at": NOW.isoformat(), "error": None}


def _evidence(**kwargs):
    values = {"result": None, "pr": None, "rejection": None, "prepared_at": None, "now": NOW, **kwargs}
    return attempt_evidence(TARGET, PLAN, **values)


def test_an_opened_pr_is_recorded_on_the_attempt():
    attempt = _evidence(result=SUCCEEDED, pr={"number": 4, "url": "u", "changed_paths": ["docs/b.md"]})
    assert (attempt.outcome, attempt.pr_number, attempt.pr_url, attempt.changed_paths) == (
        "succeeded", 4, "u", ["docs/b.md"])  # the real diff's paths, never the worker's claim
    assert (attempt.branch, attempt.backend, attempt.image) == ("agent/a/2", "local", None)


def test_a_rejection_beats_the_pr_and_the_worker():
    attempt = _evidence(result=SUCCEEDED, pr={"number": 4, "url": "u"},
                        rejection={"code": "backlog_edited", "message": "no"})
    assert (attempt.outcome, attempt.error_code, attempt.error_message, attempt.pr_number) == (
        "rejected_by_guardrail", "backlog_edited", "no", None)


def test_a_success_without_a_pr_failed():
    attempt = _evidence(result=SUCCEEDED)
    assert (attempt.outcome, attempt.error_code) == ("failed", "pr_not_opened")


def test_a_failed_worker_keeps_its_error_and_a_missing_result_crashed_or_timed_out():
    failed = _evidence(result={**SUCCEEDED, "outcome": "failed", "finished_at": None,
                               "error": {"code": "recipe_failed", "message": "exit 1"}})
    assert (failed.outcome, failed.error_code, failed.finished_at) == ("failed", "recipe_failed", NOW)
    assert _evidence().error_code == "worker_crashed"
    late = (NOW - timedelta(seconds=601)).isoformat()
    assert _evidence(prepared_at=late).outcome == "timed_out"


def test_missing_result_outcome():
    start = NOW - timedelta(seconds=900)
    assert missing_result_outcome(start.isoformat(), 900, NOW)[:2] == ("timed_out", "timeout")
    assert missing_result_outcome(start.isoformat(), 901, NOW)[:2] == ("failed", "worker_crashed")
    assert missing_result_outcome(None, 900, NOW)[1] == "worker_crashed"


@pytest.mark.parametrize(("record", "fails"), [
    ({"decision": "error", "stopped_reason": "repo_unreachable", "stopped_detail": "d"}, True),
    ({"decision": "run", "stopped_reason": "x", "stopped_detail": "", "attempt": {"outcome": "timed_out"}}, True),
    ({"decision": "run", "stopped_reason": "x", "stopped_detail": "",
      "attempt": {"outcome": "rejected_by_guardrail"}}, True),
    ({"decision": "run", "stopped_reason": "pr_opened", "stopped_detail": "u",
      "attempt": {"outcome": "succeeded"}}, False),
    ({"decision": "skip", "stopped_reason": "open_pr_limit", "stopped_detail": "", "attempt": None}, False),
])
def test_cycle_failure(record, fails):
    failure = cycle_failure(record)
    assert (failure is not None) == fails
    if fails:
        assert failure == f"cycle stopped: {record['stopped_reason']}: {record['stopped_detail']}"


def test_backfills_and_old_runs_replay():
    old = NOW - REPLAY_AFTER - timedelta(seconds=1)
    assert replay_time("scheduled", NOW, NOW) is None
    assert replay_time("scheduled", old, NOW) is None  # the run made on unpausing: a cycle, never a replay
    assert replay_time("backfill", NOW, NOW) == NOW
    assert replay_time("manual", old, NOW) == old
    assert replay_time("manual", None, NOW) is None
