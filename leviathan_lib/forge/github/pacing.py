"""Write pacing shared by every target of one GitHub account: one small record per account, under a file lock.

GitHub's secondary rate limits count per account (a token or an App installation), not per repository:
at most about 80 content-creating requests a minute and 500 an hour, and a ``Retry-After`` it sends is
owed by every request of the account. Each target's client reads and writes the account's record beside
the ETag cache, so writes of all targets on this machine stay ``write_interval`` apart and under
``writes_per_hour``, and a ``Retry-After`` one target got makes the others wait too. Several worker
machines each pace their own writes: the limits are set well below GitHub's for that reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HOUR = 3600.0


class AccountPacing:
    """The pacing record of one account (API base URL and connection id) in ``directory``; times are the
    caller's clock (``now``: what it already waited for included)."""

    def __init__(self, directory: Path, account: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{hashlib.sha256(account.encode()).hexdigest()[:16]}.json"

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The record under an exclusive lock; what the block leaves in it is written back."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 1 << 20)
            try:
                record = json.loads(raw) if raw else {}
            except ValueError:  # a torn or foreign file: start afresh (pacing is not evidence)
                record = {}
            if not isinstance(record, dict):
                record = {}
            yield record
            data = json.dumps(record).encode()
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, data)
        finally:
            os.close(fd)  # releases the lock

    def blocked_for(self, now: float) -> float:
        """Seconds every request of the account must still wait for a ``Retry-After`` (0: none)."""
        with self._locked() as record:
            return max(0.0, float(record.get("blocked_until", 0.0)) - now)

    def block(self, now: float, seconds: float) -> None:
        """GitHub told one request to wait ``seconds``: the whole account waits as long."""
        with self._locked() as record:
            record["blocked_until"] = max(float(record.get("blocked_until", 0.0)), now + seconds)

    def reserve_write(self, now: float, *, interval: float, per_hour: int, budget: float) -> float:
        """Seconds to wait before this write so the account's writes stay ``interval`` apart and at most
        ``per_hour`` in any hour, and after any ``Retry-After``; the slot is taken only when the wait fits
        ``budget`` (else the wait is returned untaken, for the caller to fail closed)."""
        with self._locked() as record:
            writes = sorted(float(w) for w in record.get("writes", []) if float(w) > now - HOUR)
            start = max(now, float(record.get("blocked_until", 0.0)), (writes[-1] + interval) if writes else now)
            while len([w for w in writes if w > start - HOUR]) >= per_hour:  # bounded: per_hour slots at most
                start = max(start, [w for w in writes if w > start - HOUR][0] + HOUR)
            if start - now <= budget:
                record["writes"] = [*writes, start][-per_hour:]
            return start - now
