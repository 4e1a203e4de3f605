"""The history the guardrails decide on: a bounded window of evidence, or the whole fold when it must be.

A live cycle reads only the newest events: the newest record's ledger summarises everything older, so a
cycle's cost does not grow with the target's age. A replay, a window without any ledger (records older
than the ledger) or a window with an unreadable record folds every event instead (fails closed).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from leviathan_lib.evidence.records import History, Ledger, parse_records

#: Newest evidence events read per cycle; the newest record's ledger summarises everything older.
RECENT_EVENTS = 200

#: One stored evidence event: the run that emitted it and its ``extra`` (the record).
Event = tuple[str | None, Any]


class EventSource(Protocol):
    """A target's evidence events (Airflow's inlet events, or a list in tests)."""

    def newest(self, limit: int) -> list[Event]:
        """The newest ``limit`` events, newest first."""

    def everything(self) -> Iterable[Event]:
        """Every event, oldest first."""


def history_window(events: EventSource, run_id: str, as_of: datetime | None) -> tuple[History, Ledger]:
    """The history and the ledger (without run ``run_id``'s own record) the guardrails need."""
    if as_of is None:
        recent = events.newest(RECENT_EVENTS)
        history = parse_records(list(reversed(recent)))
        ledger = history.latest_ledger(exclude_run_id=run_id)
        if ledger is not None and not history.unreadable:
            return history, ledger
        if len(recent) < RECENT_EVENTS and not history.unreadable:
            return history, history.ledger(exclude_run_id=run_id)  # the whole history fits the window
    history = parse_records(list(events.everything()))
    return history, history.ledger(exclude_run_id=run_id, until=as_of)
