"""``/leviathan/metrics``: Prometheus text computed from the evidence in the metadata DB on each scrape.

Nothing is counted in process memory, so every API-server replica reports the same values. The counters
are the running totals the newest cycle record carries (:class:`~leviathan_lib.evidence.records.Totals`),
so a scrape reads a few records per target at any history length and retention never lowers a counter.
A target whose totals are unknown (its newest records predate them) has no counter samples and
``leviathan_evidence_totals_known`` 0. Label values come only from configured target ids and fixed
vocabularies (decisions, :class:`ReasonCode`, attempt outcomes): a reason or outcome outside them is
counted as ``other``, so neither a request nor a backlog can create a new time series.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from leviathan_lib.control.fleet import Overview
from leviathan_lib.evidence.records import DECISIONS, DURATION_BUCKETS, OUTCOMES, REASONS

#: ``generate_latest`` writes the classic text format; say so (every Prometheus version reads it).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
__all__ = ["CONTENT_TYPE", "DECISIONS", "DURATION_BUCKETS", "OUTCOMES", "REASONS", "EvidenceCollector", "render"]


class EvidenceCollector:
    """A one-shot collector over an :class:`Overview` (each target's state and running totals)."""

    def __init__(self, overview: Overview):
        self.overview = overview

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
        known = GaugeMetricFamily("leviathan_evidence_totals_known",
                                  "1 if the counters are known (0: the newest records predate running totals)",
                                  labels=["target_id"])
        since = GaugeMetricFamily("leviathan_evidence_totals_since_timestamp_seconds",
                                  "Unix time of the oldest record the counters count", labels=["target_id"])
        for state in self.overview.targets:
            tid = state.target_id
            totals = state.totals
            known.add_metric([tid], int(totals is not None))
            if totals is not None:
                for decision in DECISIONS:
                    cycles.add_metric([tid, decision], totals.cycles.get(decision, 0))
                for reason in REASONS:
                    skips.add_metric([tid, reason], totals.skips.get(reason, 0))
                for outcome in OUTCOMES:
                    attempts.add_metric([tid, outcome], totals.attempts.get(outcome, 0))
                prs.add_metric([tid], totals.prs_opened)
                if totals.since is not None:
                    since.add_metric([tid], totals.since.timestamp())
                if len(totals.duration_counts) == len(DURATION_BUCKETS) + 1:  # else counted on other buckets
                    cumulative, buckets = 0, []
                    for bound, count in zip((*map(str, DURATION_BUCKETS), "+Inf"), totals.duration_counts,
                                            strict=True):
                        cumulative += count
                        buckets.append((bound, cumulative))
                    duration.add_metric([tid], buckets, totals.duration_sum)
            unreadable.add_metric([tid], state.unreadable_records)
            open_prs.add_metric([tid], len(state.open_prs))
            breaker.add_metric([tid], int(state.breaker_open))
            streak.add_metric([tid], state.consecutive_failures)
            paused.add_metric([tid], -1 if state.dag_paused is None else int(state.dag_paused))
            flag.add_metric([tid], int(state.target_flag))
            effective.add_metric([tid], int(state.effective_enabled))
            if state.last_cycle_at is not None:
                last.add_metric([tid], state.last_cycle_at.timestamp())
        yield from (cycles, skips, attempts, prs, unreadable, open_prs, breaker, streak, paused, flag, effective,
                    last, duration, known, since)


def render(overview: Overview) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EvidenceCollector(overview))
    return generate_latest(registry)
