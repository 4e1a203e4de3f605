"""Leviathan's one error family, and user-facing validation errors.

Every exception Leviathan raises on purpose is a :class:`LeviathanError`: a stable machine-readable
``code`` (evidence, alerts and tests key on it) and a ``message`` for humans. Subclasses keep their own
names so callers can catch exactly what they handle. A :class:`Problem` names the file, the line (when
known), the field and what was expected, so every bad input can be reported as one line without a
traceback; :class:`ValidationFailed` carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class LeviathanError(Exception):
    """A failure with a stable ``code`` and a human ``message`` (``str(error)`` is the message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CodedError(LeviathanError):
    """A :class:`LeviathanError` whose class fixes the code, so it is raised with a message only."""

    CODE: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(self.CODE, message)


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return self.render()

    def render(self, severity: str = "") -> str:
        """``file:line: field: message``; a severity goes after the place: ``file:line: warning: field: ...``."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        label = f" {severity}:" if severity else ""
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{label}{field} {self.message}"


class ValidationFailed(LeviathanError):
    """One or more problems in a user-supplied file."""

    CODE: ClassVar[str] = "validation_failed"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(self.CODE, "\n".join(str(p) for p in problems))
