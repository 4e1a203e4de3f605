"""The autonomy switches: admin-only in every path, every change on the record (core/autonomy.py says why).

Both switches are read by the next cycle, so switching off is graceful: an attempt already running
finishes, no new one starts. A global change is an ``AutonomyChangedRecord`` on the ``leviathan://autonomy/global``
asset (the cycle reads the newest one beside the Variable); a target's is one on the target's own evidence
asset, where the target's ledger picks it up. Changes made with Airflow's own tools (the UI, the REST
API, the ``airflow`` CLI) are found in Airflow's audit log and recorded too, with who and how
(:func:`record_outside_changes`, on the asset ``leviathan://autonomy/outside``): as evidence, never as a switch.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from leviathan_lib.core.autonomy import GLOBAL_SWITCH_VARIABLE
from leviathan_lib.core.errors import CodedError
from leviathan_lib.core.names import (
    AUTONOMY_ASSET_NAME,
    AUTONOMY_ASSET_URI,
    DAG_ID_PREFIX,
    OUTSIDE_CHANGES_ASSET_NAME,
    OUTSIDE_CHANGES_ASSET_URI,
    dag_target_id,
    evidence_asset_uri,
)
from leviathan_lib.evidence.records import AutonomyChangedRecord
from leviathan_lib.evidence.switches import NEWEST_SWITCH_EVENTS, global_state

log = logging.getLogger(__name__)

#: Audit-log rows looked at per call (newest first after the last one recorded).
MAX_AUDIT_ROWS = 500


class UnknownTarget(CodedError, LookupError):
    """The target id is not configured, or its DAG was never parsed."""

    CODE = "unknown_target"


def asset_at(session: Any, uri: str, name: str | None = None) -> Any:
    """The asset at ``uri``; the switch asset is created here because no DAG may have declared it yet."""
    from airflow.models.asset import AssetModel
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    query = select(AssetModel).where(AssetModel.uri == uri)
    asset = session.scalar(query)
    if asset is None and name is not None:
        try:
            with session.begin_nested():
                session.add(AssetModel(name=name, uri=uri, group="leviathan"))
        except IntegrityError:
            pass
        asset = session.scalar(query)
    return asset


def _record(session: Any, record: AutonomyChangedRecord) -> None:
    from airflow.assets.manager import asset_manager

    if record.outside:
        asset = asset_at(session, OUTSIDE_CHANGES_ASSET_URI, OUTSIDE_CHANGES_ASSET_NAME)
    elif record.target_id is None:
        asset = asset_at(session, AUTONOMY_ASSET_URI, AUTONOMY_ASSET_NAME)
    else:
        asset = asset_at(session, evidence_asset_uri(record.target_id))
        if asset is None:
            raise UnknownTarget(f"target {record.target_id!r} has no evidence asset yet (its DAG was never parsed)")
    event = asset_manager.register_asset_change(asset=asset, extra=record.model_dump(mode="json"), session=session)
    if event is None:
        raise RuntimeError(f"could not record the switch change on {asset.uri}")


def read_global() -> tuple[bool, str]:
    """The global switch exactly as the cycle reads it (Spider, the CLI)."""
    from airflow.models.variable import Variable

    from leviathan_lib.control.evidence_db import newest_rows_of

    variable = Variable.get(GLOBAL_SWITCH_VARIABLE, default_var=None)
    reads = ([extra for _id, _ts, extra in newest_rows_of(AUTONOMY_ASSET_URI, n)] for n in NEWEST_SWITCH_EVENTS)
    return global_state(variable, reads)


def set_global(enabled: bool, *, by: str, reason: str) -> AutonomyChangedRecord:
    """Set the global switch Variable and record who changed it and why, in one transaction."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    record = AutonomyChangedRecord(target_id=None, enabled=enabled, changed_at=datetime.now(UTC), by=by,
                                   reason=reason)
    with create_session() as session:
        Variable.set(GLOBAL_SWITCH_VARIABLE, "true" if enabled else "false",
                     description="Leviathan global autonomy switch (true/false); missing means OFF. Change it in "
                                 "the Leviathan view (admins) or with `leviathan stop|resume`: a change made here "
                                 "alone does not switch autonomy on",
                     session=session)
        _record(session, record)
    return record


