"""User-facing validation errors.

A :class:`Problem` names the file, the line (when known), the field and what was expected, so every
bad input can be reported as one line without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ValidationFailed(Exception):
    """One or more problems in a user-supplied file."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class LeviathanError(Exception):
    """An operational failure with a stable reason code (``code``) and a one-line explanation."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
