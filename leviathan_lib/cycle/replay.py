"""When a run replays instead of acting: a backfill, or a run someone triggered for a date long past.

A replay reads the backlog as it was then and records what the guardrails would have decided; it never
runs a worker or pushes (the world has moved on since that date). A scheduled run is never a replay, however
old its logical date: the one run the scheduler makes on unpausing a target (``catchup=False``) is dated at
the last missed tick, and it is an ordinary cycle on the branch tip, never a replay that could fail.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: Runs whose logical date is older than this are replays (audit), never actions.
REPLAY_AFTER = timedelta(hours=1)


def replay_time(run_type: str, logical_date: datetime | None, now: datetime) -> datetime | None:
    """The time to replay at, or None for a run that acts."""
    if logical_date is None:
        return None
    if run_type == "backfill" or (run_type == "manual" and logical_date < now - REPLAY_AFTER):
        return logical_date
    return None
