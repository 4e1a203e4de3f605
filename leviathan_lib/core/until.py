"""Until when a time-bound stop lasts, in words: the one home of that wording.

A skip that ends by itself (the hourly PR limit, the daily model budget, an approval's timeout) says when
it ends; one that ends only by a human (the circuit breaker) says who ends it. The guardrails put these
texts in their checks' details, so ``leviathan plan``, the ``plan`` task log, the dashboard issue and the
Leviathan view all print the same words. Pure: the caller hands in the times.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)
#: How the circuit breaker ends: never by itself.
BREAKER_UNTIL = "open until an operator resets it (`leviathan breaker reset` or the view's Reset breaker)"


def clock(at: datetime, now: datetime | None = None) -> str:
    """``14:05 UTC`` on the day of ``now`` (default: ``at``'s day), else ``2026-12-07 14:05 UTC``; rounded up to
    the minute, so "after" it is always true."""
    at = at.astimezone(UTC)
    if at.second or at.microsecond:
        at = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    same_day = now is None or at.date() == now.astimezone(UTC).date()
    return f"{at:%H:%M} UTC" if same_day else f"{at:%Y-%m-%d %H:%M} UTC"


def next_pr_at(opened_at: Iterable[datetime], *, now: datetime, limit: int) -> datetime | None:
    """When the hourly window (``now - 1 h``, ``now``] holds fewer than ``limit`` PRs again; None: it does now."""
    recent = sorted(at for at in opened_at if now - HOUR < at <= now)
    if len(recent) < limit:
        return None
    return recent[len(recent) - limit] + HOUR  # the oldest PR whose leaving frees a place


def next_pr_after(at: datetime, now: datetime) -> str:
    """``pr_hourly_limit``'s until text."""
    return f"next PR after {clock(at, now)}"


def budget_frees_at(costs: Iterable[tuple[datetime, float]], *, now: datetime, budget: float) -> datetime | None:
    """When the model spend of the 24 h before then drops under ``budget`` (> 0) again, from the attempts'
    ``(finished_at, cost)``: when the oldest attempts whose leaving is enough leave the window. None: it is
    under it now."""
    window = sorted((at, cost) for at, cost in costs if at > now - DAY)
    if sum(cost for _, cost in window) < budget:
        return None
    # The rest summed afresh (no float drift); the last attempt always qualifies: nothing after it is spent.
    return next(at + DAY for index, (at, _) in enumerate(window)
                if sum(cost for _, cost in window[index + 1:]) < budget)


def budget_until(at: datetime, now: datetime) -> str:
    """``llm_budget_exhausted``'s until text."""
    return f"next model attempt after {clock(at, now)}"


def awaiting_approval(since: datetime, rejects_at: datetime | None, now: datetime) -> str:
    """A gate waiting for its answer: since when, and when it rejects without one."""
    text = f"awaiting approval since {clock(since, now)}"
    return text + (f"; rejected without an answer after {clock(rejects_at, now)}" if rejects_at else "")
