"""Leviathan's state as the API server sees it: configured targets, their evidence, switches, breaker.

Everything is read from the metadata DB and the target files on every call, so each API-server
replica (and each worker process of one) reports the same truth and nothing is cached in memory.
Only configured target ids become keys: a record naming another target is ignored here.

Evidence is read newest first, per target, through the ledger and the running totals the newest
records carry (:func:`read_evidence`): a request costs the same with 100 or 100,000 events.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from leviathan_lib.control.evidence_db import newest_rows, record_rows
from leviathan_lib.core.autonomy import GLOBAL_SWITCH_VARIABLE, switch_state
from leviathan_lib.core.config import TargetConfig, TargetsDirError, load_target, target_files
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.cycle.history import NEWEST_EVENTS, RECENT_EVENTS
from leviathan_lib.evidence.records import History, Ledger, Totals, parse_records
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


def configured_targets() -> dict[str, TargetConfig]:
    """Valid target files by target id; broken or duplicate files are left out (their DAG reports them)."""
    try:
        directory = targets_location().path
    except TargetsDirError as exc:
        log.warning("no configured targets: %s", exc.message)
        return {}
    found: dict[str, list[TargetConfig]] = {}
    for path in target_files(directory):
        try:
            target = load_target(path)
        except ValidationFailed:
            continue
        found.setdefault(target.target_id, []).append(target)
    return {tid: entries[0] for tid, entries in found.items() if len(entries) == 1}


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
    """The global switch exactly as the guardrails read it."""
    from airflow.models.variable import Variable

    return switch_state(Variable.get(GLOBAL_SWITCH_VARIABLE, default_var=None))


def paused_dags(dag_ids: list[str]) -> dict[str, bool]:
    """``dag_id -> is_paused`` for the DAGs the DB knows (a DAG never parsed is absent)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    if not dag_ids:
        return {}
    with create_session() as session:
        rows = session.execute(select(DagModel.dag_id, DagModel.is_paused).where(DagModel.dag_id.in_(dag_ids)))
        return {dag_id: bool(paused) for dag_id, paused in rows}


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
    """PRs Leviathan opened that no later cycle saw merged or closed."""
    return [pr.model_dump() for pr in ledger.open_prs]


class TargetState(BaseModel):
    target_id: str
    dag_id: str
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


class Overview(BaseModel):
    global_enabled: bool
    global_detail: str
    targets: list[TargetState]


def overview() -> tuple[Overview, dict[str, History], dict[str, TargetConfig]]:
    targets = configured_targets()
    found = read_evidence(set(targets))
    paused = paused_dags([t.dag_id for t in targets.values()])
    enabled, detail = global_switch()
    states = []
    for tid in sorted(targets):
        target, evidence = targets[tid], found[tid]
        history, ledger = evidence.history, evidence.ledger
        streak = failure_streak(ledger)
        breaker_open = streak >= target.circuit_breaker_failures
        last = history.cycles[-1] if history.cycles else None
        dag_paused = paused.get(target.dag_id)
        budget = llm_budget(target, ledger)
        states.append(TargetState(
            target_id=tid, dag_id=target.dag_id, target_flag=target.autonomy_enabled, dag_paused=dag_paused,
            breaker_open=breaker_open, consecutive_failures=streak,
            breaker_threshold=target.circuit_breaker_failures,
            effective_enabled=enabled and target.autonomy_enabled and dag_paused is False and not breaker_open,
            last_cycle_at=last.recorded_at if last else None, last_decision=last.decision if last else None,
            last_stopped_reason=last.stopped_reason if last else None, last_reasons=last.reasons if last else [],
            open_prs=open_prs(ledger), unreadable_records=len(history.unreadable),
            sandbox=mode_label(required_mode(target)),
            llm_budget_exhausted=bool(budget and not budget.passed),
            llm_budget_detail=budget.detail if budget else None,
            totals=evidence.totals, evidence_read=evidence.read,
        ))
    overview = Overview(global_enabled=enabled, global_detail=detail, targets=states)
    return overview, {tid: evidence.history for tid, evidence in found.items()}, targets
