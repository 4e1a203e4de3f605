"""CI statuses on the embedded forge: what a CI script (or a person) reports on a commit.

``leviathan forge status`` records one status per context on a commit, as GitHub's commit statuses do: the
newest report of a context replaces the older one. They are stored per commit, in
``<repo>/leviathan/statuses/<sha>.json``, because CI reports on a commit, not on a pull request: a PR's
statuses are its head commit's, and a branch pushed before its PR is opened (``pr_creation:
checks_pass``) has them too. The same storage rules as the PR records: changes under an exclusive
``flock`` on ``<repo>/leviathan/statuses.lock``, atomic writes, bounded no-follow reads; at most
:data:`MAX_CONTEXTS` contexts per commit and :data:`MAX_COMMITS` commits (the oldest file goes).
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from leviathan_lib.core.ci import CheckState, CiCheck, CiStatus, ci_status, clip
from leviathan_lib.forge.base import ForgeError
from leviathan_lib.forge.local_files import atomic_write, locked, read_regular_file

#: Contexts one commit holds at most, and commits with statuses one repository keeps.
MAX_CONTEXTS = 50
MAX_COMMITS = 1000
#: A status description at most (GitHub's limit is 140; a CI script may say a little more here).
MAX_DESCRIPTION = 1000
MAX_STATUS_BYTES = 1 << 17
_SHA = re.compile(r"^[0-9a-f]{40}$")
_FILE = re.compile(r"^([0-9a-f]{40})\.json$")

Context = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


class LocalStatus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    context: Context
    state: CheckState
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] = ""
    updated_at: datetime


class _Statuses(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha: str
    statuses: list[LocalStatus] = Field(default_factory=list, max_length=MAX_CONTEXTS)


class LocalStatuses:
    """The CI half of :class:`~leviathan_lib.forge.local.LocalForge` (which supplies ``path``)."""

    path: Path

    @property
    def _statuses_dir(self) -> Path:
        return self.path / "leviathan" / "statuses"

    def _statuses_locked(self) -> AbstractContextManager[None]:
        return locked(self.path / "leviathan" / "statuses.lock", self._statuses_dir)

    def _read_statuses(self, sha: str) -> list[LocalStatus]:
        path = self._statuses_dir / f"{sha}.json"
        try:
            stored = _Statuses.model_validate_json(read_regular_file(path, MAX_STATUS_BYTES, "status record"))
        except FileNotFoundError:
            return []
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise ForgeError(f"corrupt status record {path}: {where}: {first['msg']}") from exc
        if stored.sha != sha:
            raise ForgeError(f"corrupt status record {path}: it holds commit {stored.sha}")
        return stored.statuses

    def set_status(self, sha: str, *, context: str, state: CheckState, description: str = "") -> CiStatus:
        """Record ``context``'s state on commit ``sha`` (replacing its older report); the commit's status."""
        if not _SHA.fullmatch(sha):
            raise ValueError(f"{sha!r} is not a full commit id")
        added = LocalStatus(context=context, state=state, description=description, updated_at=datetime.now(UTC))
        with self._statuses_locked():
            kept = [s for s in self._read_statuses(sha) if s.context != context]
            if len(kept) >= MAX_CONTEXTS:
                raise ForgeError(f"commit {sha} in {self.path} already has {MAX_CONTEXTS} status contexts")
            self._make_room(sha)
            data = _Statuses(sha=sha, statuses=[*kept, added]).model_dump_json(indent=2).encode() + b"\n"
            atomic_write(self._statuses_dir / f"{sha}.json", data)
        return self.ci_status(sha)

    def _make_room(self, sha: str) -> None:
        """Keep at most :data:`MAX_COMMITS` status files: the least recently written go first."""
        try:
            files = [f for f in os.scandir(self._statuses_dir) if _FILE.match(f.name) and f.name != f"{sha}.json"]
        except OSError as exc:
            raise ForgeError(f"cannot list {self._statuses_dir}: {exc}") from exc
        files.sort(key=lambda f: f.stat(follow_symlinks=False).st_mtime)
        for old in files[: max(0, len(files) - MAX_COMMITS + 1)]:
            Path(old.path).unlink(missing_ok=True)

    def statuses(self, sha: str) -> list[LocalStatus]:
        """The statuses recorded on commit ``sha``, in the order they were first reported."""
        return self._read_statuses(sha) if _SHA.fullmatch(sha) else []

    def ci_status(self, sha: str) -> CiStatus:
        checks = [CiCheck(name=s.context, state=s.state, summary=clip(s.description)) for s in self.statuses(sha)]
        return ci_status(sha, checks)
