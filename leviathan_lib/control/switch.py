"""The autonomy switch: the global Variable and each target's DAG pause flag, every change on the record.

Both switches are read by the next cycle (the Variable by ``plan``, the pause flag by the
scheduler), so switching off is graceful: an attempt already running finishes, no new one starts.
Every change is an ``AutonomyChangedRecord`` on the ``leviathan://autonomy`` asset (one asset for all
switch changes, so the targets' evidence assets hold only what their guardrails parse).
"""

from __future__ import annotations

from datetime import UTC, datetime

from leviathan_lib.core.autonomy import GLOBAL_SWITCH_VARIABLE
from leviathan_lib.core.errors import CodedError
from leviathan_lib.evidence.records import AutonomyChangedRecord

AUTONOMY_ASSET_URI = "leviathan://autonomy"
AUTONOMY_ASSET_NAME = "leviathan_autonomy"


class UnknownTarget(CodedError, LookupError):
    """The target id is not configured, or its DAG was never parsed."""

    CODE = "unknown_target"


def _autonomy_asset(session):
    """The switch-change asset; created here because no DAG produces it (safe against a concurrent create)."""
    from airflow.models.asset import AssetModel
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    query = select(AssetModel).where(AssetModel.uri == AUTONOMY_ASSET_URI, AssetModel.name == AUTONOMY_ASSET_NAME)
    asset = session.scalar(query)
    if asset is None:
        try:
            with session.begin_nested():
                session.add(AssetModel(name=AUTONOMY_ASSET_NAME, uri=AUTONOMY_ASSET_URI, group="leviathan"))
        except IntegrityError:
            pass
        asset = session.scalar(query)
    return asset


def _record(session, record: AutonomyChangedRecord) -> None:
    from airflow.assets.manager import asset_manager

    event = asset_manager.register_asset_change(asset=_autonomy_asset(session), extra=record.model_dump(mode="json"),
                                                session=session)
    if event is None:
        raise RuntimeError(f"could not record the switch change on {AUTONOMY_ASSET_URI}")


def set_global(enabled: bool, *, by: str, reason: str) -> AutonomyChangedRecord:
    """Set the global switch Variable and record who changed it and why, in one transaction."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    record = AutonomyChangedRecord(target_id=None, enabled=enabled, changed_at=datetime.now(UTC), by=by,
                                   reason=reason)
    with create_session() as session:
        Variable.set(GLOBAL_SWITCH_VARIABLE, "true" if enabled else "false",
                     description="Leviathan global autonomy switch (true/false); missing means on",
                     session=session)
        _record(session, record)
    return record


def set_target(target_id: str, dag_id: str, enabled: bool, *, by: str, reason: str) -> AutonomyChangedRecord:
    """Pause (off) or unpause (on) a target's DAG and record the change."""
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
