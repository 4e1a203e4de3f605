"""The XCom documents ``plan`` hands to the cycle's later tasks: ``read`` and ``guardrails``.

They cross a process boundary (each task is a process of its own, possibly on another worker) and, during a
rolling upgrade, a release boundary: a run planned by one release may be finished by the next. So they are
versioned (``xcom_version``) and snapshotted like the other boundary documents, and read through a
:class:`~leviathan_lib.contracts.versions.Reader` that names what it cannot read. A document without
``xcom_version`` is from the release before the field existed, whose shape is version 1: it is read as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, Field, PrivateAttr

from leviathan_lib.contracts.attempt import ContinuePr
from leviathan_lib.contracts.versions import Reader
from leviathan_lib.core.backlog import Backlog, parse_backlog
from leviathan_lib.core.errors import Problem
from leviathan_lib.core.guardrails import Decision
from leviathan_lib.evidence.records import DashboardAction, Ledger, LifecycleAction, PrStateChange, Totals

#: The version of both documents this release writes (and the only one it reads).
XCOM_VERSION: Final = 1
M = TypeVar("M", bound=BaseModel)


class CycleError(BaseModel):
    """Why a cycle could not evaluate its guardrails (read failures): stable code plus detail."""

    code: str
    message: str


class ReadResult(BaseModel):
    """XCom ``read`` of ``plan``: the pinned commit and the files read at it."""

    xcom_version: Literal[1] = XCOM_VERSION
    repo_url: str
    branch: str
    commit_sha: str | None = None
    backlog_path: str
    backlog_text: str | None = None
    recipes_text: str | None = None
    problems: list[str] = Field(default_factory=list)
    error: CycleError | None = None
    #: Set for replays (backfill): the backlog was read as it was at this time; nothing may run.
    as_of: datetime | None = None
    #: The backlog parsed, with the text and path it was parsed from (:meth:`parsed_backlog`).
    _parsed: tuple[str, str, tuple[Backlog, list[Problem]]] | None = PrivateAttr(default=None)

    def parsed_backlog(self) -> tuple[Backlog, list[Problem]]:
        """The backlog parsed once per read, however many steps of a task ask (``plan`` asked four times);
        raises :class:`ValidationFailed` like :func:`parse_backlog`. Treat the result as read-only."""
        text = self.backlog_text or ""
        if self._parsed is None or self._parsed[0] != self.backlog_path or self._parsed[1] != text:
            self._parsed = (self.backlog_path, text, parse_backlog(text, source=self.backlog_path))
        return self._parsed[2]


class AttemptPlan(BaseModel):
    task_id: str
    attempt: int
    branch: str
    task_hash: str
    recipe: str
    #: The open PR this attempt delivers to (its ``branch`` is then ``continue_pr.branch``); None: a new PR.
    continue_pr: ContinuePr | None = None


class GuardrailResult(BaseModel):
    """XCom ``guardrails`` of ``plan``."""

    xcom_version: Literal[1] = XCOM_VERSION
    decision: Decision | None = None
    error: CycleError | None = None
    attempt: AttemptPlan | None = None
    replay: bool = False
    pr_sync: list[PrStateChange] = Field(default_factory=list)
    lifecycle: list[LifecycleAction] = Field(default_factory=list)
    #: The history the decision used (without this run); the record carries it forward with this cycle.
    ledger: Ledger = Field(default_factory=Ledger)
    #: The running totals before this cycle (None: unknown); the record adds itself and carries them.
    totals: Totals | None = None
    #: Why each invalid task entry is invalid (backlog validation and recipe checks), for the task log.
    task_problems: list[str] = Field(default_factory=list)
    #: What ``plan`` did to the dashboard issue (cycle/dashboard_sync.py); None when nothing changed.
    dashboard: DashboardAction | None = None
    #: The target-branch commit up to which ``plan`` looked for reverts (None: it did not look).
    reverts_scanned_to: str | None = None


def _reader(name: str, model: type[Any], code: str) -> Reader[Any]:
    return Reader(name, model, "xcom_version", (XCOM_VERSION,),
                  {"version_unsupported": f"{code}_version_unsupported", "truncated": f"{code}_invalid",
                   "invalid": f"{code}_invalid"})


READ_READER: Reader[ReadResult] = _reader("XCom read", ReadResult, "xcom_read")
GUARDRAILS_READER: Reader[GuardrailResult] = _reader("XCom guardrails", GuardrailResult, "xcom_guardrails")


def read_xcom(reader: Reader[M], raw: Mapping[str, Any]) -> M:
    """``raw`` read by ``reader``; a document without ``xcom_version`` is read as version 1 (see above)."""
    return reader.read({"xcom_version": XCOM_VERSION, **raw})
