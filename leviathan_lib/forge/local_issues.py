"""Issues on the embedded forge: durable records in ``<repo>/leviathan/issues/<number>.json``.

The same storage rules as pull-request records (:mod:`leviathan_lib.forge.local`): changes under an
exclusive ``flock`` on ``<repo>/leviathan/issues.lock``, atomic writes (temp file, fsync, rename, which
replaces a planted symlink instead of following it), bounded no-follow reads, and a record that cannot be
read is an error naming the file. Issue numbers are their own sequence (``leviathan forge issues``).
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from leviathan_lib.forge.base import ForgeError, Issue, IssueNotFound, IssueState
from leviathan_lib.forge.local_files import atomic_write, locked, read_regular_file

_ISSUE_NAME = re.compile(r"^([1-9][0-9]*)\.json$")
#: A deleted issue leaves ``<number>.deleted`` so its number is never given out again (as on GitHub).
_TAKEN_NAME = re.compile(r"^([1-9][0-9]*)\.(json|deleted)$")
#: A dashboard is at most 64 KiB of Markdown; a larger record is not one of Leviathan's.
MAX_ISSUE_BYTES = 1 << 18
#: Issue records one repository holds at most (Leviathan writes one per target; a few more by hand).
MAX_ISSUES = 1000


class _IssueRecord(Issue):
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None

    def issue(self) -> Issue:
        return Issue.model_validate(self.model_dump(include=set(Issue.model_fields)))


class LocalIssues:
    """The issue half of :class:`~leviathan_lib.forge.local.LocalForge` (which supplies ``path``)."""

    path: Path

    @property
    def _issues_dir(self) -> Path:
        return self.path / "leviathan" / "issues"

    def _issues_locked(self) -> AbstractContextManager[None]:
        return locked(self.path / "leviathan" / "issues.lock", self._issues_dir)

    def _issue_path(self, number: int) -> Path:
        return self._issues_dir / f"{number}.json"

    def _read_issue(self, number: int) -> _IssueRecord:
        path = self._issue_path(number)
        try:
            record = _IssueRecord.model_validate_json(read_regular_file(path, MAX_ISSUE_BYTES, "issue record"))
        except FileNotFoundError:
            raise IssueNotFound(f"no issue #{number} in {self.path}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise ForgeError(f"corrupt issue record {path}: {where}: {first['msg']}") from exc
        if record.number != number:
            raise ForgeError(f"corrupt issue record {path}: it holds number {record.number}")
        return record

    def _issue_numbers(self, pattern: re.Pattern[str] = _ISSUE_NAME) -> list[int]:
        try:
            names = os.listdir(self._issues_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ForgeError(f"cannot list {self._issues_dir}: {exc}") from exc
        return sorted({int(m.group(1)) for m in map(pattern.match, names) if m})

    def _write_issue(self, record: _IssueRecord) -> None:
        data = record.model_dump_json(indent=2).encode() + b"\n"
        if len(data) > MAX_ISSUE_BYTES:
            raise ForgeError(f"issue #{record.number} would be {len(data)} bytes, over {MAX_ISSUE_BYTES}")
        atomic_write(self._issue_path(record.number), data)

    def issue_url(self, number: int) -> str:
        return f"{self.path.as_uri()}#issue/{number}"

    # -- Forge -----------------------------------------------------------------------------------------

    def create_issue(self, *, title: str, body: str, label: str) -> Issue:
        if not title.strip():
            raise ValueError("an issue needs a title")
        with self._issues_locked():
            numbers = self._issue_numbers(_TAKEN_NAME)
            if len(numbers) >= MAX_ISSUES:
                raise ForgeError(f"{self.path} already holds {MAX_ISSUES} issues")
            number = max(numbers, default=0) + 1
            now = datetime.now(UTC)
            record = _IssueRecord(number=number, title=title, body=body, state="open", url=self.issue_url(number),
                                  labels=(label,), created_at=now, updated_at=now)
            self._write_issue(record)
        return record.issue()

    def get_issue(self, number: int) -> Issue:
        return self._read_issue(number).issue()

    def update_issue(self, number: int, *, title: str, body: str) -> Issue:
        with self._issues_locked():
            record = self._read_issue(number).model_copy(
                update={"title": title, "body": body, "updated_at": datetime.now(UTC), "edited_by": None})
            self._write_issue(record)
        return record.issue()

    def find_issue(self, *, title: str, label: str) -> Issue | None:
        for number in self._issue_numbers():
            issue = self._read_issue(number)
            if issue.state == "open" and issue.title == title and label in issue.labels:
                return issue.issue()
        return None

    # -- reviewer-only ---------------------------------------------------------------------------------

    def list_issues(self) -> list[Issue]:
        """Every issue, oldest first (``leviathan forge issues``)."""
        return [self._read_issue(n).issue() for n in self._issue_numbers()]

    def edit_issue_body(self, number: int, body: str, *, editor: str) -> Issue:
        """A human edits an issue's body (``leviathan forge tick``): the record names them, as the edit history
        of a forge's web UI does."""
        with self._issues_locked():
            record = self._read_issue(number).model_copy(
                update={"body": body, "updated_at": datetime.now(UTC), "edited_by": editor})
            self._write_issue(record)
        return record.issue()

    def set_issue_state(self, number: int, state: IssueState) -> Issue:
        """A human closes or reopens an issue (``leviathan forge close-issue`` / ``reopen-issue``)."""
        with self._issues_locked():
            record = self._read_issue(number)
            now = datetime.now(UTC)
            record = record.model_copy(update={"state": state, "updated_at": now,
                                               "closed_at": now if state == "closed" else None})
            self._write_issue(record)
        return record.issue()

    def delete_issue(self, number: int) -> None:
        """A human (an admin, on GitHub) deletes an issue: its record goes, its number stays taken."""
        with self._issues_locked():
            self._read_issue(number)
            try:
                os.replace(self._issue_path(number), self._issues_dir / f"{number}.deleted")
            except OSError as exc:
                raise ForgeError(f"cannot delete {self._issue_path(number)}: {exc}") from exc
