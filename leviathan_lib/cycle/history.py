"""The history the guardrails decide on: a bounded window of evidence, or the whole fold when it must be.

A live cycle reads only the newest events: the newest record's ledger summarises everything older and
its totals count every earlier cycle, so a cycle's cost does not grow with the target's age. It reads
the newest events of the last :data:`NEWEST_WITHIN` first (one request when the target ran lately, however
young or old it is), then :data:`NEWEST_EVENTS`, and the wider :data:`RECENT_EVENTS` only when those hold
no ledger or no totals. A replay, a window without any ledger (records older than the ledger), a window with an
unreadable record, or a newest cycle that stopped for one, folds every event instead (fails closed:
until an operator removes the record, every cycle stops again). A window without totals (records older
than the totals) reads every event once to count them; every later record carries them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from leviathan_lib.evidence.records import History, Ledger, Totals, parse_records

#: Newest evidence events read first (the cycle and Spider): the newest cycle record is among them unless
#: operators wrote many breaker resets or switch changes since.
NEWEST_EVENTS = 16
#: The age of the events read first: a target that ran within it has its newest record there.
NEWEST_WITHIN = timedelta(hours=2)
#: The wider window read when the newest events hold no ledger or totals.
RECENT_EVENTS = 200
#: The stop code of a cycle whose history holds a record that does not validate.
HISTORY_UNREADABLE = "history_unreadable"

#: One stored evidence event: the run that emitted it and its ``extra`` (the record).
Event = tuple[str | None, Any]


class EventSource(Protocol):
    """A target's evidence events (Airflow's inlet events, or a list in tests)."""

    def newest(self, limit: int) -> list[Event]:
        """The newest ``limit`` events, newest first."""

    def recent(self, limit: int, within: timedelta) -> list[Event]:
        """The newest ``limit`` events no older than ``within``, newest first (older ones may exist)."""

    def everything(self) -> Iterable[Event]:
        """Every event, oldest first."""


class Window(NamedTuple):
    """What the guardrails read: the records, the ledger and the totals before run ``run_id``."""

    history: History
    ledger: Ledger
    totals: Totals | None


def _window(recent: list[Event], run_id: str, *, complete: bool) -> Window | None:
    """The window ``recent`` (newest first; ``complete``: nothing older exists) gives, or None when it
    cannot tell (read further back)."""
    history = parse_records(list(reversed(recent)))
    newest = next((r for r in reversed(history.cycles) if r.dag_run_id != run_id), None)
    if history.unreadable or (newest is not None and newest.stopped_reason == HISTORY_UNREADABLE):
        return None
    ledger = history.latest_ledger(exclude_run_id=run_id)
    if ledger is None and complete:
        ledger = history.ledger(exclude_run_id=run_id)  # the whole history fits the window
    if ledger is None:
        return None
    return Window(history, ledger, history.totals(exclude_run_id=run_id, complete=complete))


def history_window(events: EventSource, run_id: str, as_of: datetime | None) -> Window:
    """The history, the ledger and the running totals (without run ``run_id``'s own record)."""
    if as_of is None:
        recent = events.recent(NEWEST_EVENTS, NEWEST_WITHIN)
        window = _window(recent, run_id, complete=False)
        if window is not None and window.totals is not None:
            return window
        # Held NEWEST_EVENTS: they are the newest NEWEST_EVENTS, read again only in the wider window.
        limits = (RECENT_EVENTS,) if len(recent) >= NEWEST_EVENTS else (NEWEST_EVENTS, RECENT_EVENTS)
        for limit in limits:
            recent = events.newest(limit)
            window = _window(recent, run_id, complete=len(recent) < limit)
            if window is not None and window.totals is None and limit == RECENT_EVENTS:
                # Records from before the totals: count every event once; every later record carries them.
                counted = parse_records(list(events.everything())).totals(exclude_run_id=run_id, complete=True)
                return window._replace(totals=counted)
            if window is not None and window.totals is not None:
                return window
            if len(recent) < limit:
                break  # the whole history was read: a wider window holds nothing more
    history = parse_records(list(events.everything()))
    return Window(history, history.ledger(exclude_run_id=run_id, until=as_of),
                  history.totals(exclude_run_id=run_id, complete=True))
