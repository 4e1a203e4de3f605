"""Load spreading: ``H`` and the default jitter give each target a stable slot, spread over the interval."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import pytest
from croniter import croniter

from leviathan_lib.core.config import parse_target
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.schedule import check, offset, spread

IDS = [f"target-{i:03d}" for i in range(300)]
START = datetime(2026, 3, 1, tzinfo=UTC)


def _fire_minutes(cron: str, count: int) -> list[int]:
    """Minutes past the hour of the next ``count`` fire times (croniter, as Airflow's cron timetable)."""
    it = croniter(cron, START)
    return [it.get_next(datetime).minute for _ in range(count)]


def test_the_slot_is_stable_across_calls_and_processes():
    here = [spread("H/5 H * * *", tid) for tid in IDS[:20]]
    assert here == [spread("H/5 H * * *", tid) for tid in IDS[:20]]
    code = ("from leviathan_lib.core.schedule import spread\n"
            "print([spread('H/5 H * * *', f'target-{i:03d}') for i in range(20)])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other.strip() == str(here)  # SHA-256, not Python's per-process salted hash()


def test_default_every_five_minutes_spreads_roughly_uniformly_within_the_interval():
    slots = Counter()
    for tid in IDS:
        cron = spread("*/5 * * * *", tid)
        minutes = _fire_minutes(cron, 24)
        first = minutes[0] % 5
        assert all(m % 5 == first for m in minutes), cron  # every 5 minutes, always on the same slot
        assert sorted(set(minutes)) == list(range(first, 60, 5))  # 12 runs an hour, none lost at the wrap
        slots[first] += 1
    assert set(slots) == set(range(5))
    assert all(40 <= n <= 80 for n in slots.values()), slots  # 60 expected per slot


def test_hourly_h_spreads_over_the_whole_hour():
    minutes = Counter(int(spread("H * * * *", tid).split()[0]) for tid in IDS)
    assert all(0 <= m <= 59 for m in minutes)
    per_ten = Counter(m // 10 for m in minutes.elements())
    assert all(30 <= per_ten[k] <= 70 for k in range(6)), per_ten  # 50 expected per 10 minutes


def test_hashed_ranges_and_steps_stay_within_their_bounds():
    for tid in IDS[:100]:
        minute, hour, day, month, weekday = spread("H(0-29)/10 H(8-17) H H H", tid).split()
        first, _, step = minute.partition("/")
        assert step == "10" and first.endswith("-29") and 0 <= int(first.split("-")[0]) <= 9
        assert 8 <= int(hour) <= 17 and 1 <= int(day) <= 28 and 1 <= int(month) <= 12 and 0 <= int(weekday) <= 6
        assert croniter.is_valid(spread("H(0-29)/10 H(8-17) H H H", tid))
    # Fields are hashed independently: the hour does not follow from the minute.
    assert len({spread("H H * * *", tid) for tid in IDS}) > 250


@pytest.mark.parametrize("cron", ["0 0 * * *", "*/7 * * * *", "15,45 * * * *", "@daily", "0 9 * * MON-THU"])
def test_explicit_crons_are_used_as_written(cron):
    assert spread(cron, "alpha") == cron


def test_jitter_off_keeps_a_plain_cron_exact_but_still_resolves_h():
    assert spread("*/5 * * * *", "alpha", jitter=False) == "*/5 * * * *"
    assert spread("H/5 * * * *", "alpha", jitter=False) == f"{offset('alpha', 'minute', 5)}-59/5 * * * *"


@pytest.mark.parametrize(("cron", "message"), [
    ("H/0 * * * *", "minute field 'H/0': the step must be between 1 and 60"),
    ("H(5-70) * * * *", "minute field 'H(5-70)': the range must lie within 0-59"),
    ("0 H(3-1) * * *", "hour field 'H(3-1)': the range must lie within 0-23"),
    ("Hx * * * *", "minute field 'Hx': H takes the forms H, H/n, H(a-b) or H(a-b)/n"),
    ("H * *", "H needs the five cron fields"),
    ("61 * * * *", "not a valid cron expression: '61 * * * *'"),
])
def test_bad_schedules_say_which_field_and_what_is_expected(cron, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        check(cron)


def test_target_files_get_the_spread_schedule_and_can_opt_out():
    base = "target_id: {tid}\ntarget_repo_url: /srv/x.git\n"
    default = parse_target(base.format(tid="alpha"), "alpha.yaml")
    assert default.schedule_cron == "*/5 * * * *" and default.schedule_jitter is True
    assert default.effective_schedule == spread("*/5 * * * *", "alpha")
    exact = parse_target(base.format(tid="alpha") + "schedule_jitter: false\n", "alpha.yaml")
    assert exact.effective_schedule == "*/5 * * * *"
    hashed = parse_target(base.format(tid="alpha") + 'schedule_cron: "H H(1-5) * * *"\n', "alpha.yaml")
    assert hashed.effective_schedule == spread("H H(1-5) * * *", "alpha")
    with pytest.raises(ValidationFailed) as err:
        parse_target(base.format(tid="alpha") + 'schedule_cron: "H/0 * * * *"\n', "alpha.yaml")
    assert "alpha.yaml:3: schedule_cron: minute field 'H/0': the step must be between 1 and 60" in str(err.value)
