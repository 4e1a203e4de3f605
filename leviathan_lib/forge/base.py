"""What Leviathan needs from a code forge, independent of which forge it is.

There is deliberately no ``merge``: Leviathan never merges; merging is a human's decision on the forge.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from leviathan_lib.core.ci import CiStatus
from leviathan_lib.core.commands import PrComment, Review
from leviathan_lib.core.errors import CodedError
from leviathan_lib.core.names import AGENT_BRANCH_PREFIX, require_agent_branch
from leviathan_lib.git.runner import GitError, push_delete_with_lease

PullState = Literal["open", "merged", "closed"]
IssueState = Literal["open", "closed"]


class ForgeError(CodedError):
    """The forge could not answer (unreachable, unreadable). Guardrails treat this as unknown state."""

    CODE = "forge_error"


class ForgeConflict(ForgeError):
    """The forge refused because of its current state (merge conflict, an open PR already exists, ...)."""

    CODE = "forge_conflict"


class LeaseLost(ForgeError):
    """A branch moved off the commit Leviathan last pushed: someone else's work is on it, so it is kept."""

    CODE = "human_edited"


class PullRequestNotFound(ForgeError):
    """No pull request with that number."""

    CODE = "pr_not_found"


class IssueNotFound(ForgeError):
    """No issue with that number (never created, deleted, or transferred away)."""

    CODE = "issue_not_found"


class Issue(BaseModel):
    """An issue as any forge reports it (Leviathan's only issue is a target's dashboard)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int
    title: str
    body: str
    state: IssueState
    url: str
    labels: tuple[str, ...] = ()
    #: Who last edited the body, when the forge says (the local forge). GitHub's REST API names no editor;
    #: there only the issue's author (Leviathan's own account) and people with write access may edit it.
    edited_by: str | None = None


class PullRequest(BaseModel):
    """A pull request as any forge reports it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int
    title: str
    body: str
    head: str
    base: str
    state: PullState
    url: str
    created_at: datetime
    updated_at: datetime
    merged_at: datetime | None = None
    closed_at: datetime | None = None
    head_sha: str | None = None
    merge_sha: str | None = None

    @model_validator(mode="after")
    def _consistent_state(self) -> PullRequest:
        if self.state == "merged" and (self.merged_at is None or self.merge_sha is None):
            raise ValueError("a merged pull request needs merged_at and merge_sha")
        if self.state != "merged" and self.merged_at is not None:
            raise ValueError(f"a {self.state} pull request cannot have merged_at")
        if self.state == "open" and self.closed_at is not None:
            raise ValueError("an open pull request cannot have closed_at")
        return self


