"""Read Leviathan's evidence from the Airflow metadata DB (operator tools and the API-server plugin).

Task code never uses this (the Task SDK forbids direct DB access there); it reads history through its
inlet events. Operators' tools run where Airflow's configuration is, like the ``airflow`` CLI does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from leviathan_lib.evidence.events import EVENTS_PER_RECORD, Event, events_from

URI_PREFIX = "leviathan://"
MAX_PAGE = 1000


def record_rows(
    *, after_row: int = 0, target_id: str | None = None, since: datetime | None = None, limit: int = MAX_PAGE,
) -> list[tuple[int, datetime, str | None, Any]]:
    """Evidence asset events, ascending: ``(asset_event_id, timestamp, source_run_id, extra)``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    pattern = f"{URI_PREFIX}targets/{target_id}/%" if target_id else f"{URI_PREFIX}%"
    query = (
        select(AssetEvent.id, AssetEvent.timestamp, AssetEvent.source_run_id, AssetEvent.extra)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetModel.uri.like(pattern), AssetEvent.id > after_row)
        .order_by(AssetEvent.id)
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    if since is not None:
        query = query.where(AssetEvent.timestamp >= since)
    with create_session() as session:
        return [tuple(row) for row in session.execute(query).all()]


def read_events(*, after: int = 0, limit: int = 500, target_id: str | None = None) -> list[Event]:
    """Events with id > ``after``, oldest first, at most ``limit`` (bounded pages for slow clients)."""
    limit = max(1, min(limit, MAX_PAGE))
    after_row = max(0, after) // EVENTS_PER_RECORD - 1  # that record may still hold later events
    events: list[Event] = []
    while len(events) < limit:
        rows = record_rows(after_row=after_row, target_id=target_id, limit=limit)
        if not rows:
            break
        events.extend(e for e in events_from(rows) if e.id > after)
        after_row = rows[-1][0]
    return events[:limit]
