"""The scorecard from the metadata DB: each target's newest running totals and, for "since T", the newest
totals stored at or before T; :mod:`leviathan_lib.evidence.scorecard` does the arithmetic.

Reads the newest events per target as the fleet overview does (:func:`~leviathan_lib.control.fleet.read_evidence`)
and, for ``since``, at most :data:`~leviathan_lib.cycle.history.RECENT_EVENTS` events per target before it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from leviathan_lib.control.evidence_db import newest_rows_of
from leviathan_lib.control.fleet import read_evidence
from leviathan_lib.core.names import evidence_asset_uri
from leviathan_lib.cycle.history import RECENT_EVENTS
from leviathan_lib.evidence.records import Totals, parse_records
from leviathan_lib.evidence.scorecard import SCORECARD_VERSION, Scorecard, combine, scorecard

#: Why a target has no scorecard when its newest records carry no totals.
NO_TOTALS = "no running totals in its newest records yet (the next cycle records them)"


class ScorecardReport(BaseModel):
    """Every target's scorecard, the fleet's (their sum), and the targets whose scorecard is unknown (why)."""

    since: datetime | None = None
    targets: list[Scorecard] = Field(default_factory=list)
    fleet: Scorecard = Field(default_factory=Scorecard)
    unknown: dict[str, str] = Field(default_factory=dict)

    def document(self) -> dict[str, object]:
        """``leviathan scorecard --json``: a stable document (``scorecard_version``)."""
        return {"scorecard_version": SCORECARD_VERSION,
                "since": self.since.isoformat(timespec="seconds") if self.since else None,
                "fleet": self.fleet.document(), "targets": [card.document() for card in self.targets],
                "unknown": [{"target_id": tid, "problem": why} for tid, why in sorted(self.unknown.items())]}


class TotalsUnknown(Exception):
    """A target's totals at a time cannot be told from its newest records before it."""


def totals_at(target_id: str, at: datetime) -> Totals | None:
    """The running totals after the newest record stored at or before ``at`` (None: no record is that old)."""
    rows = newest_rows_of(evidence_asset_uri(target_id), RECENT_EVENTS, until=at)
    if not rows:
        return None
    totals = parse_records([(None, extra) for _id, _ts, extra in reversed(rows)]).totals(
        complete=len(rows) < RECENT_EVENTS)
    if totals is None:
        raise TotalsUnknown(f"none of its newest {RECENT_EVENTS} records before {at.isoformat()} carries totals")
    return totals


def from_totals(newest: dict[str, Totals | None], *, since: datetime | None = None,
                before: dict[str, Totals | None] | None = None, unknown: dict[str, str] | None = None
                ) -> ScorecardReport:
    """The report for these targets' newest totals (minus ``before``, the totals at ``since``)."""
    unknown = dict(unknown or {})
    cards = []
    for tid in sorted(newest):
        totals = newest[tid]
        if tid in unknown:
            continue
        if totals is None:
            unknown[tid] = NO_TOTALS
            continue
        cards.append(scorecard(tid, totals, (before or {}).get(tid), since=since))
    return ScorecardReport(since=since, targets=cards, fleet=combine(cards), unknown=unknown)


def report(target_ids: set[str], since: datetime | None = None) -> ScorecardReport:
    """The scorecard of these targets, over all time or since ``since``."""
    newest = {tid: evidence.totals for tid, evidence in read_evidence(target_ids).items()}
    before: dict[str, Totals | None] = {}
    unknown: dict[str, str] = {}
    if since is not None:
        for tid in sorted(t for t, totals in newest.items() if totals is not None):
            try:
                before[tid] = totals_at(tid, since)
            except TotalsUnknown as exc:
                unknown[tid] = str(exc)
    return from_totals(newest, since=since, before=before, unknown=unknown)
