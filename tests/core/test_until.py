"""The until texts: when a time-bound skip ends, in one wording (core.until)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from leviathan_lib.core import until

NOW = datetime(2026, 12, 7, 13, 30, tzinfo=UTC)


def test_clock_rounds_up_to_the_minute_and_names_the_day_only_when_it_differs():
    assert until.clock(datetime(2026, 12, 7, 14, 5, tzinfo=UTC), NOW) == "14:05 UTC"
    assert until.clock(datetime(2026, 12, 7, 14, 5, 0, 1, tzinfo=UTC), NOW) == "14:06 UTC"
    assert until.clock(datetime(2026, 12, 7, 23, 59, 30, tzinfo=UTC), NOW) == "2026-12-08 00:00 UTC"
    berlin = datetime(2026, 12, 7, 16, 5, tzinfo=ZoneInfo("Europe/Berlin"))  # always said in UTC
    assert until.clock(berlin, NOW) == "15:05 UTC"


def test_the_next_pr_waits_for_the_oldest_pr_whose_leaving_frees_a_place():
    opened = [NOW - timedelta(minutes=m) for m in (85, 50, 20, 5)]  # the 85-minute-old one no longer counts
    assert until.next_pr_at(opened, now=NOW, limit=4) is None
    assert until.next_pr_at(opened, now=NOW, limit=3) == NOW - timedelta(minutes=50) + until.HOUR
    assert until.next_pr_at(opened, now=NOW, limit=2) == NOW - timedelta(minutes=20) + until.HOUR
    assert until.next_pr_after(NOW + timedelta(minutes=35), NOW) == "next PR after 14:05 UTC"
    # exactly an hour old: out of the window (the guardrails count (now - 1 h, now])
    assert until.next_pr_at([NOW - until.HOUR], now=NOW, limit=1) is None


def test_the_model_budget_frees_when_enough_of_the_oldest_spend_leaves_the_day():
    costs = [(NOW - timedelta(hours=30), 9.0), (NOW - timedelta(hours=20), 0.6), (NOW - timedelta(hours=10), 0.3),
             (NOW - timedelta(hours=1), 0.3)]
    assert until.budget_frees_at(costs, now=NOW, budget=1.5) is None  # 1.2 spent in the window
    assert until.budget_frees_at(costs, now=NOW, budget=1.0) == NOW + timedelta(hours=4)  # 0.6 leaves: 0.6 left
    assert until.budget_frees_at(costs, now=NOW, budget=0.5) == NOW + timedelta(hours=14)  # then 0.3 left
    assert until.budget_frees_at(costs, now=NOW, budget=0.2) == NOW + timedelta(hours=23)
    assert until.budget_until(NOW + timedelta(hours=4), NOW) == "next model attempt after 17:30 UTC"


def test_a_waiting_gate_says_since_when_and_when_it_rejects():
    since, rejects = NOW - timedelta(minutes=10), NOW + timedelta(hours=24)
    assert until.awaiting_approval(since, rejects, NOW) == (
        "awaiting approval since 13:20 UTC; rejected without an answer after 2026-12-08 13:30 UTC")
    assert until.awaiting_approval(since, None, NOW) == "awaiting approval since 13:20 UTC"
