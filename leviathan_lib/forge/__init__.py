"""Forges hosting target repositories: the embedded local forge and GitHub, behind one ``Forge`` interface.

``open_forge`` picks the forge a target names; no forge can merge. May import: ``git``, ``core``.
"""

from __future__ import annotations

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
    "open_forge",
    "require_agent_branch",
]


def open_forge(
    kind: str, repo_url: str, conn_id: str | None = None, *, draft: bool = False, labels: tuple[str, ...] = (),
    reviewers: tuple[str, ...] = (), assignees: tuple[str, ...] = (),
) -> Forge:
    """The forge of a target (``TargetConfig.forge``); new PRs get ``labels``, ``reviewers`` and ``assignees``.

    ``conn_id`` names the Airflow connection holding GitHub credentials (default ``github_default``);
    the local forge needs none. GitHub support is imported only when used, keeping DAG parsing light.
    """
    if kind == "local":
        return LocalForge(repo_url, labels=labels, reviewers=reviewers, assignees=assignees)
    if kind == "github":
        from leviathan_lib.forge.github import DEFAULT_CONN_ID, GithubForge

        return GithubForge(repo_url, conn_id or DEFAULT_CONN_ID, draft=draft, labels=labels, reviewers=reviewers,
                           assignees=assignees)
    raise ValueError(f"unknown forge kind {kind!r}: expected 'local' or 'github'")
