"""Evidence retention: delete old evidence records, never those the guardrails still need.

Kept regardless of age: each target's newest record, its newest record carrying a ledger (what the
guardrails know of all older history) and its newest carrying running totals (Spider's counters, so
pruning never lowers one), the newest breaker reset per target, the newest ``keep_attempts`` attempt
records per task and every PR merged/closed record (for people reading the history; the ledger
already summarises them).
``airflow db clean`` must not be pointed at the ``asset_event`` table (see docs/evidence.md).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any


def _kept(rows: list[tuple[int, datetime, str | None, Any]], keep_attempts: int) -> set[int]:
    """The row ids kept regardless of age (see the module docstring); ``rows`` oldest first."""
    keep: set[int] = set()
    attempts_seen: dict[tuple[str, str], int] = defaultdict(int)
    newest: dict[tuple[str, str], int] = {}  # (target, what) -> the newest row holding it
    for row_id, _ts, _run, extra in reversed(rows):  # newest first
        if not isinstance(extra, dict):
            continue
        target = str(extra.get("target_id"))
        newest.setdefault((target, "record"), row_id)
        if extra.get("kind") == "breaker_reset":
            newest.setdefault((target, "reset"), row_id)
        for carried in ("ledger", "totals"):
            if extra.get(carried) is not None:
                newest.setdefault((target, carried), row_id)
        if extra.get("pr_sync"):
            keep.add(row_id)
        attempt = extra.get("attempt")
        if isinstance(attempt, dict):
            key = (target, str(attempt.get("task_id")))
            attempts_seen[key] += 1
            if attempts_seen[key] <= keep_attempts:
                keep.add(row_id)
    return keep | set(newest.values())


def prune(*, older_than: timedelta, keep_attempts: int, dry_run: bool = False) -> int:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    from leviathan_lib.control.evidence_db import record_rows

    cutoff = datetime.now(UTC) - older_than
    rows, after = [], 0
    for _ in range(10_000):
        page = record_rows(after_row=after)
        if not page:
            break
        rows.extend(page)
        after = page[-1][0]
    keep = _kept(rows, keep_attempts)
    doomed = [row_id for row_id, ts, _run, _extra in rows
              if row_id not in keep and ts.replace(tzinfo=ts.tzinfo or UTC) < cutoff]
    if doomed and not dry_run:
        with create_session() as session:
            for start in range(0, len(doomed), 500):
                session.execute(delete(AssetEvent).where(AssetEvent.id.in_(doomed[start:start + 500])))
    return len(doomed)
