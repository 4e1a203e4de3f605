"""Leviathan's state as the API server sees it: configured targets, their evidence, switches, breaker.

Everything is read from the metadata DB and the target files on every call, so each API-server
replica (and each worker process of one) reports the same truth and nothing is cached in memory.
Only configured target ids become keys: a record naming another target is ignored here.

Evidence is read newest first, per target, through the ledger and the running totals the newest
records carry (:func:`read_evidence`): a request costs the same with 100 or 100,000 events.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from leviathan_lib.control import fleet_limits
from leviathan_lib.control.approvals import PendingApproval, pending_approvals
from leviathan_lib.control.evidence_db import newest_rows, record_rows
from leviathan_lib.control.fleet_limits import FleetSummary
from leviathan_lib.core import schedule, target_scan
from leviathan_lib.core.config import TargetConfig, TargetsDirError
from leviathan_lib.core.guardrails import ReasonCode
from leviathan_lib.core.names import dag_id
from leviathan_lib.core.target_scan import TargetFile
from leviathan_lib.core.until import next_pr_at
from leviathan_lib.cycle.history import NEWEST_EVENTS, RECENT_EVENTS
from leviathan_lib.evidence.records import CycleRecord, History, Ledger, Totals, parse_records
from leviathan_lib.orchestrator.targets import targets_location
from leviathan_lib.worker.sandbox import mode_label, required_mode

log = logging.getLogger(__name__)

#: How far back :func:`read_evidence` had to read a target's events.
ReadDepth = Literal["newest", "window", "full"]


class TargetEvidence(BaseModel):
    """One target's evidence as the guardrails would see it, from its newest records."""

    #: The records read, oldest first (the newest ones; every one only for ``read == "full"``).
    history: History
    ledger: Ledger
    #: Running totals; None: unknown (the newest records are older than the totals; the next cycle
    #: counts them).
    totals: Totals | None
    #: ``newest``: :data:`NEWEST_EVENTS` events; ``window``: the cycle's window (:data:`RECENT_EVENTS`);
    #: ``full``: every event (records from before the ledger: cost grows with history until a cycle runs).
    read: ReadDepth


def target_files() -> tuple[list[TargetFile], str | None]:
    """Every file of the targets folder as the DAG processor reads it, or why the folder cannot be read."""
    try:
        location = targets_location()
        location.check()
    except TargetsDirError as exc:
        return [], f"targets folder unknown: {exc.message}"
    return target_scan.scan(location.path), None


def named_targets() -> set[str]:
    """Every target id the folder names, valid or not (a broken target can still be paused)."""
    return set(target_scan.by_target(target_files()[0]))


def configured_targets() -> dict[str, TargetConfig]:
    """Valid target files by target id; broken or duplicate files are left out (:func:`overview` shows them)."""
    entries, problem = target_files()
    if problem:
        log.warning("no configured targets: %s", problem)
    return {tid: files[0].target for tid, files in target_scan.by_target(entries).items()
            if len(files) == 1 and files[0].target is not None}


def _evidence(rows: list[tuple[str | None, Any]], complete: bool, read: ReadDepth) -> TargetEvidence | None:
    """The evidence in ``rows`` (newest first), or None when they hold no ledger (read further back)."""
    history = parse_records(list(reversed(rows)))
    ledger = history.latest_ledger(exclude_run_id=None)
    if ledger is None:
        if not complete:
            return None
        ledger = history.ledger()
    return TargetEvidence(history=history, ledger=ledger, totals=history.totals(complete=complete), read=read)


def read_evidence(target_ids: set[str]) -> dict[str, TargetEvidence]:
    """Each target's newest records, parsed exactly as the guardrails parse them: one statement for all
    targets, a second (the cycle's window) only for targets whose newest events hold no ledger, and a
    full read only for targets whose records all predate the ledger (then ``read == "full"``)."""
    found: dict[str, TargetEvidence] = {}
    pending = set(target_ids)
    depths: tuple[tuple[int, ReadDepth], ...] = ((NEWEST_EVENTS, "newest"), (RECENT_EVENTS, "window"))
    for limit, depth in depths:
        if not pending:
            break
        rows = newest_rows(pending, limit)
        for tid in sorted(pending):
            evidence = _evidence(rows[tid], len(rows[tid]) < limit, depth)
            if evidence is not None:
                found[tid] = evidence
                pending.discard(tid)
    for tid in sorted(pending):
        log.warning("target %s: no evidence record carries a ledger; reading all of its records", tid)
        every: list[tuple[str | None, Any]] = []
        after = 0
        while page := record_rows(after_row=after, target_id=tid):
            every.extend((run_id, extra) for _id, _ts, run_id, extra in page)
            after = page[-1][0]
        evidence = _evidence(list(reversed(every)), True, "full")
        assert evidence is not None  # a complete history always folds
        found[tid] = evidence
    return found


