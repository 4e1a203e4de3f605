"""The breaker's streak: one count shared by the guardrails, the cycle record and the fleet overview."""

from datetime import UTC, datetime, timedelta

from leviathan_lib.core.guardrails import AttemptRecord, failure_streak

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _attempts(*outcomes: str) -> list[AttemptRecord]:
    return [AttemptRecord(task_id=f"t{i}", outcome=o, finished_at=T0 + timedelta(minutes=i))
            for i, o in enumerate(outcomes)]


def test_counts_failures_back_from_the_newest_attempt_to_the_last_success():
    assert failure_streak(_attempts("failed", "succeeded", "failed", "timed_out"), None) == 2
    assert failure_streak(_attempts("failed", "failed"), None) == 2
    assert failure_streak(_attempts("failed", "succeeded"), None) == 0
    assert failure_streak([], None) == 0


def test_attempts_at_or_before_a_reset_do_not_count():
    attempts = _attempts("failed", "failed", "failed")
    assert failure_streak(attempts, attempts[1].finished_at) == 1
    assert failure_streak(attempts, attempts[-1].finished_at) == 0


def test_the_order_given_does_not_matter():
    attempts = _attempts("succeeded", "failed", "failed")
    assert failure_streak(list(reversed(attempts)), None) == 2
