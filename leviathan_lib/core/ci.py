"""CI on a commit as any forge reports it: the one combined state Leviathan acts on, and the text it may show.

A forge reports checks (GitHub's commit statuses and check runs, the local forge's statuses); this module
folds them into one state per commit: ``failure`` if any check failed, else ``pending`` if any still runs,
else ``success`` if any passed, else ``none`` (no CI reported). ``unknown`` is what a cycle records when
the forge could not be read (5xx, rate limit) or did not report every check: it never counts as success.

The names and summaries of checks are written by whoever runs CI: untrusted text. :func:`failure_report`
is the only form in which they reach an executor (redacted, at most 8 KB, by
:func:`leviathan_lib.core.commands.bounded_feedback`); every page escapes them like any forge text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from leviathan_lib.core.commands import bounded_feedback

CiState = Literal["pending", "success", "failure", "none", "unknown"]
CheckState = Literal["pending", "success", "failure"]
#: The states a forge can report; ``unknown`` is Leviathan's own.
CI_STATES: tuple[CiState, ...] = ("pending", "success", "failure", "none", "unknown")
#: Checks kept per commit (a forge reporting more is read as far as this, and the rest is unknown).
MAX_CHECKS = 100
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: Characters of one check's summary kept (the report to an executor is bounded again as a whole).
MAX_SUMMARY = 2000


class CiCheck(BaseModel):
    """One check on a commit: its name (a status context, a check run's name) and what it says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(max_length=200)]
    state: CheckState
    #: Untrusted: a status description, or a check run's output title and summary.
    summary: Annotated[str, Field(max_length=MAX_SUMMARY)] = ""


class CiStatus(BaseModel):
    """The combined CI state of commit ``sha`` and the checks behind it (``detail``: why it is unknown)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha: str
    state: CiState
    checks: tuple[CiCheck, ...] = ()
    detail: str = ""

    @property
    def failing(self) -> tuple[CiCheck, ...]:
        return tuple(c for c in self.checks if c.state == "failure")


def combine(states: Iterable[CheckState]) -> CiState:
    """One state for a commit's checks: failure beats pending beats success; no check is ``none``."""
    seen = set(states)
    if "failure" in seen:
        return "failure"
    if "pending" in seen:
        return "pending"
    return "success" if "success" in seen else "none"


def ci_status(sha: str, checks: Iterable[CiCheck], *, complete: bool = True) -> CiStatus:
    """The status of ``sha`` from its checks. An incomplete read (more checks than could be read) is
    ``unknown`` unless a check already failed: what was not read could still fail."""
    kept = tuple(checks)[:MAX_CHECKS]
    state = combine(c.state for c in kept)
    if not complete and state != "failure":
        return CiStatus(sha=sha, state="unknown", checks=kept, detail=f"more than {len(kept)} checks reported")
    return CiStatus(sha=sha, state=state, checks=kept)


def unknown(sha: str, detail: str) -> CiStatus:
    """A state that could not be read: recorded as such, never taken for success."""
    return CiStatus(sha=sha, state="unknown", detail=detail[:500])


def clip(text: str | None) -> str:
    """A check's name or summary as stored: bounded, without control characters but line breaks (no
    terminal escape reaches ``leviathan evidence``), still untrusted."""
    text = _CONTROL.sub(" ", (text or "").replace("\r\n", "\n")).strip()
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def failure_report(status: CiStatus) -> str:
    """What an attempt that fixes red CI is told: the failing checks and their summaries, as untrusted data
    (credentials redacted, at most 8 KB)."""
    lines = [f"CI failed on commit {status.sha}. The failing checks and what they reported:"]
    for check in status.failing:
        summary = check.summary.replace("\r\n", "\n").strip() or "(no summary)"
        lines.append(f"\n- {check.name}:\n{summary}")
    return bounded_feedback("\n".join(lines))
