"""An operator closes a target's circuit breaker, on the record.

The reset is an event on the target's evidence asset (the same place cycles record to), so the next
cycle's guardrails see it and the UI's asset view shows who reset it, when and why. Like the ``airflow``
CLI, this runs where Airflow's configuration (and so its metadata DB) is.
"""

from __future__ import annotations

from datetime import UTC, datetime

from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.names import evidence_asset_uri
from leviathan_lib.evidence.records import BreakerResetRecord


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
