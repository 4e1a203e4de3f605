"""Leviathan's state as the API server sees it: configured targets, their evidence, switches, breaker.

Everything is read from the metadata DB and the target files on every call, so each API-server
replica (and each worker process of one) reports the same truth and nothing is cached in memory.
Only configured target ids become keys: a record naming another target is ignored here.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from leviathan_lib.control.evidence_db import MAX_PAGE, record_rows
from leviathan_lib.core.autonomy import GLOBAL_SWITCH_VARIABLE, switch_state
from leviathan_lib.core.config import TargetConfig, TargetsDirError, load_target, target_files
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.evidence.records import History, parse_records
from leviathan_lib.orchestrator.targets import targets_location
from leviathan_lib.worker.sandbox import mode_label, required_mode

log = logging.getLogger(__name__)

#: Upper bound on evidence rows read per request (about a year of 5-minute cycles for a few targets).
MAX_ROWS = 200_000


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


def read_histories(target_ids: set[str]) -> tuple[dict[str, History], bool]:
    """Every configured target's records, oldest first, read in bounded pages and parsed exactly as the
    guardrails parse them (so an unreadable record here is one that holds the target's breaker open),
    and whether the read stopped at ``MAX_ROWS`` (then the newest records are missing: never silent)."""
    rows: dict[str, list[tuple[str | None, Any]]] = {tid: [] for tid in target_ids}
    after, seen, truncated = 0, 0, False
    while True:
        page = record_rows(after_row=after, limit=min(MAX_PAGE, MAX_ROWS - seen))
        if not page:
            break
        for _row_id, _ts, run_id, extra in page:
            if isinstance(extra, dict) and extra.get("target_id") in rows:
                rows[extra["target_id"]].append((run_id, extra))
        seen += len(page)
        after = page[-1][0]
        if seen >= MAX_ROWS:
            truncated = bool(record_rows(after_row=after, limit=1))
            break
    if truncated:
        log.error("evidence read stopped at MAX_ROWS=%d rows: newer records are not in this view", MAX_ROWS)
    return {tid: parse_records(found) for tid, found in rows.items()}, truncated


def histories(target_ids: set[str]) -> dict[str, History]:
    """:func:`read_histories` without the truncation flag (callers that report it use ``overview``)."""
    return read_histories(target_ids)[0]


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


def failure_streak(history: History) -> int:
    """Consecutive failed attempts since the last breaker reset, as the guardrails count them."""
    from leviathan_lib.core.guardrails import failure_streak as streak
    from leviathan_lib.cycle.steps import guardrail_inputs

    ledger = history.ledger()
    attempts, _ = guardrail_inputs(ledger)
    return streak(attempts, ledger.breaker_reset_at)


def llm_budget(target: TargetConfig, history: History) -> Any:
    """The guardrails' ``llm_budget`` check (None when the target has no daily model budget)."""
    from leviathan_lib.core.guardrails import CycleState
    from leviathan_lib.core.guardrails import llm_budget as check
    from leviathan_lib.cycle.steps import guardrail_inputs

    attempts, _ = guardrail_inputs(history.ledger())
    return check(target, CycleState(attempts=attempts))


def open_prs(history: History) -> list[dict[str, Any]]:
    """PRs Leviathan opened that no later cycle saw merged or closed."""
    return [pr.model_dump() for pr in history.ledger().open_prs]


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


class Overview(BaseModel):
    global_enabled: bool
    global_detail: str
    targets: list[TargetState]
    #: The evidence read stopped at ``MAX_ROWS``: counts and last cycles miss the newest records.
    history_truncated: bool = False


def overview() -> tuple[Overview, dict[str, History], dict[str, TargetConfig]]:
    targets = configured_targets()
    found, truncated = read_histories(set(targets))
    paused = paused_dags([t.dag_id for t in targets.values()])
    enabled, detail = global_switch()
    states = []
    for tid in sorted(targets):
        target, history = targets[tid], found[tid]
        streak = failure_streak(history)
        breaker_open = streak >= target.circuit_breaker_failures
        last = history.cycles[-1] if history.cycles else None
        dag_paused = paused.get(target.dag_id)
        budget = llm_budget(target, history)
        states.append(TargetState(
            target_id=tid, dag_id=target.dag_id, target_flag=target.autonomy_enabled, dag_paused=dag_paused,
            breaker_open=breaker_open, consecutive_failures=streak,
            breaker_threshold=target.circuit_breaker_failures,
            effective_enabled=enabled and target.autonomy_enabled and dag_paused is False and not breaker_open,
            last_cycle_at=last.recorded_at if last else None, last_decision=last.decision if last else None,
            last_stopped_reason=last.stopped_reason if last else None, last_reasons=last.reasons if last else [],
            open_prs=open_prs(history), unreadable_records=len(history.unreadable),
            sandbox=mode_label(required_mode(target)),
            llm_budget_exhausted=bool(budget and not budget.passed),
            llm_budget_detail=budget.detail if budget else None,
        ))
    overview = Overview(global_enabled=enabled, global_detail=detail, targets=states, history_truncated=truncated)
    return overview, found, targets