class Forge(ABC):
    """A forge hosting one target repository."""

    @property
    @abstractmethod
    def repo_url(self) -> str:
        """A git URL for fetch/push. Never contains a secret; see :meth:`git_push_env` for credentials."""

    @abstractmethod
    def default_branch(self) -> str: ...

    @abstractmethod
    def list_open_prs(self, head_prefix: str = AGENT_BRANCH_PREFIX) -> list[PullRequest]:
        """Open pull requests whose head branch starts with ``head_prefix``, oldest first."""

    @abstractmethod
    def find_pr_by_head(self, head: str) -> PullRequest | None:
        """The newest pull request (any state) from branch ``head``, or None."""

    @abstractmethod
    def get_pr(self, number: int) -> PullRequest:
        """Raises PullRequestNotFound if there is no such pull request."""

    @abstractmethod
    def create_pr(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        """Open a pull request.

        Raises ForgeError if ``head`` or ``base`` does not exist on the forge and ForgeConflict if ``head``
        already has an open pull request. Idempotency is the caller's job (via :meth:`find_pr_by_head`);
        the forge only guarantees it never holds two open pull requests for one head.
        """

    @abstractmethod
    def update_pr(self, number: int, *, body: str) -> PullRequest:
        """Replace the body of Leviathan's open pull request ``number`` (after it pushed a new head)."""

    @abstractmethod
    def close_pr(self, number: int) -> PullRequest:
        """Close pull request ``number`` without merging (a superseded attempt); its branch is kept.
        Closing a closed pull request is a no-op; a merged one raises ForgeConflict."""

    @abstractmethod
    def mergeable(self, number: int) -> bool | None:
        """Whether open pull request ``number`` merges into its base without conflicts; None while the forge
        does not know yet (GitHub computes it in the background) or a branch is gone."""

    @abstractmethod
    def comment(self, number: int, body: str) -> None:
        """Add a comment to pull request ``number`` (never retried blindly: a lost answer is a ForgeError)."""

    def react(self, comment_id: int, content: str) -> None:
        """Add reaction ``content`` (``rocket``, ``confused``, ...) to conversation comment ``comment_id``; a
        forge without reactions (the local one) does nothing."""
        del comment_id, content

    @abstractmethod
    def list_reviews(self, number: int) -> list[Review]:
        """The reviews of pull request ``number``, oldest first (bounded; the newest are kept)."""

    @abstractmethod
    def list_comments(self, number: int) -> list[PrComment]:
        """The conversation comments of pull request ``number``, oldest first (bounded; the newest kept)."""

    @abstractmethod
    def permission(self, login: str) -> str:
        """``login``'s permission on the repository: admin, maintain, write, triage, read, none, or unknown
        when the forge cannot say (which never permits anything)."""

    @abstractmethod
    def branch_sha(self, branch: str) -> str | None:
        """The commit ``branch`` points at on the forge, or None when there is no such branch."""

    def delete_branch(self, branch: str, *, lease: str) -> None:
        """Delete an ``agent/…`` branch while it still points at ``lease``, the commit Leviathan last pushed.

        Anything but an agent branch raises ValueError before any I/O. An absent branch is not an error; one
        that moved (a human pushed to it) raises :class:`LeaseLost` and keeps the human's commit.
        """
        branch = require_agent_branch(branch)
        try:
            deleted = push_delete_with_lease(self.repo_url, branch, lease, env=self.git_push_env())
        except GitError as exc:
            raise ForgeError(f"cannot delete {branch}: {exc.stderr}") from None  # GitError redacts
        if deleted:
            return
        tip = self.branch_sha(branch)
        if tip is not None:
            raise LeaseLost(f"{branch} points at {tip}, not at Leviathan's push {lease}: not deleted")

    @abstractmethod
    def git_push_env(self) -> dict[str, str]:
        """Extra environment for ``git push``/``fetch`` against :attr:`repo_url` (credentials live here)."""

    # -- issues (the dashboard, cycle/dashboard_sync.py) ----------------------------------------------------

    @abstractmethod
    def create_issue(self, *, title: str, body: str, label: str) -> Issue:
        """Open an issue labelled ``label``. Not idempotent: the caller first looks with :meth:`find_issue`."""

    @abstractmethod
    def get_issue(self, number: int) -> Issue:
        """Raises IssueNotFound if there is no such issue (any more)."""

    @abstractmethod
    def update_issue(self, number: int, *, title: str, body: str) -> Issue:
        """Replace an issue's title and body; its state (open or closed) is left as it is."""

    @abstractmethod
    def find_issue(self, *, title: str, label: str) -> Issue | None:
        """The oldest OPEN issue (not a pull request) titled ``title`` and labelled ``label``, or None.

        Labels can only be set by people with triage access, so a stranger's issue is never adopted.
        """

    # -- CI (cycle/ci_sync.py) -------------------------------------------------------------------------------

    @abstractmethod
    def ci_status(self, sha: str) -> CiStatus:
        """The combined CI state of commit ``sha`` (``none`` when no CI reported on it). Raises ForgeError
        when the forge cannot answer; the caller records ``unknown``, never success."""
