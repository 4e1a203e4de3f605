"""Leviathan's custom StatsD metrics, next to Airflow's own (same ``[metrics]`` settings and prefix).

Off unless ``[metrics] statsd_on`` is true. Names follow Airflow's plain-StatsD convention (no tags; the
dimension is a name segment, like ``<prefix>.dagrun.duration.success.<dag_id>``), e.g.
``airflow.leviathan.cycle.<target_id>.<decision>``. Every segment comes from a configured target id or
a fixed vocabulary, and sending is UDP fire-and-forget: a missing StatsD agent never slows or fails a task.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

DECISIONS = frozenset({"run", "skip", "error"})
OUTCOMES = frozenset({"succeeded", "failed", "timed_out", "rejected_by_guardrail", "rejected_by_human",
                      "checks_red_at_base"})


@functools.cache
def _client():
    """The process's StatsD client, or None when metrics are off (read once per process)."""
    from airflow.sdk.configuration import conf

    if not conf.getboolean("metrics", "statsd_on", fallback=False):
        return None
    from statsd import StatsClient

    prefix = conf.get("metrics", "statsd_prefix", fallback="airflow")
    return StatsClient(host=conf.get("metrics", "statsd_host", fallback="localhost"),
                       port=conf.getint("metrics", "statsd_port", fallback=8125),
                       prefix=f"{prefix}.leviathan" if prefix else "leviathan")


def reset() -> None:
    """Forget the client (tests and long-lived processes whose configuration changed)."""
    _client.cache_clear()


def _reasons() -> frozenset[str]:
    from leviathan_lib.core.guardrails import ReasonCode

    return frozenset(code.value for code in ReasonCode)


def _fixed(value: Any, allowed: frozenset[str]) -> str:
    return value if isinstance(value, str) and value in allowed else "other"


def incr(name: str, count: int = 1) -> None:
    client = _client()
    if client is not None:
        client.incr(name, count)


def timing(name: str, seconds: float) -> None:
    client = _client()
    if client is not None:
        client.timing(name, max(0.0, seconds) * 1000.0)


def emit_cycle(record: Any) -> None:
    """Counters for one recorded cycle (a :class:`CycleRecord`): decision, skip reasons, attempt, PR."""
    if _client() is None:
        return
    tid = record.target_id
    incr(f"cycle.{tid}.{_fixed(record.decision, DECISIONS)}")
    if record.decision != "run":
        reasons = _reasons()
        for reason in record.reasons:
            incr(f"skip.{tid}.{_fixed(reason, reasons)}")
    attempt = record.attempt
    if attempt is None:
        return
    incr(f"attempt.{tid}.{_fixed(attempt.outcome, OUTCOMES)}")
    if attempt.started_at and attempt.finished_at:
        timing(f"attempt_duration.{tid}", (attempt.finished_at - attempt.started_at).total_seconds())
    if attempt.pr_number is not None:
        incr(f"pr_created.{tid}")


def emit_cycle_safely(record: Any) -> None:
    """:func:`emit_cycle` for task code: a metrics problem is logged, never raised."""
    try:
        emit_cycle(record)
    except Exception:
        log.warning("could not emit Leviathan StatsD metrics", exc_info=True)
