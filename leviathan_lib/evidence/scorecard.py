"""The scorecard: how Leviathan's PRs fare, per target and for the fleet, from the evidence alone.

Everything comes from the running :class:`~leviathan_lib.evidence.records.Totals` each cycle record carries, so
a scorecard costs the same at any age: all time is the newest totals; "since T" is the newest totals minus the
newest totals stored at or before T; the fleet is the sum of its targets. Rates whose denominator is zero are
None (shown "—"). The median time to merge is an estimate: the merge-time bucket (:data:`MERGE_BUCKETS`) that
holds the median, not an exact duration. Totals from before the scorecard counters read them as zero; the
counters count from ``scorecard_since``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from leviathan_lib.evidence.records import MERGE_BUCKETS, Totals

#: What "—" stands for: a rate or median with nothing to measure yet.
NONE = "—"
#: The JSON document's version (``leviathan scorecard --json``).
SCORECARD_VERSION = 1
#: :meth:`Scorecard.cells`' keys (the CLI's columns, upper-cased) and what they mean (the fleet page's headings).
LABELS = {"opened": "PRs opened", "merged": "Merged", "closed": "Closed unmerged", "reverted": "Reverted",
          "merge_rate": "Merge rate", "median_merge": "Median time to merge (estimate)",
          "checks_pass": "Checks passed before review", "ci_first_push": "CI passed on first push",
          "attempts_per_merged": "Attempts per merged PR", "cost_per_merged": "Model cost per merged PR"}


class Scorecard(BaseModel):
    """One target's (``target_id``) or the fleet's (None) counters over a window starting at ``since``."""

    target_id: str | None = None
    #: Counting starts here (the counters count what was recorded after it).
    since: datetime | None = None
    #: The scorecard-only counters (merged, closed, merge times, checks, CI, cost) count from here when it is
    #: later than ``since`` (older records did not keep them).
    scorecard_since: datetime | None = None
    prs_opened: int = 0
    prs_merged: int = 0
    prs_closed: int = 0
    prs_reverted: int = 0
    merge_counts: list[int] = Field(default_factory=lambda: [0] * (len(MERGE_BUCKETS) + 1))
    checks_ran: int = 0
    checks_passed: int = 0
    ci_passed: int = 0
    ci_failed: int = 0
    #: Attempts made (every outcome but ``checks_red_at_base``: no change was attempted then).
    attempts: int = 0
    cost_usd: float = 0.0

    @property
    def merge_rate(self) -> float | None:
        """Of the PRs humans decided on, the share merged."""
        return ratio(self.prs_merged, self.prs_merged + self.prs_closed)

    @property
    def checks_pass_rate(self) -> float | None:
        """Of the attempts whose change the repository's own checks ran on, the share where all passed."""
        return ratio(self.checks_passed, self.checks_ran)

    @property
    def ci_first_push_rate(self) -> float | None:
        """Of the decided PRs CI reported on, the share whose first push passed."""
        return ratio(self.ci_passed, self.ci_passed + self.ci_failed)

    @property
    def attempts_per_merged(self) -> float | None:
        return ratio(self.attempts, self.prs_merged)

    @property
    def cost_per_merged(self) -> float | None:
        return ratio(self.cost_usd, self.prs_merged)

    @property
    def median_merge(self) -> tuple[float, float | None] | None:
        """The bounds (seconds; None: no upper bound) of the buckets holding the median time to merge."""
        total = sum(self.merge_counts)
        if total == 0:
            return None
        low, high = _bucket_at(self.merge_counts, (total - 1) // 2), _bucket_at(self.merge_counts, total // 2)
        return (0.0, *MERGE_BUCKETS)[low], (*MERGE_BUCKETS, None)[high]

    def cells(self) -> dict[str, str]:
        """The scorecard in words, one cell per column (``leviathan scorecard`` and the fleet page)."""
        return {
            "opened": str(self.prs_opened), "merged": str(self.prs_merged), "closed": str(self.prs_closed),
            "reverted": str(self.prs_reverted),
            "merge_rate": _share(self.merge_rate, self.prs_merged, self.prs_merged + self.prs_closed),
            "median_merge": median_text(self.median_merge),
            "checks_pass": _share(self.checks_pass_rate, self.checks_passed, self.checks_ran),
            "ci_first_push": _share(self.ci_first_push_rate, self.ci_passed, self.ci_passed + self.ci_failed),
            "attempts_per_merged": NONE if self.attempts_per_merged is None else f"{self.attempts_per_merged:.1f}",
            "cost_per_merged": NONE if self.cost_per_merged is None else f"${self.cost_per_merged:.2f}",
        }

    def document(self) -> dict[str, Any]:
        """The stable JSON form: counts, and rates as fractions (null: nothing to measure)."""
        median = self.median_merge
        return {
            "target_id": self.target_id, "since": _iso(self.since), "scorecard_since": _iso(self.scorecard_since),
            "prs": {"opened": self.prs_opened, "merged": self.prs_merged, "closed": self.prs_closed,
                    "reverted": self.prs_reverted},
            "merge_rate": _round(self.merge_rate),
            "median_time_to_merge": None if median is None else {
                "low_seconds": median[0], "high_seconds": median[1], "estimate": "histogram bucket"},
            "merge_counts": {"buckets_seconds": list(MERGE_BUCKETS), "counts": list(self.merge_counts)},
            "checks_before_review": {"ran": self.checks_ran, "passed": self.checks_passed,
                                     "rate": _round(self.checks_pass_rate)},
            "ci_first_push": {"passed": self.ci_passed, "failed": self.ci_failed,
                              "rate": _round(self.ci_first_push_rate)},
            "attempts": self.attempts, "attempts_per_merged_pr": _round(self.attempts_per_merged),
            "cost_usd": round(self.cost_usd, 6), "cost_per_merged_pr_usd": _round(self.cost_per_merged),
        }


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when else None


def _share(rate: float | None, part: int, whole: int) -> str:
    return NONE if rate is None else f"{rate:.0%} ({part}/{whole})"


def _bucket_at(counts: list[int], index: int) -> int:
    """The bucket holding the ``index``-th smallest value (0-based) of a histogram."""
    seen = 0
    for bucket, count in enumerate(counts):
        seen += count
        if index < seen:
            return bucket
    raise ValueError(f"index {index} beyond the histogram's {seen} values")


def duration_text(seconds: float) -> str:
    """``10m``, ``4h``, ``2d``: a bucket bound in its largest whole unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def median_text(median: tuple[float, float | None] | None) -> str:
    """``≤ 10m``, ``1h–4h`` or ``> 30d``: the buckets holding the median (an estimate, never a point)."""
    if median is None:
        return NONE
    low, high = median
    if high is None:
        return f"> {duration_text(low)}"
    return f"≤ {duration_text(high)}" if low == 0 else f"{duration_text(low)}–{duration_text(high)}"


def _counters(totals: Totals) -> Scorecard:
    attempts = sum(n for outcome, n in totals.attempts.items() if outcome != "checks_red_at_base")
    return Scorecard(since=totals.since, scorecard_since=totals.scorecard_since, prs_opened=totals.prs_opened,
                     prs_merged=totals.prs_merged, prs_closed=totals.prs_closed, prs_reverted=totals.prs_reverted,
                     merge_counts=list(totals.merge_counts), checks_ran=totals.checks_ran,
                     checks_passed=totals.checks_passed, ci_passed=totals.ci_first_push.get("passed", 0),
                     ci_failed=totals.ci_first_push.get("failed", 0), attempts=attempts, cost_usd=totals.cost_usd)


def scorecard(target_id: str | None, newest: Totals, before: Totals | None = None, *,
              since: datetime | None = None) -> Scorecard:
    """``newest`` minus ``before`` (the newest totals stored at or before ``since``; None: count everything)."""
    card = _counters(newest)
    if before is None:
        return card.model_copy(update={"target_id": target_id})
    old = _counters(before)
    counts = {field: getattr(card, field) - getattr(old, field)
              for field in ("prs_opened", "prs_merged", "prs_closed", "prs_reverted", "checks_ran", "checks_passed",
                            "ci_passed", "ci_failed", "attempts")}
    return card.model_copy(update={
        **counts, "target_id": target_id, "since": since,
        "scorecard_since": since if before.scorecard_since is not None else newest.scorecard_since,
        "merge_counts": [a - b for a, b in zip(card.merge_counts, old.merge_counts, strict=True)],
        "cost_usd": round(card.cost_usd - old.cost_usd, 6)})


def combine(cards: Iterable[Scorecard]) -> Scorecard:
    """The fleet's scorecard: every count summed; it counts from the earliest ``since``, and its scorecard
    counters from the latest ``scorecard_since`` (before it, some target's were not counted)."""
    cards = list(cards)
    fleet = Scorecard(since=min((c.since for c in cards if c.since), default=None),
                      scorecard_since=max((c.scorecard_since for c in cards if c.scorecard_since), default=None))
    sums = {field: sum(getattr(c, field) for c in cards)
            for field in ("prs_opened", "prs_merged", "prs_closed", "prs_reverted", "checks_ran", "checks_passed",
                          "ci_passed", "ci_failed", "attempts")}
    merge_counts = [sum(column) for column in zip(*(c.merge_counts for c in cards), strict=True)] or fleet.merge_counts
    return fleet.model_copy(update={**sums, "merge_counts": merge_counts,
                                    "cost_usd": round(sum(c.cost_usd for c in cards), 6)})


def counts_later(card: Scorecard) -> bool:
    """Do the scorecard-only counters start later than the card's window (older records did not keep them)?"""
    return card.scorecard_since is not None and (card.since is None or card.scorecard_since > card.since)
