"""The one parser of ``git diff --raw -z --no-renames``, for the worker's change and delivery's final check.

Each entry is ``:<old mode> <new mode> <old sha> <new sha> <status>`` NUL ``<path>`` NUL; paths are kept as git
stores them (bytes) and decoded with escapes, so an undecodable name stays visible and can be refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RawEntry:
    """One changed path of a diff."""

    old_mode: str
    new_mode: str
    old_sha: str
    new_sha: str
    status: str
    #: The path decoded as UTF-8, undecodable bytes as ``\\x..`` escapes.
    path: str
    #: The path as git stores it (a name need not be UTF-8).
    raw_path: bytes


def parse_raw_diff(raw: bytes) -> list[RawEntry]:
    """The entries of ``git diff --raw -z --no-renames`` output (abbreviated or full object names)."""
    fields = raw.split(b"\0")
    entries = []
    for header, path in zip(fields[0::2], fields[1::2], strict=False):
        if not header.startswith(b":"):
            break
        old_mode, new_mode, old_sha, new_sha, status = header[1:].decode().split(" ")
        entries.append(RawEntry(old_mode, new_mode, old_sha, new_sha, status,
                                path.decode("utf-8", "backslashreplace"), path))  # fmt: skip
    return entries
