"""Read a target's backlog with the forge's git credentials (private repositories need them)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from leviathan_lib.contracts.xcom import CycleError, ReadResult
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.cycle.steps import read_backlog
from leviathan_lib.forge import target_forge
from leviathan_lib.forge.base import ForgeError


def forge_git_env(target: TargetConfig, repo_url: str) -> dict[str, str] | None:
    """The forge's git credentials as environment (None for the local forge); ForgeError without them."""
    if target.forge == "local":
        return None
    return target_forge(target, repo_url).git_push_env()


def read_with_forge_auth(target: TargetConfig, repo_url: str, cache_dir: Path, *,
                         as_of: datetime | None) -> ReadResult:
    """:func:`~leviathan_lib.cycle.steps.read_backlog`, fetching with the forge's credentials; a forge
    whose credentials cannot be had is a read error (``forge_state_unknown``), never an exception."""
    try:
        git_env = forge_git_env(target, repo_url)
    except ForgeError as exc:
        return ReadResult(repo_url=repo_url, branch=target.target_branch, backlog_path=target.backlog_path,
                          as_of=as_of, error=CycleError(code="forge_state_unknown", message=str(exc)))
    return read_backlog(target, repo_url, cache_dir, as_of=as_of, git_env=git_env)
