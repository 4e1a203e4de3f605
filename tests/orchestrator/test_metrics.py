"""StatsD metrics and listeners through real cycles (``dag.test()``): a real UDP listener on 127.0.0.1."""

from __future__ import annotations

import socket
import threading

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.orchestrator import metrics
from tests.airflow_helpers import evidence_record, run_cycle

pytestmark = pytest.mark.usefixtures("airflow_db")


class UdpListener:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(data.decode().splitlines())

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=2)
        self.sock.close()


def _statsd_env(monkeypatch, port: int) -> None:
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(port))
    metrics.reset()


@pytest.fixture
def statsd(monkeypatch):
    listener = UdpListener()
    _statsd_env(monkeypatch, listener.port)
    yield listener
    listener.close()
    metrics.reset()


def _names(lines: list[str]) -> dict[str, str]:
    return {line.split(":", 1)[0]: line.split(":", 1)[1] for line in lines}


def test_a_cycle_emits_cycle_attempt_duration_and_pr_metrics_with_airflows_prefix(tmp_path, targets_dir, statsd):
    target_file = create_demo_target(tmp_path, target_id="statsd_t", targets_dir=targets_dir)
    dag_run, _ = run_cycle(target_file)
    assert evidence_record(dag_run)["stopped_reason"] == "pr_opened"
    run_cycle(target_file)  # skipped: open_pr_limit
    statsd.stopped.wait(0.5)
    lines = [line for line in statsd.lines if line.startswith("airflow.leviathan.")]
    counters = _names(lines)
    assert counters["airflow.leviathan.cycle.statsd_t.run"] == "1|c"
    assert counters["airflow.leviathan.cycle.statsd_t.skip"] == "1|c"
    assert counters["airflow.leviathan.skip.statsd_t.open_pr_limit"] == "1|c"
    assert counters["airflow.leviathan.attempt.statsd_t.succeeded"] == "1|c"
    assert counters["airflow.leviathan.pr_created.statsd_t"] == "1|c"
    assert counters["airflow.leviathan.attempt_duration.statsd_t"].endswith("|ms")
    # The listeners turned task-instance state changes into events too.
    assert f"airflow.leviathan.ti.statsd_t.{names.TASK_RUN_WORKER}.success" in counters


def test_unknown_reason_and_outcome_values_never_become_metric_names(statsd):
    from leviathan_lib.evidence.records import CycleRecord

    record = CycleRecord.model_validate({
        "target_id": "statsd_x", "dag_run_id": "r", "recorded_at": "2026-01-01T00:00:00Z", "decision": "skip",
        "reasons": ["evil.name:1|c", "open_pr_limit"], "stopped_reason": "x",
    })
    metrics.emit_cycle(record)
    statsd.stopped.wait(0.3)
    assert sorted(statsd.lines) == ["airflow.leviathan.cycle.statsd_x.skip:1|c",
                                    "airflow.leviathan.skip.statsd_x.open_pr_limit:1|c",
                                    "airflow.leviathan.skip.statsd_x.other:1|c"]


def test_metrics_are_off_unless_statsd_is_on(monkeypatch):
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "False")
    metrics.reset()
    assert metrics._client() is None
    metrics.incr("anything")  # no socket, no error


def test_cycles_run_when_the_statsd_agent_and_spider_are_down(tmp_path, targets_dir, monkeypatch):
    """Nothing listens on the StatsD port and no API server runs: the cycle still delivers its PR."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    _statsd_env(monkeypatch, dead_port)
    try:
        target_file = create_demo_target(tmp_path, target_id="statsd_down", targets_dir=targets_dir)
        for _ in range(2):  # a second cycle too: ICMP "port unreachable" from the first must not break it
            dag_run, states = run_cycle(target_file)
            assert dag_run.state == "success", states
        assert evidence_record(dag_run)["reasons"] == ["open_pr_limit"]
    finally:
        metrics.reset()


def test_listener_hooks_ignore_other_dags_and_never_raise(statsd):
    from leviathan_lib.orchestrator import listeners

    class Ti:
        dag_id, task_id = names.dag_id("statsd_l"), names.TASK_RUN_WORKER

    class Broken:
        @property
        def dag_id(self):
            raise RuntimeError("boom")

    listeners.on_task_instance_success(None, Ti())
    listeners.on_task_instance_failed(None, Broken(), "error")
    listeners.on_dag_run_failed(type("Run", (), {"dag_id": "someone_else"})(), "msg")
    listeners.on_dag_run_success(type("Run", (), {"dag_id": names.invalid_dag_id("x")})(), "msg")
    statsd.stopped.wait(0.3)
    assert statsd.lines == ["airflow.leviathan.ti.statsd_l.run_worker.success:1|c"]
