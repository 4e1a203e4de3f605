"""The history the guardrails decide on: a bounded window of evidence, or the whole fold when it must be.

A live cycle reads only the newest events: the newest record's ledger summarises everything older and
its totals count every earlier cycle, so a cycle's cost does not grow with the target's age. A replay,
a window without any ledger (records older than the ledger) or a window with an unreadable record folds
every event instead (fails closed); a window without totals (records older than the totals) reads every
event once to count them, and every later record carries them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from leviathan_lib.evidence.records import History, Ledger, Totals, parse_records

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


class Window(NamedTuple):
    """What the guardrails read: the records, the ledger and the totals before run ``run_id``."""

    history: History
    ledger: Ledger
    totals: Totals | None


def history_window(events: EventSource, run_id: str, as_of: datetime | None) -> Window:
    """The history, the ledger and the running totals (without run ``run_id``'s own record)."""
    if as_of is None:
        recent = events.newest(RECENT_EVENTS)
        history = parse_records(list(reversed(recent)))
        complete = len(recent) < RECENT_EVENTS
        ledger = history.latest_ledger(exclude_run_id=run_id)
        if ledger is None and complete:
            ledger = history.ledger(exclude_run_id=run_id)  # the whole history fits the window
        totals = history.totals(exclude_run_id=run_id, complete=complete)
        if ledger is not None and not history.unreadable:
            if totals is None:  # records from before the totals: count every event once
                totals = parse_records(list(events.everything())).totals(exclude_run_id=run_id, complete=True)
            return Window(history, ledger, totals)
    history = parse_records(list(events.everything()))
    return Window(history, history.ledger(exclude_run_id=run_id, until=as_of),
                  history.totals(exclude_run_id=run_id, complete=True))
