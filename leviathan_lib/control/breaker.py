"""An operator closes a target's circuit breaker, or the fleet breaker, on the record.

A target's reset is an event on the target's evidence asset (the same place cycles record to), so the next
cycle's guardrails see it and the UI's asset view shows who reset it, when and why. The fleet breaker's
is an event on its own asset (``leviathan://fleet/breaker``), which every cycle reads. Like the ``airflow``
CLI, this runs where Airflow's configuration (and so its metadata DB) is.
"""

from __future__ import annotations

from datetime import UTC, datetime

from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.names import FLEET_BREAKER_ASSET_NAME, FLEET_BREAKER_ASSET_URI, evidence_asset_uri
from leviathan_lib.evidence.records import BreakerResetRecord, FleetBreakerResetRecord


def reset_breaker(target_id: str, *, by: str, reason: str) -> BreakerResetRecord:
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    record = BreakerResetRecord(target_id=target_id, reset_at=datetime.now(UTC), by=by, reason=reason)
    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == evidence_asset_uri(target_id)))
        if asset is None:
            raise ValidationFailed([Problem("--target", "target_id", f"no evidence asset for target {target_id!r} "
                                            "(unknown target, or its DAG was never parsed)")])
        asset_manager.register_asset_change(asset=asset, extra=record.model_dump(mode="json"), session=session)
    return record


def reset_fleet_breaker(*, by: str, reason: str) -> FleetBreakerResetRecord:
    """Close the fleet breaker: attempts before now no longer count, and no target's stop for it stands."""
    from airflow.assets.manager import asset_manager
    from airflow.utils.session import create_session

    from leviathan_lib.control.switch import asset_at

    if not reason.strip():
        raise ValidationFailed([Problem("--reason", "reason", "say why the fleet may try again (it is evidence)")])
    record = FleetBreakerResetRecord(reset_at=datetime.now(UTC), by=by, reason=reason)
    with create_session() as session:
        asset = asset_at(session, FLEET_BREAKER_ASSET_URI, FLEET_BREAKER_ASSET_NAME)
        event = asset_manager.register_asset_change(asset=asset, extra=record.model_dump(mode="json"),
                                                    session=session)
        if event is None:
            raise RuntimeError(f"could not record the fleet breaker reset on {FLEET_BREAKER_ASSET_URI}")
    return record


def fleet_breaker_reset() -> FleetBreakerResetRecord | None:
    """The newest fleet breaker reset, as the cycle reads it (the fleet breaker asset's newest events)."""
    from leviathan_lib.control.evidence_db import newest_rows_of
    from leviathan_lib.evidence.switches import NEWEST_FLEET_RESETS, newest_fleet_reset

    return newest_fleet_reset([extra for _id, _ts, extra in newest_rows_of(FLEET_BREAKER_ASSET_URI,
                                                                            NEWEST_FLEET_RESETS)])
