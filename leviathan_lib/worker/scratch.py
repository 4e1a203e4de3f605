"""Scratch that cannot be left behind: an attempt's directory is removed whatever a recipe put in it, and
what a killed attempt left is swept by the next one.

A recipe controls its checkout, so removal assumes the worst: a tree thousands of levels deep (no
recursion in Python: coreutils walk it with file descriptors), directories without permissions (``chmod -R
u+rwx`` first, which changes a directory before it reads it), symlinks (never followed: neither tool
follows them inside the tree), any bytes in names, files still open (unlinking them is enough on Linux),
other file systems mounted inside (``--one-file-system``: never descended into). Both tools are bounded
in time. A failure is reported, never raised: the attempt's own outcome stands.

Each attempt directory holds a lock file its owner keeps locked (``flock``) while the attempt runs; a
directory whose lock can be taken, or that has none and is older than :data:`UNLOCKED_GRACE_SECONDS`,
belongs to an attempt that is gone, and :func:`sweep` removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from leviathan_lib.worker.limits import tree_bytes

#: Attempt directories are ``<scratch>/<PREFIX>*``; their lock file is ``LOCK``.
PREFIX = "leviathan-attempt-"
LOCK = ".lock"
#: Age past which an attempt directory without a lock file is stale (its owner died before locking).
UNLOCKED_GRACE_SECONDS = 3600
_TOOL_TIMEOUT_SECONDS = 300
_TOOL_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


def remove_tree(path: Path) -> str | None:
    """Remove ``path`` and everything under it; None, or why something is left (never raises)."""
    if not os.path.lexists(path):
        return None
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return None
        for argv in (["chmod", "-R", "u+rwx", "--", str(path)], ["rm", "-rf", "--one-file-system", "--", str(path)]):
            subprocess.run(argv, env=_TOOL_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=_TOOL_TIMEOUT_SECONDS, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{path}: {exc}"
    return f"{path}: still there after rm -rf" if os.path.lexists(path) else None


@contextlib.contextmanager
def attempt_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock while the attempt runs (a sweep never takes a directory in use)."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _stale(directory: Path) -> bool:
    try:
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            return time.time() - directory.lstat().st_mtime > UNLOCKED_GRACE_SECONDS
        return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False  # its owner still runs
    finally:
        os.close(fd)


@dataclass
class Sweep:
    """What :func:`sweep` removed, and what it could not."""

    dirs: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


def sweep(root: Path) -> Sweep:
    """Remove the attempt directories under ``root`` that no running attempt holds."""
    found = Sweep()
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(PREFIX) and not p.is_symlink() and p.is_dir()]
    except OSError as exc:
        found.problems.append(f"{root}: {exc}")
        return found
    for directory in candidates:
        if not _stale(directory):
            continue
        size = tree_bytes(directory)
        problem = remove_tree(directory)
        if problem:
            found.problems.append(problem)
        else:
            found.dirs, found.bytes = found.dirs + 1, found.bytes + size
    return found
