"""The deadline callback hands the alert to ``[leviathan] deadline_notifier`` (the real path is in
tests/e2e/test_deadline.py, through the scheduler)."""

from __future__ import annotations

import time

import pytest

from leviathan_lib.orchestrator import metrics
from leviathan_lib.orchestrator.deadline import deadline_missed
from tests.orchestrator.test_metrics import UdpListener, _statsd_env

CONTEXT = {"dag_run": {"dag_run_id": "manual__1"}, "deadline": {"id": "d1", "deadline_time": "2026-12-01T00:00Z"}}


def test_leviathans_notifier_logs_and_counts_the_miss(monkeypatch, caplog):
    listener = UdpListener()
    _statsd_env(monkeypatch, listener.port)
    monkeypatch.setenv("AIRFLOW__LEVIATHAN__DEADLINE_NOTIFIER", "leviathan_lib.orchestrator.deadline.DeadlineNotifier")
    metrics.reset()
    try:
        deadline_missed(target_id="widgets", expected_seconds=1500, context=CONTEXT)
        for _ in range(20):
            if listener.lines:
                break
            time.sleep(0.1)
    finally:
        listener.close()
        metrics.reset()
    assert listener.lines == ["airflow.leviathan.deadline_missed.widgets:1|c"]
    assert "Leviathan cycle manual__1 of target widgets runs past its expected 1500s" in caplog.text


def test_a_notifier_that_is_not_a_base_notifier_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW__LEVIATHAN__DEADLINE_NOTIFIER", "leviathan_lib.orchestrator.deadline.deadline_missed")
    with pytest.raises(TypeError, match="is not an Airflow BaseNotifier subclass"):
        deadline_missed(target_id="widgets", expected_seconds=1, context=CONTEXT)