def set_target(target_id: str, dag_id: str, enabled: bool, *, by: str, reason: str) -> AutonomyChangedRecord:
    """Pause (off) or unpause (on) a target's DAG and record the change on the target's evidence."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    record = AutonomyChangedRecord(target_id=target_id, enabled=enabled, changed_at=datetime.now(UTC), by=by,
                                   reason=reason)
    with create_session() as session:
        dag = session.get(DagModel, dag_id)
        if dag is None:
            raise UnknownTarget(f"target {target_id!r} has no DAG {dag_id!r} yet (not parsed)")
        dag.is_paused = not enabled
        _record(session, record)
    return record


def _outside_change(row: Any) -> AutonomyChangedRecord | None:
    """The switch change an Airflow audit-log row shows, if it is one: a Leviathan DAG paused or unpaused,
    or the switch Variable set or deleted, with Airflow's own tools."""
    try:
        extra = json.loads(row.extra or "{}")
    except ValueError:
        extra = {}
    extra = extra if isinstance(extra, dict) else {}
    event = str(row.event or "")
    when = row.dttm or datetime.now(UTC)
    common = {"changed_at": when if when.tzinfo else when.replace(tzinfo=UTC), "by": row.owner or "unknown",
              "how": f"airflow:{event}", "outside": True, "log_id": row.id}
    if "is_paused" in extra or "pause" in event:
        paused = str(extra.get("is_paused", "unpause" not in event)).lower() in ("true", "1")
        target = dag_target_id(row.dag_id)
        what = f"DAG {row.dag_id}" if target else f"DAGs matching {str(extra.get('dag_id_pattern', '?'))[:100]!r}"
        if target is None and DAG_ID_PREFIX.rstrip("_") not in json.dumps(extra):
            return None
        return AutonomyChangedRecord(target_id=target, enabled=not paused,
                                     reason=f"{what} {'paused' if paused else 'unpaused'} outside Leviathan", **common)
    if "variable" in event and GLOBAL_SWITCH_VARIABLE in json.dumps(extra):
        done = "deleted" if "delete" in event else "set (Airflow's audit log does not keep the value)"
        return AutonomyChangedRecord(target_id=None, enabled=False,  # evidence only: it switches nothing on
                                     reason=f"Variable {GLOBAL_SWITCH_VARIABLE} {done} outside Leviathan", **common)
    return None


def record_outside_changes() -> list[AutonomyChangedRecord]:
    """Record every switch change made with Airflow's own tools since the last one recorded (bounded, each
    once: the audit-log row id is the cursor). Safe to call from any request: a failure is logged, not raised."""
    from airflow.models.log import Log
    from airflow.utils.session import create_session
    from sqlalchemy import and_, or_, select

    from leviathan_lib.control.evidence_db import newest_rows_of

    try:
        newest = newest_rows_of(OUTSIDE_CHANGES_ASSET_URI, 1)  # the audit-log row recorded last: the cursor
        extra = newest[0][2] if newest else None
        seen = (extra.get("log_id") or 0) if isinstance(extra, dict) else 0
        with create_session() as session:
            pauses = and_(or_(Log.event.like("%pause%"), Log.event.in_(("patch_dag", "patch_dags"))),
                          or_(Log.dag_id.like(f"{DAG_ID_PREFIX}%"), Log.dag_id.is_(None)))
            switch_variable = and_(Log.event.like("%variable%"), Log.extra.like(f"%{GLOBAL_SWITCH_VARIABLE}%"))
            rows = session.scalars(select(Log).where(Log.id > seen, or_(pauses, switch_variable))
                                   .order_by(Log.id.desc()).limit(MAX_AUDIT_ROWS)).all()
            found = [change for row in reversed(rows) if (change := _outside_change(row)) is not None]
            for change in found:
                _record(session, change)
    except Exception as exc:  # noqa: BLE001 — detection is best effort; the cycle fails closed on its own
        log.warning("could not look for switch changes outside Leviathan: %s", exc)
        return []
    for change in found:
        log.warning("switch changed outside Leviathan: %s by %s (%s)", change.reason, change.by, change.how)
    return found


def outside_changes(limit: int = 20) -> list[AutonomyChangedRecord]:
    """The newest switch changes made outside Leviathan (recorded by :func:`record_outside_changes`)."""
    from leviathan_lib.control.evidence_db import newest_rows_of

    found = []
    for _id, _ts, extra in newest_rows_of(OUTSIDE_CHANGES_ASSET_URI, limit):
        try:
            found.append(AutonomyChangedRecord.model_validate(extra))
        except ValueError:
            continue
    return found
