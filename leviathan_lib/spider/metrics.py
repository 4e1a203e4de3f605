"""``/leviathan/metrics``: Prometheus text computed from the evidence in the metadata DB on each scrape.

Nothing is counted in process memory, so every API-server replica reports the same values. The counters
are the running totals the newest cycle record carries (:class:`~leviathan_lib.evidence.records.Totals`),
so a scrape reads a few records per target at any history length and retention never lowers a counter.
A target whose totals are unknown (its newest records predate them) has no counter samples and
``leviathan_evidence_totals_known`` 0. Label values come only from configured target ids and fixed
vocabularies (decisions, :class:`ReasonCode`, attempt outcomes, CI states): a reason or outcome outside them is
counted as ``other``, so neither a request nor a backlog can create a new time series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from leviathan_lib.control.fleet import Overview
from leviathan_lib.core.ci import CI_STATES
from leviathan_lib.evidence.records import DECISIONS, DURATION_BUCKETS, OUTCOMES, REASONS

#: ``generate_latest`` writes the classic text format; say so (every Prometheus version reads it).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
__all__ = ["CONTENT_TYPE", "DECISIONS", "DURATION_BUCKETS", "OUTCOMES", "REASONS", "EvidenceCollector", "render"]


class EvidenceCollector:
    """A one-shot collector over an :class:`Overview` (each target's state and running totals)."""

    def __init__(self, overview: Overview, *, scheduler_heartbeat: datetime | None = None,
                 now: datetime | None = None):
        self.overview = overview
        self.heartbeat = scheduler_heartbeat
        self.now = now or datetime.now(UTC)

    def _liveness(self) -> Iterator[Metric]:
        """Is every target still cycling (the alert rules in k8s/alerts/ key on these)?"""
        valid = GaugeMetricFamily("leviathan_target_config_valid",
                                  "1 if the target's file is valid, 0 if broken or its id is named twice",
                                  labels=["target_id"])
        age = GaugeMetricFamily("leviathan_last_cycle_age_seconds",
                                "Seconds since the newest cycle that acted (replays never count)",
                                labels=["target_id"])
        interval = GaugeMetricFamily("leviathan_cycle_interval_seconds",
                                     "The longest gap between two scheduled cycles", labels=["target_id"])
        expected = GaugeMetricFamily("leviathan_cycle_expected",
                                     "1 if cycles are expected (unpaused, valid file, both switches on)",
                                     labels=["target_id"])
        stale = GaugeMetricFamily("leviathan_cycle_stale",
                                  "1 if expected but no cycle for more than twice the interval",
                                  labels=["target_id"])
        sandbox = GaugeMetricFamily("leviathan_sandbox_available",
                                    "0 if the newest cycle's worker could not build the recipe sandbox",
                                    labels=["target_id"])
        for state in self.overview.targets:
            tid = [state.target_id]
            valid.add_metric(tid, int(state.config_valid))
            if state.last_cycle_age_seconds is not None:
                age.add_metric(tid, state.last_cycle_age_seconds)
            if state.cycle_interval_seconds is not None:
                interval.add_metric(tid, state.cycle_interval_seconds)
            expected.add_metric(tid, int(state.cycle_expected))
            stale.add_metric(tid, int(state.stale))
            sandbox.add_metric(tid, int(not state.sandbox_unavailable))
        yield from (valid, age, interval, expected, stale, sandbox)
        if self.heartbeat is not None:
            beat = self.heartbeat if self.heartbeat.tzinfo else self.heartbeat.replace(tzinfo=UTC)
            yield GaugeMetricFamily("leviathan_scheduler_heartbeat_age_seconds",
                                    "Seconds since the newest running scheduler's heartbeat",
                                    value=max(0.0, (self.now - beat).total_seconds()))

    def collect(self) -> Iterator[Metric]:
        cycles = CounterMetricFamily("leviathan_cycles", "Cycles recorded, by decision",
                                     labels=["target_id", "decision"])
        skips = CounterMetricFamily("leviathan_skips", "Skipped cycles by guardrail reason code (one per reason)",
                                    labels=["target_id", "reason"])
        attempts = CounterMetricFamily("leviathan_attempts", "Worker attempts by outcome",
                                       labels=["target_id", "outcome"])
        prs = CounterMetricFamily("leviathan_prs_created", "Pull requests opened", labels=["target_id"])
        reverted = CounterMetricFamily("leviathan_prs_reverted",
                                       "Merged pull requests a later commit on the target branch reverted",
                                       labels=["target_id"])
        unreadable = GaugeMetricFamily("leviathan_evidence_unreadable_records",
                                       "Evidence records that fail validation", labels=["target_id"])
        open_prs = GaugeMetricFamily("leviathan_open_prs", "Leviathan PRs not yet seen merged or closed",
                                     labels=["target_id"])
        held = GaugeMetricFamily("leviathan_branches_awaiting_ci",
                                 "Pushed agent/ branches whose PR opens once CI passes (pr_creation: checks_pass)",
                                 labels=["target_id"])
        pr_ci = GaugeMetricFamily("leviathan_pr_ci_state",
                                  "Open Leviathan PRs by the CI state of their head (none: no CI reported)",
                                  labels=["target_id", "state"])
        breaker = GaugeMetricFamily("leviathan_breaker_open", "1 if the circuit breaker is open",
                                    labels=["target_id"])
        approvals = GaugeMetricFamily("leviathan_approvals_pending",
                                      "Approval gates waiting for an answer (Airflow's Required Actions)",
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
                reverted.add_metric([tid], totals.prs_reverted)
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
            held.add_metric([tid], len(state.held_branches))
            ci_counts = Counter(pr.get("ci_state", "none") for pr in state.open_prs)
            for label in CI_STATES:
                pr_ci.add_metric([tid, label], ci_counts[label])
            breaker.add_metric([tid], int(state.breaker_open))
            approvals.add_metric([tid], len(state.approvals))
            streak.add_metric([tid], state.consecutive_failures)
            paused.add_metric([tid], -1 if state.dag_paused is None else int(state.dag_paused))
            flag.add_metric([tid], int(state.target_flag))
            effective.add_metric([tid], int(state.effective_enabled))
            if state.last_cycle_at is not None:
                last.add_metric([tid], state.last_cycle_at.timestamp())
        yield from (cycles, skips, attempts, prs, reverted, unreadable, open_prs, pr_ci, held, breaker, approvals,
                    streak, paused, flag, effective, last, duration, known, since)
        yield from self._liveness()
        yield from self._fleet()

    def _fleet(self) -> Iterator[Metric]:
        """The fleet limits (:mod:`leviathan_lib.control.fleet_limits`): per forge account, per team, the breaker."""
        fleet = self.overview.fleet
        yield GaugeMetricFamily("leviathan_fleet_breaker_open", "1 if the fleet breaker is open (every target stops)",
                                value=int(fleet.breaker_open))
        yield GaugeMetricFamily("leviathan_fleet_breaker_attempts",
                                "Attempts of the fleet in the last 24 h after the last reset",
                                value=fleet.breaker_attempts)
        yield GaugeMetricFamily("leviathan_fleet_breaker_failures",
                                "Failed attempts of the fleet in the last 24 h after the last reset",
                                value=fleet.breaker_failures)
        yield GaugeMetricFamily("leviathan_fleet_state_known",
                                "0 if the fleet file cannot be read (every cycle that would attempt stops)",
                                value=int(fleet.problem is None))
        open_prs = GaugeMetricFamily("leviathan_fleet_open_prs", "Open Leviathan PRs of all targets of a forge account",
                                     labels=["account"])
        hourly = GaugeMetricFamily("leviathan_fleet_prs_last_hour", "PRs a forge account's targets opened in the last "
                                   "hour", labels=["account"])
        limit = GaugeMetricFamily("leviathan_fleet_max_open_prs", "fleet_max_open_prs (absent: no limit)",
                                  labels=["account"])
        for account in fleet.accounts:
            open_prs.add_metric([account.account], account.open_prs)
            hourly.add_metric([account.account], account.prs_last_hour)
            if account.max_open_prs is not None:
                limit.add_metric([account.account], account.max_open_prs)
        teams = GaugeMetricFamily("leviathan_team_budget_exhausted", "1 if a team reached its max_open_prs or "
                                  "llm_daily_usd", labels=["team"])
        spend = GaugeMetricFamily("leviathan_team_llm_spend_usd", "A team's model spend of the last 24 h",
                                  labels=["team"])
        for team in fleet.teams:
            teams.add_metric([team.team], int(team.exhausted))
            spend.add_metric([team.team], team.spent_usd)
        yield from (open_prs, hourly, limit, teams, spend)


def render(overview: Overview, *, scheduler_heartbeat: datetime | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EvidenceCollector(overview, scheduler_heartbeat=scheduler_heartbeat))
    return generate_latest(registry)
