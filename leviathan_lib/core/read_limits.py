"""How much of a target repository a cycle reads: every read of untrusted content has a bound.

A backlog or recipes file is checked on its blob's size **before** it is read (one ``git cat-file -s``), and a
backlog on its number of tasks before any is validated, so a 16 MiB backlog behind a 100 KiB push costs
neither a cycle nor the API server memory or time. The defaults fit any backlog humans write by hand.
"""

from __future__ import annotations

from typing import Final

from leviathan_lib.core.errors import CodedError, ValidationFailed

#: Largest backlog file read (bytes): ``backlog_too_large`` beyond it.
MAX_BACKLOG_BYTES: Final = 1024 * 1024
#: Largest recipes file read (bytes): ``recipes_too_large`` beyond it.
MAX_RECIPES_BYTES: Final = 512 * 1024
#: Most tasks one backlog may hold: ``backlog_too_large`` beyond it.
MAX_TASKS: Final = 2000


class TooLarge(CodedError):
    """A file of the target repository is over its limit; nothing of it was parsed."""

    CODE = "too_large"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TooManyTasks(ValidationFailed):
    """A backlog holding more than :data:`MAX_TASKS` tasks: refused whole, before any task is validated."""

    CODE = "backlog_too_large"
