"""The fleet view's evidence read is bounded, and says so when the bound cuts it (never silently)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leviathan_lib.control import fleet
from leviathan_lib.evidence.records import evidence_asset_uri

pytestmark = pytest.mark.usefixtures("airflow_db")


def _leviathan_rows() -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(select(func.count(AssetEvent.id)).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                              .where(AssetModel.uri.like("leviathan://%")))


def test_a_read_cut_at_max_rows_is_reported(monkeypatch):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = AssetModel(name="leviathan_evidence__bound", uri=evidence_asset_uri("bound"), group="leviathan")
        session.add(asset)
        session.flush()
        base = datetime.now(UTC) - timedelta(days=1)
        session.add_all(AssetEvent(asset_id=asset.id, extra={"target_id": "bound", "n": i}, source_run_id=f"r{i}",
                                   timestamp=base + timedelta(seconds=i)) for i in range(5))
    total = _leviathan_rows()

    monkeypatch.setattr(fleet, "MAX_ROWS", total)
    found, truncated = fleet.read_histories({"bound"})
    assert truncated is False
    assert len(found["bound"].cycles) + len(found["bound"].unreadable) == 5

    monkeypatch.setattr(fleet, "MAX_ROWS", total - 2)
    found, truncated = fleet.read_histories({"bound"})
    assert truncated is True  # the two newest rows are beyond the bound, and the caller is told
    assert len(found["bound"].cycles) + len(found["bound"].unreadable) == 3
