"""Forges hosting target repositories: the embedded local forge and GitHub, behind one ``Forge`` interface.

``open_forge`` picks the forge a target names; no forge can merge. May import: ``git``, ``core``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from leviathan_lib.forge.base import (
    AGENT_BRANCH_PREFIX,
    Forge,
    ForgeConflict,
    ForgeError,
    Issue,
    IssueNotFound,
    LeaseLost,
    PullRequest,
    PullRequestNotFound,
    require_agent_branch,
)
from leviathan_lib.forge.local import LocalForge

if TYPE_CHECKING:
    from leviathan_lib.core.config import TargetConfig

__all__ = [
    "AGENT_BRANCH_PREFIX",
    "Forge",
    "ForgeConflict",
    "ForgeError",
    "Issue",
    "IssueNotFound",
    "LeaseLost",
    "LocalForge",
    "PullRequest",
    "PullRequestNotFound",
    "connect_once",
    "open_forge",
    "require_agent_branch",
    "target_forge",
]

#: The forges opened inside :func:`connect_once`, by :func:`open_forge`'s arguments.
_OPENED: ContextVar[dict[tuple[object, ...], Forge] | None] = ContextVar("leviathan_opened_forges", default=None)


@contextmanager
def connect_once() -> Iterator[None]:
    """Within it, :func:`open_forge` answers the same arguments with the same forge: a task reads its
    credentials and opens its session once, however many of its steps ask. Outside it every call connects
    anew, so a long-lived worker process never keeps a forge (or its token) beyond the task."""
    token = _OPENED.set({})
    try:
        yield
    finally:
        _OPENED.reset(token)


def target_forge(target: TargetConfig, repo_url: str) -> Forge:
    """The forge of ``target`` with its PR options, always the same arguments, so that :func:`connect_once`
    shares one forge among a task's steps."""
    return open_forge(target.forge, repo_url, target.forge_conn_id, draft=target.pr_draft,
                      labels=tuple(target.pr_labels), reviewers=tuple(target.pr_reviewers),
                      assignees=tuple(target.pr_assignees))


def open_forge(
    kind: str, repo_url: str, conn_id: str | None = None, *, draft: bool = False, labels: tuple[str, ...] = (),
    reviewers: tuple[str, ...] = (), assignees: tuple[str, ...] = (),
) -> Forge:
    """The forge of a target (``TargetConfig.forge``); new PRs get ``labels``, ``reviewers`` and ``assignees``.

    ``conn_id`` names the Airflow connection holding GitHub credentials (default ``github_default``);
    the local forge needs none. GitHub support is imported only when used, keeping DAG parsing light.
    """
    opened = _OPENED.get()
    key = (kind, repo_url, conn_id, draft, labels, reviewers, assignees)
    if opened is not None and key in opened:
        return opened[key]
    forge = _open(kind, repo_url, conn_id, draft=draft, labels=labels, reviewers=reviewers, assignees=assignees)
    if opened is not None:
        opened[key] = forge
    return forge


def _open(kind: str, repo_url: str, conn_id: str | None, *, draft: bool, labels: tuple[str, ...],
          reviewers: tuple[str, ...], assignees: tuple[str, ...]) -> Forge:
    if kind == "local":
        return LocalForge(repo_url, labels=labels, reviewers=reviewers, assignees=assignees)
    if kind == "github":
        from leviathan_lib.forge.github import DEFAULT_CONN_ID, GithubForge

        return GithubForge(repo_url, conn_id or DEFAULT_CONN_ID, draft=draft, labels=labels, reviewers=reviewers,
                           assignees=assignees)
    raise ValueError(f"unknown forge kind {kind!r}: expected 'local' or 'github'")
