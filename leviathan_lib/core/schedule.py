"""Spread targets that share a cron across its interval, with a stable per-target offset (Jenkins' ``H``).

200 targets on ``*/5 * * * *`` would all start on the same tick; the scheduler, the executor slots and
the forge's rate limit then see every cycle at once. ``H`` in a cron field stands for a value derived
from a hash of the target id, so each target keeps the same slot on every parse, in every process, and
the targets spread roughly uniformly:

- ``H``: one value in the field's range (minute 0-59, hour 0-23, day 1-28, month 1-12, weekday 0-6);
- ``H/n``: every ``n`` starting at a hashed offset below ``n`` (``H/5`` → e.g. ``3-59/5``);
- ``H(a-b)`` and ``H(a-b)/n``: the same within ``a-b``.

With ``jitter`` (the ``schedule_jitter`` target key, on by default) a plain evenly dividing ``*/n``
minute field is read as ``H/n``; any other field (and a preset such as ``@daily``) is used as written.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

#: (name, lowest, highest) of the five cron fields; days stop at 28 so ``H`` is valid in every month.
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 28), ("month", 1, 12), ("weekday", 0, 6))
_HASHED = re.compile(r"^H(?:\((\d+)-(\d+)\))?(?:/(\d+))?$")
_EVERY_N_MINUTES = re.compile(r"^\*/(\d+)$")
FORMS = "H, H/n, H(a-b) or H(a-b)/n"


def offset(target_id: str, field: str, modulus: int) -> int:
    """A stable value in ``[0, modulus)`` for this target and field (SHA-256: the same in every process)."""
    digest = hashlib.sha256(f"{target_id}\0{field}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % modulus


def _expand_field(token: str, target_id: str, field: str, low: int, high: int) -> str:
    match = _HASHED.match(token)
    if match is None:
        raise ValueError(f"{field} field {token!r}: H takes the forms {FORMS}")
    start, end = (int(match[1]), int(match[2])) if match[1] else (low, high)
    if not low <= start <= end <= high:
        raise ValueError(f"{field} field {token!r}: the range must lie within {low}-{high}")
    if match[3] is None:
        return str(start + offset(target_id, field, end - start + 1))
    step = int(match[3])
    if not 1 <= step <= end - start + 1:
        raise ValueError(f"{field} field {token!r}: the step must be between 1 and {end - start + 1}")
    first = start + offset(target_id, field, step)
    return f"{first}-{end}/{step}"


def spread(cron: str, target_id: str, *, jitter: bool = True) -> str:
    """The plain cron Airflow runs for this target: ``H`` fields resolved, ``*/n`` minutes offset if ``jitter``."""
    fields = cron.split()
    if len(fields) != len(FIELDS):  # a preset such as "@daily": used as written; H needs the five fields
        if "H" in cron and not cron.startswith("@"):
            raise ValueError(f"H needs the five cron fields (minute hour day month weekday), got {len(fields)}")
        return cron
    if jitter:
        every = _EVERY_N_MINUTES.match(fields[0])
        if every and 1 < int(every[1]) <= 60 and 60 % int(every[1]) == 0:
            fields[0] = f"H/{every[1]}"
    out = []
    for token, (field, low, high) in zip(fields, FIELDS, strict=True):
        out.append(_expand_field(token, target_id, field, low, high) if token.startswith("H") else token)
    return " ".join(out)


def check(cron: str) -> str:
    """Validate a ``schedule_cron`` value (with or without ``H``); return it unchanged, or raise ValueError."""
    from croniter import croniter  # imported here: the core's import stays light

    expanded = spread(cron, "syntax-check")
    if not croniter.is_valid(expanded):
        raise ValueError(f"not a valid cron expression: {cron!r}")
    return cron


#: How far ahead :func:`interval_seconds` walks a cron that is not the same every day, and at most how many
#: fire times it walks there.
INTERVAL_HORIZON = timedelta(days=8)
INTERVAL_MAX_FIRES = 4000
_DAY_MINUTES = 24 * 60


@lru_cache(maxsize=8192)
def interval_seconds(cron: str) -> float:
    """The longest gap between two runs of a plain cron (or a preset): the most a target waits between
    cycles, so "older than twice this" means its cycles stopped. A cron that fires the same every day is
    computed from its minute and hour fields; any other is walked over a week and a day (bounded)."""
    from croniter import croniter

    minutes, hours, days, months, weekdays = croniter(cron).expanded[:5]
    if days == months == weekdays == ["*"]:
        day = sorted(h * 60 + m for h in (range(24) if hours == ["*"] else hours)
                     for m in (range(60) if minutes == ["*"] else minutes))
        gaps = [b - a for a, b in zip(day, day[1:], strict=False)] + [day[0] + _DAY_MINUTES - day[-1]]
        return float(max(gaps) * 60)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    fires = croniter(cron, start)
    previous = fires.get_next(datetime)
    longest = 0.0
    for _ in range(INTERVAL_MAX_FIRES):
        current = fires.get_next(datetime)
        longest = max(longest, (current - previous).total_seconds())
        if current - start > INTERVAL_HORIZON:
            break
        previous = current
    return longest
