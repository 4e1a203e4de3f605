"""``/leviathan/metrics``: Prometheus text computed from the evidence in the metadata DB on each scrape.

Nothing is counted in process memory, so every API-server replica reports the same values. Label values
come only from configured target ids and fixed vocabularies (decisions, :class:`ReasonCode`, attempt
outcomes): a reason or outcome outside them is counted as ``other``, so neither a request nor a backlog
can create a new time series.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from leviathan_lib.control.fleet import Overview
from leviathan_lib.core.guardrails import ReasonCode
from leviathan_lib.evidence.records import History

#: ``generate_latest`` writes the classic text format; say so (every Prometheus version reads it).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
DECISIONS = ("run", "skip", "error")
REASONS = (*(code.value for code in ReasonCode), "other")
OUTCOMES = ("succeeded", "failed", "timed_out", "rejected_by_guardrail", "other")
DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)


def _label(value: str | None, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else "other"


class EvidenceCollector:
    """A one-shot collector over an :class:`Overview` and the histories it was computed from."""

    def __init__(self, overview: Overview, histories: dict[str, History]):
        self.overview, self.histories = overview, histories

    def collect(self) -> Iterator[Metric]:
        cycles = CounterMetricFamily("leviathan_cycles", "Cycles recorded, by decision",
                                     labels=["target_id", "decision"])
        skips = CounterMetricFamily("leviathan_skips", "Skipped cycles by guardrail reason code (one per reason)",
                                    labels=["target_id", "reason"])
        attempts = CounterMetricFamily("leviathan_attempts", "Worker attempts by outcome",
                                       labels=["target_id", "outcome"])
        prs = CounterMetricFamily("leviathan_prs_created", "Pull requests opened", labels=["target_id"])
        unreadable = GaugeMetricFamily("leviathan_evidence_unreadable_records",
                                       "Evidence records that fail validation", labels=["target_id"])
        open_prs = GaugeMetricFamily("leviathan_open_prs", "Leviathan PRs not yet seen merged or closed",
                                     labels=["target_id"])
        breaker = GaugeMetricFamily("leviathan_breaker_open", "1 if the circuit breaker is open",
                                    labels=["target_id"])
        streak = GaugeMetricFamily("leviathan_consecutive_failures", "Failed attempts in a row since the last reset",
                                   labels=["target_id"])
        paused = GaugeMetricFamily("leviathan_dag_paused", "1 if the target's DAG is paused (-1: not parsed yet)",
                                   labels=["target_id"])
        flag = GaugeMetricFamily("leviathan_target_autonomy_flag", "The target file's autonomy_enabled",
                                 labels=["target_id"])
        effective = GaugeMetricFamily("leviathan_autonomy_effective",
                                      "1 if a cycle starting now may run a worker", labels=["target_id"])
        last = GaugeMetricFamily("leviathan_last_cycle_timestamp_seconds", "Unix time of the last recorded cycle",
                                 labels=["target_id"])
        duration = HistogramMetricFamily("leviathan_attempt_duration_seconds", "Worker attempt duration",
                                         labels=["target_id"], unit="")
        yield GaugeMetricFamily("leviathan_autonomy_global_enabled", "1 if the global autonomy switch is on",
                                value=int(self.overview.global_enabled))
        yield GaugeMetricFamily("leviathan_evidence_history_truncated",
                                "1 if the evidence read stopped at its row bound (the counters miss newer records)",
                                value=int(self.overview.history_truncated))
        for state in self.overview.targets:
            tid = state.target_id
            history = self.histories[tid]
            by_decision = dict.fromkeys(DECISIONS, 0)
            by_reason = dict.fromkeys(REASONS, 0)
            by_outcome = dict.fromkeys(OUTCOMES, 0)
            created = 0
            durations: list[float] = []
            for record in history.cycles:
                by_decision[record.decision] += 1
                if record.decision != "run":
                    for reason in record.reasons:
                        by_reason[_label(reason, REASONS)] += 1
                attempt = record.attempt
                if attempt is not None:
                    by_outcome[_label(attempt.outcome, OUTCOMES)] += 1
                    created += attempt.pr_number is not None
                    if attempt.started_at and attempt.finished_at:
                        durations.append(max(0.0, (attempt.finished_at - attempt.started_at).total_seconds()))
            for decision, count in by_decision.items():
                cycles.add_metric([tid, decision], count)
            for reason, count in by_reason.items():
                skips.add_metric([tid, reason], count)
            for outcome, count in by_outcome.items():
                attempts.add_metric([tid, outcome], count)
            prs.add_metric([tid], created)
            unreadable.add_metric([tid], state.unreadable_records)
            open_prs.add_metric([tid], len(state.open_prs))
            breaker.add_metric([tid], int(state.breaker_open))
            streak.add_metric([tid], state.consecutive_failures)
            paused.add_metric([tid], -1 if state.dag_paused is None else int(state.dag_paused))
            flag.add_metric([tid], int(state.target_flag))
            effective.add_metric([tid], int(state.effective_enabled))
            if state.last_cycle_at is not None:
                last.add_metric([tid], state.last_cycle_at.timestamp())
            buckets = [(str(bound), sum(d <= bound for d in durations)) for bound in DURATION_BUCKETS]
            buckets.append(("+Inf", len(durations)))
            duration.add_metric([tid], buckets, sum(durations))
        yield from (cycles, skips, attempts, prs, unreadable, open_prs, breaker, streak, paused, flag, effective,
                    last, duration)


def render(overview: Overview, histories: dict[str, History]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EvidenceCollector(overview, histories))
    return generate_latest(registry)
