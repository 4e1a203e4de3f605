"""The embedded forge: a bare git repository on disk plus durable pull-request records beside it.

Records live in ``<repo>/leviathan/pulls/<number>.json`` (git ignores unknown files in a git dir), with
the PR's comments and reviews; who may command Leviathan is ``<repo>/leviathan/collaborators.json``
(``{"login": "write", ...}``; anyone not listed has permission ``none``). Issues are
:mod:`leviathan_lib.forge.local_issues`, CI statuses :mod:`leviathan_lib.forge.local_ci`.
Every change happens under an exclusive ``flock`` on ``<repo>/leviathan/pulls.lock`` (opened without
following a symlink) and every write is atomic (temp file, fsync, rename), so concurrent writers never share
a number or a head, and a crash never leaves half a record. A record that cannot be read is an error naming
the file, never skipped.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leviathan_lib.core.commands import PrComment, Review, ReviewState
from leviathan_lib.forge.base import (
    AGENT_BRANCH_PREFIX,
    Forge,
    ForgeConflict,
    ForgeError,
    PullRequest,
    PullRequestNotFound,
    PullState,
)
from leviathan_lib.forge.local_ci import LocalStatuses
from leviathan_lib.forge.local_files import atomic_write, locked, read_regular_file
from leviathan_lib.forge.local_issues import LocalIssues
from leviathan_lib.git.runner import GitError, run_git
from leviathan_lib.git.urls import RepoUrlError, parse_repo_url

_RECORD_NAME = re.compile(r"^([1-9][0-9]*)\.json$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
#: A record is a few KiB; anything larger is not one (and is never read whole into memory).
MAX_RECORD_BYTES = 1 << 20
#: Comments one record holds at most (Leviathan comments at most once per reason).
MAX_COMMENTS = 100


#: Reviews one record holds at most.
MAX_REVIEWS = 100
#: The author of comments Leviathan itself makes (records from before authors were stored are its own).
LEVIATHAN_LOGIN = "leviathan"
_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,38}$")
_PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    body: str
    created_at: datetime
    author: str = LEVIATHAN_LOGIN


class LocalReview(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    author: str
    state: ReviewState
    body: str
    submitted_at: datetime
    commit_sha: str | None = None


def check_login(login: str) -> str:
    """A forge user name (GitHub's alphabet); ValueError naming the expectation otherwise."""
    if not _LOGIN.fullmatch(login):
        raise ValueError(f"user {login!r}: expected letters, digits, '-', '_' or '.', at most 39 characters")
    return login


class Requests(BaseModel):
    """Who and what a pull request was handed to when it was opened (``pr_labels``, ``pr_reviewers``, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[str] = Field(default_factory=list)
    reviewers: list[str] = Field(default_factory=list)
    assignees: list[str] = Field(default_factory=list)


class _Record(PullRequest):
    """What is stored on disk: the pull request plus its comments and review requests."""

    comments: list[Comment] = Field(default_factory=list)
    reviews: list[LocalReview] = Field(default_factory=list)
    requests: Requests = Field(default_factory=Requests)
    #: A maintainer locked the conversation: nobody but them comments (``leviathan forge lock``).
    locked: bool = False

    def pull(self) -> PullRequest:
        return PullRequest.model_validate(self.model_dump(exclude={"comments", "reviews", "requests", "locked"}))


def _now() -> datetime:
    return datetime.now(UTC)


def _repo_path(repo: str | Path) -> Path:
    """A filesystem path from a path or a ``file://`` URL (classified by the one URL parser)."""
    text = str(repo)
    try:
        parsed = parse_repo_url(text)
    except RepoUrlError as exc:
        raise ForgeError(f"the local forge needs a path or a file:// URL: {exc}") from None
    if not parsed.is_local:
        raise ForgeError(f"the local forge needs a path or a file:// URL, got {text!r}")
    return Path(unquote(parsed.path) if parsed.kind == "file" else parsed.path).absolute()


class LocalForge(LocalIssues, LocalStatuses, Forge):
    """A bare repository on disk acting as forge; also offers :meth:`merge` for the human reviewer.

    Its issues (the dashboard) are :class:`~leviathan_lib.forge.local_issues.LocalIssues`, its CI statuses
    :class:`~leviathan_lib.forge.local_ci.LocalStatuses`.
    """

    def __init__(self, repo: str | Path, *, labels: tuple[str, ...] = (), reviewers: tuple[str, ...] = (),
                 assignees: tuple[str, ...] = ()):
        self.path = _repo_path(repo)
        self._requests = Requests(labels=list(labels), reviewers=list(reviewers), assignees=list(assignees))
        if not self.path.is_dir():
            raise ForgeError(f"local forge repository {self.path} does not exist or is not a directory")
        if (self.path / ".git").exists():
            raise ForgeError(f"{self.path} is a work tree; the local forge needs a bare git repository")
        try:
            bare = run_git(["rev-parse", "--is-bare-repository"], env={"GIT_DIR": str(self.path)}).stdout
        except GitError as exc:
            raise ForgeError(f"{self.path} is not a git repository ({exc.stderr or exc})") from exc
        if bare.strip() != "true":
            raise ForgeError(f"{self.path} is not a bare git repository")
        self._pulls = self.path / "leviathan" / "pulls"
        self._lock_file = self.path / "leviathan" / "pulls.lock"

    # -- git -----------------------------------------------------------------------------------------

    def _git(self, *args: str, check: bool = True) -> str:
        try:
            proc = run_git(list(args), env={"GIT_DIR": str(self.path)}, check=check)
        except GitError as exc:
            raise ForgeError(f"{self.path}: {exc}") from exc
        return proc.stdout

    def _branch_sha(self, branch: str) -> str | None:
        out = self._git(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"refs/heads/{branch}", check=False
        )
        return out.strip() or None

    def commit_of(self, ref: str) -> str:
        """The commit a branch (or a full commit id) names; ForgeError when there is none."""
        spec = f"{ref}^{{commit}}" if _SHA.fullmatch(ref) else f"refs/heads/{ref}^{{commit}}"
        out = self._git("rev-parse", "--verify", "--quiet", "--end-of-options", spec, check=False).strip()
        if not out:
            raise ForgeError(f"{self.path}: no commit or branch {ref!r}")
        return out

    def _branch_shas(self) -> dict[str, str]:
        out = self._git("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
        shas = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            shas[ref.removeprefix("refs/heads/")] = sha
        return shas

    # -- records -------------------------------------------------------------------------------------

    def _locked(self) -> AbstractContextManager[None]:
        return locked(self._lock_file, self._pulls)

    def _record_path(self, number: int) -> Path:
        return self._pulls / f"{number}.json"

    def _read(self, path: Path) -> _Record:
        try:
            record = _Record.model_validate_json(read_regular_file(path, MAX_RECORD_BYTES, "pull request record"))
        except FileNotFoundError:
            raise
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise ForgeError(f"corrupt pull request record {path}: {where}: {first['msg']}") from exc
        except OSError as exc:
            raise ForgeError(f"cannot read pull request record {path}: {exc}") from exc
        if path.name != f"{record.number}.json":
            raise ForgeError(f"corrupt pull request record {path}: it holds number {record.number}")
        return record

    def _load(self, number: int) -> _Record:
        try:
            return self._read(self._record_path(number))
        except FileNotFoundError:
            raise PullRequestNotFound(f"no pull request #{number} in {self.path}") from None

    def _all(self) -> list[_Record]:
        try:
            names = os.listdir(self._pulls)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ForgeError(f"cannot list {self._pulls}: {exc}") from exc
        numbers = sorted(int(m.group(1)) for m in map(_RECORD_NAME.match, names) if m)
        try:
            return [self._read(self._record_path(n)) for n in numbers]
        except FileNotFoundError as exc:  # records are never deleted; someone tampered with the store
            raise ForgeError(f"pull request record {exc.filename} vanished while reading") from exc

    def _write(self, record: _Record) -> None:
        atomic_write(self._record_path(record.number), record.model_dump_json(indent=2).encode() + b"\n")

    def _refreshed(self, record: _Record, shas: dict[str, str] | None = None) -> _Record:
        """An open record's head_sha follows its branch; a deleted branch keeps the last known SHA."""
        if record.state != "open":
            return record
        sha = (shas if shas is not None else {record.head: self._branch_sha(record.head)}).get(record.head)
        return record.model_copy(update={"head_sha": sha}) if sha and sha != record.head_sha else record

    def _update(self, record: _Record, **changes: object) -> _Record:
        updated = _Record.model_validate({**record.model_dump(), **changes, "updated_at": _now()})
        self._write(updated)
        return updated

    # -- Forge ---------------------------------------------------------------------------------------

    @property
    def repo_url(self) -> str:
        return self.path.as_uri()

    def pr_url(self, number: int) -> str:
        return f"{self.repo_url}#pull/{number}"

    def default_branch(self) -> str:
        out = self._git("symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
        if not out:
            raise ForgeError(f"{self.path}: HEAD is not a branch, so the default branch is unknown")
        return out

    def list_prs(self, state: PullState | None = None) -> list[PullRequest]:
        """All pull requests (or those in ``state``), oldest first."""
        shas = self._branch_shas()
        records = (self._refreshed(r, shas) for r in self._all())
        return [r.pull() for r in records if state is None or r.state == state]

    def list_open_prs(self, head_prefix: str = AGENT_BRANCH_PREFIX) -> list[PullRequest]:
        return [pr for pr in self.list_prs("open") if pr.head.startswith(head_prefix)]

    def find_pr_by_head(self, head: str) -> PullRequest | None:
        matches = [r for r in self._all() if r.head == head]
        return self._refreshed(matches[-1]).pull() if matches else None

    def get_pr(self, number: int) -> PullRequest:
        return self._refreshed(self._load(number)).pull()

    def comments(self, number: int) -> list[Comment]:
        return list(self._load(number).comments)

    def requests(self, number: int) -> Requests:
        """The labels, reviewers and assignees pull request ``number`` was opened with."""
        return self._load(number).requests

    def create_pr(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        if not title.strip():
            raise ValueError("a pull request needs a title")
        if head == base:
            raise ValueError(f"head and base are the same branch {head!r}")
        with self._locked():
            head_sha = self._branch_sha(head)
            if head_sha is None:
                raise ForgeError(f"{self.path}: head branch {head!r} does not exist")
            if self._branch_sha(base) is None:
                raise ForgeError(f"{self.path}: base branch {base!r} does not exist")
            records = self._all()
            for r in records:
                if r.head == head and r.state == "open":
                    raise ForgeConflict(f"branch {head!r} already has open pull request #{r.number}")
            number = max((r.number for r in records), default=0) + 1
            now = _now()
            record = _Record(
                number=number,
                title=title,
                body=body,
                head=head,
                base=base,
                state="open",
                url=self.pr_url(number),
                created_at=now,
                updated_at=now,
                head_sha=head_sha,
                requests=self._requests,
            )
            self._write(record)
        return record.pull()

    def update_pr(self, number: int, *, body: str) -> PullRequest:
        with self._locked():
            record = self._refreshed(self._load(number))
            if record.state != "open":
                raise ForgeConflict(f"pull request #{number} is {record.state}; only open ones are updated")
            return self._update(record, body=body).pull()

    def mergeable(self, number: int) -> bool | None:
        record = self._load(number)
        base_sha, head_sha = self._branch_sha(record.base), self._branch_sha(record.head)
        if record.state != "open" or base_sha is None or head_sha is None:
            return None
        # A base force-pushed to a history of its own has no merge base: every differing file conflicts.
        return self._merge_tree(base_sha, head_sha, unrelated=True)[0] == 0

    def _merge_tree(self, base_sha: str, head_sha: str, *, unrelated: bool = False) -> tuple[int, list[str]]:
        """``git merge-tree --write-tree`` of two commits: (0, [tree]) clean, (1, [tree, files...]) conflicts."""
        extra = ["--allow-unrelated-histories"] if unrelated else []
        try:
            proc = run_git(
                ["merge-tree", "--write-tree", *extra, "--name-only", "--no-messages", "-z", base_sha, head_sha],
                env={"GIT_DIR": str(self.path)},
                check=False,
            )
        except GitError as exc:
            raise ForgeError(f"{self.path}: {exc}") from exc
        if proc.returncode not in (0, 1):
            raise ForgeError(f"{self.path}: git merge-tree failed: {proc.stderr.strip()}")
        return proc.returncode, proc.stdout.split("\0")

    def close_pr(self, number: int) -> PullRequest:
        """Close without merging (``leviathan forge close``: the human's "no"; or Leviathan closing a superseded
        attempt); the head branch is kept. Closing a closed pull request is a no-op."""
        with self._locked():
            record = self._refreshed(self._load(number))
            if record.state == "closed":
                return record.pull()
            if record.state == "merged":
                raise ForgeConflict(f"pull request #{number} is merged; it cannot be closed")
            return self._update(record, state="closed", closed_at=_now()).pull()

    def comment(self, number: int, body: str, *, author: str = LEVIATHAN_LOGIN) -> None:
        """Leviathan's comment, or (``leviathan forge comment``) a human's as ``author``."""
        check_login(author)
        with self._locked():
            record = self._load(number)
            if record.locked and author == LEVIATHAN_LOGIN:
                raise ForgeConflict(f"pull request #{number} in {self.path}: the conversation is locked")
            if len(record.comments) >= MAX_COMMENTS:
                raise ForgeError(f"pull request #{number} in {self.path} already has {MAX_COMMENTS} comments")
            self._update(record, comments=[*record.comments, Comment(body=body, created_at=_now(), author=author)])

    def lock(self, number: int, *, locked: bool = True) -> None:
        """Lock (or unlock) a pull request's conversation, as a maintainer does: Leviathan's comments are refused."""
        with self._locked():
            self._update(self._load(number), locked=locked)

    def list_comments(self, number: int) -> list[PrComment]:
        """Comment ids are positions (1-based): comments are only ever appended."""
        return [PrComment(id=i, author=c.author, body=c.body, created_at=c.created_at)
                for i, c in enumerate(self._load(number).comments, start=1)]

    def list_reviews(self, number: int) -> list[Review]:
        return [Review(id=i, author=r.author, state=r.state, body=r.body, submitted_at=r.submitted_at,
                       commit_sha=r.commit_sha) for i, r in enumerate(self._load(number).reviews, start=1)]

    def permission(self, login: str) -> str:
        return self.collaborators().get(login, "none")

    def collaborators(self) -> dict[str, str]:
        """``<repo>/leviathan/collaborators.json``: login to permission; absent file: nobody."""
        path = self.path / "leviathan" / "collaborators.json"
        try:
            data = json.loads(read_regular_file(path, MAX_RECORD_BYTES, "pull request record"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ForgeError(f"corrupt collaborators file {path}: {exc}") from None
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and v in _PERMISSIONS for k, v in data.items()):
            raise ForgeError(f"corrupt collaborators file {path}: expected an object of login to one of "
                             f"{', '.join(_PERMISSIONS)}")
        return data

    def set_permission(self, login: str, permission: str) -> None:
        """Grant ``login`` a permission (``leviathan forge collaborator``); ``none`` removes them."""
        check_login(login)
        if permission not in _PERMISSIONS:
            raise ValueError(f"permission {permission!r}: expected one of {', '.join(_PERMISSIONS)}")
        with self._locked():
            people = self.collaborators()
            people.pop(login, None)
            if permission != "none":
                people[login] = permission
            atomic_write(self.path / "leviathan" / "collaborators.json",
                          (json.dumps(people, indent=2, sort_keys=True) + "\n").encode())

    def review(self, number: int, *, author: str, state: ReviewState, body: str) -> Review:
        """A human's review (``leviathan forge review``) of the PR's current head; only open PRs."""
        check_login(author)
        with self._locked():
            record = self._refreshed(self._load(number))
            if record.state != "open":
                raise ForgeConflict(f"pull request #{number} is {record.state}; only open ones can be reviewed")
            if len(record.reviews) >= MAX_REVIEWS:
                raise ForgeError(f"pull request #{number} in {self.path} already has {MAX_REVIEWS} reviews")
            added = LocalReview(author=author, state=state, body=body, submitted_at=_now(),
                                commit_sha=record.head_sha)
            self._update(record, reviews=[*record.reviews, added])
        return Review(id=len(record.reviews) + 1, **added.model_dump())

    def branch_sha(self, branch: str) -> str | None:
        return self._branch_sha(branch)

    def git_push_env(self) -> dict[str, str]:
        return {}

    # -- reviewer-only ---------------------------------------------------------------------------------

    def merge(self, number: int, *, message: str | None = None) -> PullRequest:
        """Merge an open pull request into its base with a merge commit; no work tree needed.

        Only a human reviewer calls this (``leviathan forge merge``); Leviathan itself never merges. On a
        conflict nothing changes and ForgeConflict lists the conflicting files.
        """
        with self._locked():
            record = self._load(number)
            if record.state != "open":
                raise ForgeConflict(f"pull request #{number} is {record.state}; only open ones can be merged")
            base_sha = self._branch_sha(record.base)
            head_sha = self._branch_sha(record.head)
            if base_sha is None or head_sha is None:
                missing = record.base if base_sha is None else record.head
                raise ForgeError(f"{self.path}: branch {missing!r} of pull request #{number} is gone")
            returncode, fields = self._merge_tree(base_sha, head_sha)
            if returncode == 1:
                files = sorted({f for f in fields[1:] if f})
                listed = ", ".join(files) or "unknown files"
                raise ForgeConflict(f"pull request #{number} conflicts with {record.base} in: {listed}")
            tree = fields[0].strip()
            text = message or f"Merge pull request #{number} from {record.head}\n\n{record.title}\n"
            merge_sha = self._git("commit-tree", tree, "-p", base_sha, "-p", head_sha, "-m", text).strip()
            try:
                self._git("update-ref", f"refs/heads/{record.base}", merge_sha, base_sha)
            except ForgeError as exc:
                raise ForgeConflict(f"{record.base} moved while merging #{number}; nothing merged") from exc
            now = _now()
            merged = self._update(
                record, state="merged", merged_at=now, closed_at=now, merge_sha=merge_sha, head_sha=head_sha
            )
        return merged.pull()

    def diff(self, number: int) -> str:
        """The pull request's changes as the forge shows them: ``base...head`` (from the merge base).

        A merged pull request is diffed between its merge commit's parents, so later base commits do not
        leak into it; others against the base branch's current tip.
        """
        pr = self.get_pr(number)
        if pr.state == "merged":
            left, right = f"{pr.merge_sha}^1", f"{pr.merge_sha}^2"
        else:
            left, right = f"refs/heads/{pr.base}", pr.head_sha or f"refs/heads/{pr.head}"
        return self._git("diff", f"{left}...{right}", "--")
