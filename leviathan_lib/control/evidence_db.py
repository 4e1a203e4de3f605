"""Read Leviathan's evidence from the Airflow metadata DB (operator tools and the API-server plugin).

Task code never uses this (the Task SDK forbids direct DB access there); it reads history through its
inlet events. Operators' tools run where Airflow's configuration is, like the ``airflow`` CLI does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from leviathan_lib.core.names import change_asset_uri
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
        .where(AssetModel.uri.like(pattern), AssetModel.uri.not_like(change_asset_uri("%")),  # wake-ups
               AssetEvent.id > after_row)
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


def newest_rows_of(uri: str, limit: int, *, until: datetime | None = None) -> list[tuple[int, datetime, Any]]:
    """One asset's newest ``limit`` events (stored at or before ``until``), newest first:
    ``(asset_event_id, timestamp, extra)``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = (select(AssetEvent.id, AssetEvent.timestamp, AssetEvent.extra)
             .join(AssetModel, AssetModel.id == AssetEvent.asset_id).where(AssetModel.uri == uri)
             .order_by(AssetEvent.timestamp.desc(), AssetEvent.id.desc()).limit(max(1, limit)))
    if until is not None:
        query = query.where(AssetEvent.timestamp <= until)
    with create_session() as session:
        rows = session.execute(query).all()
    return [tuple(row) for row in rows]


def newest_rows(target_ids: set[str], limit: int) -> dict[str, list[tuple[str | None, Any]]]:
    """Each target's newest ``limit`` evidence events, newest first: ``target_id -> [(run_id, extra)]``.

    One statement for all targets whatever the history's length: on PostgreSQL a LATERAL subquery per
    evidence asset walks Airflow's ``idx_asset_id_timestamp`` (asset_id, timestamp) index backwards, so
    it reads about ``limit`` rows per target; SQLite (the embedded demo) has no LATERAL and runs the same
    index-served subquery once per target.
    """
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select, true

    from leviathan_lib.core.names import evidence_asset_uri

    uris = {evidence_asset_uri(tid): tid for tid in target_ids}
    found: dict[str, list[tuple[str | None, Any]]] = {tid: [] for tid in target_ids}
    if not uris:
        return found
    limit = max(1, limit)

    def newest(asset_id: Any) -> Any:
        return (select(AssetEvent.id, AssetEvent.timestamp, AssetEvent.source_run_id, AssetEvent.extra)
                .where(AssetEvent.asset_id == asset_id)
                .order_by(AssetEvent.timestamp.desc(), AssetEvent.id.desc()).limit(limit))

    rows: Any
    with create_session() as session:
        if session.get_bind().dialect.name == "postgresql":
            events = newest(AssetModel.id).correlate(AssetModel).lateral("newest")
            rows = session.execute(
                select(AssetModel.uri, events.c.source_run_id, events.c.extra)
                .select_from(AssetModel).join(events, true()).where(AssetModel.uri.in_(uris))
                .order_by(AssetModel.id, events.c.timestamp.desc(), events.c.id.desc())).all()
        else:
            assets = session.execute(select(AssetModel.id, AssetModel.uri).where(AssetModel.uri.in_(uris))).all()
            rows = [(uri, run, extra) for asset_id, uri in assets
                    for _id, _ts, run, extra in session.execute(newest(asset_id)).all()]
    for uri, run_id, extra in rows:
        found[uris[uri]].append((run_id, extra))
    return found
