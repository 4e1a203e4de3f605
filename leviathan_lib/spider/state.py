"""Leviathan's state as the API server sees it: configured targets, their evidence, switches, breaker.

Everything is read from the metadata DB and the target files on every call, so each API-server
replica (and each worker process of one) reports the same truth and nothing is cached in memory.
Only configured target ids become keys: a record naming another target is ignored here.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from leviathan_lib.autonomy import GLOBAL_SWITCH_VARIABLE, switch_state
from leviathan_lib.config import TargetConfig, load_target, target_files
from leviathan_lib.errors import ValidationFailed
from leviathan_lib.evidence import BreakerResetRecord, CycleRecord, History, Ledger
from leviathan_lib.evidence_store import MAX_PAGE, record_rows

log = logging.getLogger(__name__)

#: Upper bound on evidence rows read per request (about a year of 5-minute cycles for a few targets).
MAX_ROWS = 200_000


def configured_targets() -> dict[str, TargetConfig]:
    """Valid target files by target id; broken or duplicate files are left out (their DAG reports them)."""
    found: dict[str, list[TargetConfig]] = {}
    for path in target_files():
        try:
            target = load_target(path)
        except ValidationFailed:
            continue
        found.setdefault(target.target_id, []).append(target)
    return {tid: entries[0] for tid, entries in found.items() if len(entries) == 1}


class TargetHistory(BaseModel):
    cycles: list[CycleRecord] = Field(default_factory=list)
    resets: list[BreakerResetRecord] = Field(default_factory=list)
    #: Records that name the target but fail validation (the guardrails then treat the breaker as open).
    unreadable: int = 0


def histories(target_ids: set[str]) -> dict[str, TargetHistory]:
    """Every configured target's records, oldest first, read in bounded pages."""
    out = {tid: TargetHistory() for tid in target_ids}
    after, seen = 0, 0
    while seen < MAX_ROWS:
        rows = record_rows(after_row=after, limit=MAX_PAGE)
        if not rows:
            break
        for _row_id, _ts, _run_id, extra in rows:
            _add(out, extra)
        seen += len(rows)
        after = rows[-1][0]
    return out


def _add(out: dict[str, TargetHistory], extra: Any) -> None:
    if not isinstance(extra, dict) or extra.get("target_id") not in out:
        return
    history = out[extra["target_id"]]
    kind = extra.get("kind")
    try:
        if kind == "cycle":
            history.cycles.append(CycleRecord.model_validate(extra))
        elif kind == "breaker_reset":
            history.resets.append(BreakerResetRecord.model_validate(extra))
    except ValidationError:
        history.unreadable += 1


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


def _ledger(history: TargetHistory) -> Ledger:
    return History(cycles=history.cycles, resets=history.resets).ledger()


def failure_streak(history: TargetHistory) -> int:
    """Consecutive failed attempts since the last breaker reset, as the guardrails count them."""
    from leviathan_lib.cycle import failure_streak as streak
    from leviathan_lib.cycle import guardrail_inputs

    ledger = _ledger(history)
    attempts, _ = guardrail_inputs(ledger)
    return streak(attempts, ledger.breaker_reset_at)


def open_prs(history: TargetHistory) -> list[dict[str, Any]]:
    """PRs Leviathan opened that no later cycle saw merged or closed."""
    return [pr.model_dump() for pr in _ledger(history).open_prs]


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


class Overview(BaseModel):
    global_enabled: bool
    global_detail: str
    targets: list[TargetState]


def overview() -> tuple[Overview, dict[str, TargetHistory], dict[str, TargetConfig]]:
    targets = configured_targets()
    found = histories(set(targets))
    paused = paused_dags([t.dag_id for t in targets.values()])
    enabled, detail = global_switch()
    states = []
    for tid in sorted(targets):
        target, history = targets[tid], found[tid]
        streak = failure_streak(history)
        breaker_open = streak >= target.circuit_breaker_failures
        last = history.cycles[-1] if history.cycles else None
        dag_paused = paused.get(target.dag_id)
        states.append(TargetState(
            target_id=tid, dag_id=target.dag_id, target_flag=target.autonomy_enabled, dag_paused=dag_paused,
            breaker_open=breaker_open, consecutive_failures=streak,
            breaker_threshold=target.circuit_breaker_failures,
            effective_enabled=enabled and target.autonomy_enabled and dag_paused is False and not breaker_open,
            last_cycle_at=last.recorded_at if last else None, last_decision=last.decision if last else None,
            last_stopped_reason=last.stopped_reason if last else None, last_reasons=last.reasons if last else [],
            open_prs=open_prs(history), unreadable_records=history.unreadable,
        ))
    return Overview(global_enabled=enabled, global_detail=detail, targets=states), found, targets
