"""Forges hosting target repositories: the embedded local forge now, GitHub later."""

from __future__ import annotations

from leviathan_lib.forge.base import (
    AGENT_BRANCH_PREFIX,
    Forge,
    ForgeConflict,
    ForgeError,
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
    "LocalForge",
    "PullRequest",
    "PullRequestNotFound",
    "open_forge",
    "require_agent_branch",
]


def open_forge(kind: str, repo_url: str, conn_id: str | None = None) -> Forge:
    """The forge of a target (``TargetConfig.forge``); ``conn_id`` names credentials and is unused locally."""
    if kind == "local":
        return LocalForge(repo_url)
    if kind == "github":
        raise ForgeError("GitHub forge not available yet")
    raise ValueError(f"unknown forge kind {kind!r}: expected 'local' or 'github'")