def histories(target_ids: set[str]) -> dict[str, History]:
    """The records :func:`read_evidence` read per target (the newest ones), oldest first."""
    return {tid: evidence.history for tid, evidence in read_evidence(target_ids).items()}


def global_switch() -> tuple[bool, str]:
    """The global switch exactly as the guardrails read it (the Variable and the newest recorded change)."""
    from leviathan_lib.control.switch import read_global

    return read_global()


class DagState(BaseModel):
    """What the scheduler says about a target's DAG."""

    paused: bool
    #: When the scheduler will next create a run (None: a run is active, or it will not).
    next_create_after: datetime | None = None
    #: When the newest running or queued run started (None: none is).
    live_since: datetime | None = None


def dag_states(dag_ids: list[str]) -> dict[str, DagState]:
    """The DAGs the DB knows (a DAG never parsed is absent): paused, next creation, a live run."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    if not dag_ids:
        return {}
    with create_session() as session:
        rows = session.execute(select(DagModel.dag_id, DagModel.is_paused, DagModel.next_dagrun_create_after)
                               .where(DagModel.dag_id.in_(dag_ids))).all()
        live = dict(session.execute(
            select(DagRun.dag_id, func.max(func.coalesce(DagRun.start_date, DagRun.queued_at)))
            .where(DagRun.dag_id.in_(dag_ids), DagRun.state.in_(("running", "queued")))
            .group_by(DagRun.dag_id)).all())
    return {dag_id: DagState(paused=bool(paused), next_create_after=_aware(after), live_since=_aware(live.get(dag_id)))
            for dag_id, paused, after in rows}


def _aware(when: datetime | None) -> datetime | None:
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def paused_dags(dag_ids: list[str]) -> dict[str, bool]:
    """``dag_id -> is_paused`` for the DAGs the DB knows (a DAG never parsed is absent)."""
    return {dag_id: state.paused for dag_id, state in dag_states(dag_ids).items()}


def failure_streak(ledger: Ledger) -> int:
    """Consecutive failed attempts since the last breaker reset, as the guardrails count them."""
    from leviathan_lib.core.guardrails import failure_streak as streak
    from leviathan_lib.cycle.decision import guardrail_inputs

    attempts, _ = guardrail_inputs(ledger)
    return streak(attempts, ledger.breaker_reset_at)


def llm_budget(target: TargetConfig, ledger: Ledger) -> Any:
    """The guardrails' ``llm_budget`` check (None when the target has no daily model budget)."""
    from leviathan_lib.core.guardrails import CycleState
    from leviathan_lib.core.guardrails import llm_budget as check
    from leviathan_lib.cycle.decision import guardrail_inputs

    attempts, _ = guardrail_inputs(ledger)
    return check(target, CycleState(attempts=attempts))


def open_prs(ledger: Ledger) -> list[dict[str, Any]]:
    """PRs Leviathan opened that no later cycle saw merged or closed, with the CI state of their head."""
    return [{**pr.model_dump(), "ci_state": pr.ci.on(pr.head_sha, human_edited=pr.human_edited)}
            for pr in ledger.open_prs]


def held_branches(ledger: Ledger) -> list[dict[str, Any]]:
    """Branches Leviathan pushed whose PR opens once CI passes, with the CI state of their head."""
    return [{"branch": h.branch, "task_id": h.task_id, "head_sha": h.head_sha, "pushed_at": h.pushed_at,
             "ci_state": h.ci.on(h.head_sha)} for h in ledger.held_branches]


