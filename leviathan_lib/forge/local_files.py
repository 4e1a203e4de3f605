"""How the embedded forge reads and writes its records: locks, bounded no-follow reads, atomic writes.

Shared by the pull-request records (:mod:`leviathan_lib.forge.local`), the issue records
(:mod:`leviathan_lib.forge.local_issues`) and the CI statuses (:mod:`leviathan_lib.forge.local_ci`), which
sit in a directory other tools can write to.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from leviathan_lib.forge.base import ForgeError


@contextmanager
def locked(lock: Path, records: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` (creating ``records``, the directory it guards, first).

    The lock file is opened without following a symlink, so a planted link cannot make Leviathan create or
    lock a file elsewhere; closing the descriptor releases the lock.
    """
    try:
        records.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ForgeError(f"cannot lock {lock}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_regular_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything else is a :class:`ForgeError`.

    Records sit in a directory other tools can write to, so a FIFO (which would block ``open``/``read``
    forever), a device, a directory or a symlink (to /etc/passwd, say) is refused rather than followed,
    and the read is bounded: the guardrails then fail closed on ``forge_state_unknown`` instead of hanging.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:  # ELOOP: a symlink
        why = "it is a symbolic link" if os.path.islink(path) else str(exc)
        raise ForgeError(f"cannot read {what} {path}: {why}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ForgeError(f"cannot read {what} {path}: not a regular file")
        if info.st_size > limit:
            raise ForgeError(f"cannot read {what} {path}: {info.st_size} bytes, over {limit}")
        chunks, size = [], 0
        while chunk := os.read(fd, min(65536, limit + 1 - size)):  # bounded even if the file grows
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ForgeError(f"cannot read {what} {path}: over {limit} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise ForgeError(f"cannot read {what} {path}: {exc}") from exc
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (temp file, fsync, rename, fsync of the directory)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)  # mkstemp makes 0600; reviewers and other tools read these
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise ForgeError(f"cannot write {path}: {exc}") from exc
