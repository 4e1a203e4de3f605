"""The worker's git plumbing: a pinned clone and the exact change the recipe made.

Git runs through :func:`leviathan_lib.git.runner.run_git` with the ``UNTRUSTED_WORKSPACE`` profile: no
system or user configuration, no hooks, no prompts, a transport allowlist and a timeout, so nothing
from the machine the worker runs on (credential helpers, diff drivers, aliases) can change what is
cloned or diffed, and the checkout's own ``.git/config`` (which the recipe can write) is reset before
git reads it again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from leviathan_lib.git.raw_diff import RawEntry, parse_raw_diff
from leviathan_lib.git.runner import GitError, GitProfile, remote_arg, reset_repo_config, run_git
from leviathan_lib.git.urls import parse_repo_url

_DIFF_FLAGS = [
    "--no-renames",
    "--no-ext-diff",
    "--no-textconv",
    "--no-color",
    "--src-prefix=a/",
    "--dst-prefix=b/",
]
#: Git modes that are never delivered: a symlink can point outside the scope, a submodule can be anything.
FORBIDDEN_MODES = {"120000": "symlink", "160000": "submodule"}


#: What the worker's git calls raise (kept under this name for :mod:`leviathan_lib.worker.attempt`).
GitFailed = GitError


#: A read-only clone token (the Kubernetes backend mounts it from a Secret); used for the clone only.
CLONE_TOKEN_ENV = "LEVIATHAN_GIT_READ_TOKEN"


def clone_auth_env(repo_url: str) -> dict[str, str]:
    """Send the read-only token to the repository's own https origin only, as a header (never in the URL)."""
    from leviathan_lib.git.auth import extra_header_env

    token = os.environ.get(CLONE_TOKEN_ENV, "")
    if not token or parse_repo_url(repo_url).origin is None:
        return {}
    return extra_header_env(repo_url, token)


def _git(args: list[str], *, home: Path, cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> bytes:
    out: bytes = run_git(args, cwd=cwd, env=extra_env, home=home, text=False,
                         profile=GitProfile.UNTRUSTED_WORKSPACE).stdout  # fmt: skip
    return out


def clone_at(repo_url: str, commit_sha: str, dest: Path, *, home: Path) -> None:
    """Fresh clone of ``repo_url`` into ``dest`` with ``commit_sha`` checked out detached, verified.

    ``--no-local`` copies objects even from a local mirror (no hard links, no alternates), so nothing
    the worker does to its clone can reach the repository it came from.
    """
    _git(["clone", "--quiet", "--no-checkout", "--no-local", "--", remote_arg(repo_url), str(dest)], home=home,
         extra_env=clone_auth_env(repo_url))  # fmt: skip
    _git(["checkout", "--quiet", "--detach", commit_sha, "--"], home=home, cwd=dest)
    head = _git(["rev-parse", "--verify", "HEAD"], home=home, cwd=dest).decode().strip()
    if head != commit_sha:
        raise GitFailed(["git", "checkout", commit_sha], 0, f"HEAD is {head} after checkout, expected {commit_sha}")


@dataclass(frozen=True)
class Changes:
    entries: list[RawEntry]
    patch: bytes

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.entries]


def collect_changes(checkout: Path, base_sha: str, *, home: Path) -> Changes:
    """Stage everything (new files included) and describe it against ``base_sha``.

    The recipe could have written ``.git/config`` (filter drivers, includes) or planted alternates, so
    they are reset first: the change is read by git as cloned, not as the recipe configured it.
    """
    reset_repo_config(checkout / ".git", bare=False)
    _git(["add", "--all"], home=home, cwd=checkout)
    raw = _git(["diff", "--cached", "--raw", "-z", *_DIFF_FLAGS, base_sha, "--"], home=home, cwd=checkout)
    patch = _git(
        ["diff", "--cached", "--binary", "--full-index", *_DIFF_FLAGS, base_sha, "--"], home=home, cwd=checkout
    )
    return Changes(parse_raw_diff(raw), patch)


def tree_of(checkout: Path, *, home: Path) -> str:
    """The git tree of everything in the checkout now (``.gitignore``d files aside): what a diff would see.

    Two equal trees mean nothing a patch could carry changed in between (contents, new files, modes).
    """
    reset_repo_config(checkout / ".git", bare=False)
    _git(["add", "--all"], home=home, cwd=checkout)
    return _git(["write-tree"], home=home, cwd=checkout).decode().strip()


def restore(checkout: Path, *, home: Path) -> None:
    """Put the checkout back to its HEAD commit, ignored and untracked files removed too."""
    reset_repo_config(checkout / ".git", bare=False)
    _git(["reset", "--quiet", "--hard", "HEAD"], home=home, cwd=checkout)
    _git(["clean", "-ffdxq"], home=home, cwd=checkout)