class TargetState(BaseModel):
    target_id: str
    dag_id: str
    #: False while the target's file is broken (or a second file names its id): no cycle runs.
    config_valid: bool = True
    #: ``file:line: field: problem`` of a broken file, and the files naming the target.
    config_problems: list[str] = Field(default_factory=list)
    config_files: list[str] = Field(default_factory=list)
    target_flag: bool
    dag_paused: bool | None
    breaker_open: bool
    consecutive_failures: int
    breaker_threshold: int
    #: Would a cycle starting now be allowed to run a worker (global switch, flag, DAG, breaker)?
    effective_enabled: bool
    last_cycle_at: datetime | None = None
    last_decision: str | None = None
    last_stopped_reason: str | None = None
    last_reasons: list[str] = Field(default_factory=list)
    open_prs: list[dict[str, Any]] = Field(default_factory=list)
    unreadable_records: int = 0
    #: Where recipe steps run: ``bwrap``, ``pod`` or ``unsandboxed (opt-out)`` (the target file decides).
    sandbox: str = "bwrap"
    #: ``llm_daily_usd`` against the model spend of the last 24 h (None: no daily budget).
    llm_budget_exhausted: bool = False
    llm_budget_detail: str | None = None
    #: Running totals from the newest records (None: unknown until the next cycle records them).
    totals: Totals | None = None
    #: How far back the evidence read went (see :class:`TargetEvidence`).
    evidence_read: ReadDepth = "newest"
    #: The longest gap between two scheduled cycles (None: the schedule is unknown, a broken file).
    cycle_interval_seconds: float | None = None
    #: Seconds since the newest cycle that acted (replays never count; None: none yet).
    last_cycle_age_seconds: float | None = None
    #: Cycles are expected: the DAG is parsed and unpaused, the file valid, both autonomy switches on.
    cycle_expected: bool = False
    #: Expected, yet no cycle for more than twice the interval (why, in ``stale_reason``).
    stale: bool = False
    stale_reason: str | None = None
    #: The newest cycle's worker could not build the recipe sandbox (``sandbox_unavailable``).
    sandbox_unavailable: bool = False
    #: Branches pushed whose PR waits for green CI (``pr_creation: checks_pass``): branch, task, CI state.
    held_branches: list[dict[str, Any]] = Field(default_factory=list)
    #: Approval gates of its runs waiting for an answer (Airflow's Required Actions).
    approvals: list[PendingApproval] = Field(default_factory=list)
    #: ``max_prs_per_hour`` PRs were opened in the hour before now: no PR before this time (None: one may open).
    next_pr_at: datetime | None = None


def staleness(target: TargetConfig, dag: DagState | None, age: float | None, expected: bool,
              now: datetime) -> tuple[float, str | None]:
    """The target's interval and why it counts as stopped (None: it does not): a scheduler that has not
    created a due run for more than twice the interval (whatever the workers' clocks say), or runs that
    leave no cycle for that long while none is running within its time limit."""
    interval = schedule.interval_seconds(target.effective_schedule)
    if not expected or dag is None:
        return interval, None
    limit = 2 * interval
    if dag.next_create_after is not None and (now - dag.next_create_after).total_seconds() > limit:
        late = (now - dag.next_create_after).total_seconds()
        return interval, f"the scheduler has not created the run due {late:.0f}s ago (interval {interval:.0f}s)"
    live = dag.live_since is not None and (now - dag.live_since).total_seconds() < target.run_timeout_seconds
    if age is not None and age > limit and not live:
        return interval, f"last cycle {age:.0f}s ago, more than twice the interval ({interval:.0f}s)"
    return interval, None


def _newest_cycle(history: History) -> CycleRecord | None:
    """The newest cycle that acted: a replay is never the target's last cycle."""
    return next((c for c in reversed(history.cycles) if not c.replay), None)


def _sandbox_failed(record: CycleRecord | None) -> bool:
    return record is not None and ReasonCode.SANDBOX_UNAVAILABLE in record.reasons


def _valid_state(target: TargetConfig, evidence: TargetEvidence, dag: DagState | None, enabled: bool,
                 now: datetime) -> TargetState:
    history, ledger = evidence.history, evidence.ledger
    streak = failure_streak(ledger)
    breaker_open = streak >= target.circuit_breaker_failures
    last = _newest_cycle(history)
    dag_paused = dag.paused if dag else None
    budget = llm_budget(target, ledger)
    age = max(0.0, (now - last.recorded_at).total_seconds()) if last else None
    expected = enabled and target.autonomy_enabled and dag_paused is False
    interval, stale = staleness(target, dag, age, expected, now)
    return TargetState(
        target_id=target.target_id, dag_id=target.dag_id, config_files=[], target_flag=target.autonomy_enabled,
        dag_paused=dag_paused, breaker_open=breaker_open, consecutive_failures=streak,
        breaker_threshold=target.circuit_breaker_failures,
        effective_enabled=enabled and target.autonomy_enabled and dag_paused is False and not breaker_open,
        last_cycle_at=last.recorded_at if last else None, last_decision=last.decision if last else None,
        last_stopped_reason=last.stopped_reason if last else None, last_reasons=last.reasons if last else [],
        open_prs=open_prs(ledger), held_branches=held_branches(ledger), unreadable_records=len(history.unreadable),
        sandbox=mode_label(required_mode(target)),
        llm_budget_exhausted=bool(budget and not budget.passed),
        llm_budget_detail=budget.detail if budget else None,
        totals=evidence.totals, evidence_read=evidence.read, cycle_interval_seconds=interval,
        last_cycle_age_seconds=age, cycle_expected=expected, stale=stale is not None, stale_reason=stale,
        sandbox_unavailable=_sandbox_failed(last),
        next_pr_at=next_pr_at(ledger.prs_opened_at, now=now, limit=target.max_prs_per_hour),
    )


def _broken_state(target_id: str, files: list[TargetFile], evidence: TargetEvidence, dag: DagState | None,
                  now: datetime) -> TargetState:
    """A target whose file cannot be used: its history and PRs as recorded, ``config_invalid`` on top."""
    history, ledger = evidence.history, evidence.ledger
    last = _newest_cycle(history)
    streak = failure_streak(ledger)
    threshold = TargetConfig.model_fields["circuit_breaker_failures"].default
    return TargetState(
        target_id=target_id, dag_id=dag_id(target_id), config_valid=False,
        config_problems=[p for f in files for p in f.problems], config_files=[f.path for f in files],
        target_flag=False, dag_paused=dag.paused if dag else None, breaker_open=streak >= threshold,
        consecutive_failures=streak, breaker_threshold=threshold, effective_enabled=False,
        last_cycle_at=last.recorded_at if last else None, last_decision=last.decision if last else None,
        last_stopped_reason=last.stopped_reason if last else None, last_reasons=last.reasons if last else [],
        open_prs=open_prs(ledger), held_branches=held_branches(ledger), unreadable_records=len(history.unreadable),
        sandbox="unknown",
        totals=evidence.totals, evidence_read=evidence.read,
        last_cycle_age_seconds=max(0.0, (now - last.recorded_at).total_seconds()) if last else None,
    )


class Overview(BaseModel):
    global_enabled: bool
    global_detail: str
    targets: list[TargetState]
    #: Why the targets folder itself cannot be read (then no target is listed).
    folder_problem: str | None = None
    #: Broken files that name no target id (each has its own paused error DAG).
    unnamed_files: list[TargetFile] = Field(default_factory=list)
    #: The fleet limits and the fleet breaker (:mod:`leviathan_lib.control.fleet_limits`).
    fleet: FleetSummary = Field(default_factory=FleetSummary)

    @property
    def invalid_targets(self) -> list[TargetState]:
        return [t for t in self.targets if not t.config_valid]


def overview(now: datetime | None = None) -> tuple[Overview, dict[str, History], dict[str, TargetConfig]]:
    """Every target the folder names (valid or not) with its state, the records read, the valid configs."""
    now = now or datetime.now(UTC)
    entries, folder_problem = target_files()
    groups = target_scan.by_target(entries)
    valid = {tid: files[0].target for tid, files in groups.items() if len(files) == 1 and files[0].target}
    found = read_evidence(set(groups))
    dags = dag_states([dag_id(tid) for tid in groups])
    enabled, detail = global_switch()
    waiting = pending_approvals([dag_id(tid) for tid in groups])
    states = []
    for tid in sorted(groups):
        target, dag = valid.get(tid), dags.get(dag_id(tid))
        state = (_valid_state(target, found[tid], dag, enabled, now) if target is not None
                 else _broken_state(tid, groups[tid], found[tid], dag, now))
        state.approvals = waiting.get(state.dag_id, [])
        states.append(state)
    overview = Overview(global_enabled=enabled, global_detail=detail, targets=states, folder_problem=folder_problem,
                        unnamed_files=[e for e in entries if e.target_id is None],
                        fleet=fleet_limits.summary(found, valid, now))
    return overview, {tid: evidence.history for tid, evidence in found.items()}, valid
