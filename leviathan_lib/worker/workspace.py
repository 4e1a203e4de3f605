"""The worker's git plumbing: a pinned clone and the exact change the recipe made.

Git runs with no system or user configuration, no hooks and no prompts, so nothing from the machine
the worker runs on (credential helpers, diff drivers, aliases) can change what is cloned or diffed.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Transports a clone may use; ``ext::`` and friends (which run commands) are never allowed.
_ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
_GIT_CONFIG = [
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.quotePath=false",
    "-c", "diff.noprefix=false",
    "-c", "diff.mnemonicPrefix=false",
    "-c", "protocol.ext.allow=never",
]  # fmt: skip
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


class GitFailed(Exception):
    """A git command exited non-zero; the message carries git's own explanation."""


def git_env(home: Path) -> dict[str, str]:
    """A closed environment for git: only PATH survives from the parent."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": _ALLOWED_PROTOCOLS,
        "GIT_AUTHOR_NAME": "Leviathan",
        "GIT_AUTHOR_EMAIL": "leviathan@localhost",
        "GIT_COMMITTER_NAME": "Leviathan",
        "GIT_COMMITTER_EMAIL": "leviathan@localhost",
    }


#: A read-only clone token (the Kubernetes backend mounts it from a Secret); used for the clone only.
CLONE_TOKEN_ENV = "LEVIATHAN_GIT_READ_TOKEN"


def clone_auth_env(repo_url: str) -> dict[str, str]:
    """Send the read-only token to the repository's own https origin only, as a header (never in the URL)."""
    from leviathan_lib.git.auth import extra_header_env

    token = os.environ.get(CLONE_TOKEN_ENV, "")
    if not token or not repo_url.startswith(("https://", "http://")):
        return {}
    return extra_header_env(repo_url, token)


def _git(args: list[str], *, home: Path, cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> bytes:
    proc = subprocess.run(
        ["git", *_GIT_CONFIG, *args],
        cwd=cwd,
        env={**git_env(home), **(extra_env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitFailed(
            f"git {args[0]} failed (exit {proc.returncode}): {' '.join(detail[-3:]) or 'no output'}"
        )
    return proc.stdout


def clone_at(repo_url: str, commit_sha: str, dest: Path, *, home: Path) -> None:
    """Fresh clone of ``repo_url`` into ``dest`` with ``commit_sha`` checked out detached, verified."""
    _git(["clone", "--quiet", "--no-checkout", "--", repo_url, str(dest)], home=home,
         extra_env=clone_auth_env(repo_url))
    _git(["checkout", "--quiet", "--detach", commit_sha], home=home, cwd=dest)
    head = _git(["rev-parse", "--verify", "HEAD"], home=home, cwd=dest).decode().strip()
    if head != commit_sha:
        raise GitFailed(f"HEAD is {head} after checkout, expected {commit_sha}")


@dataclass(frozen=True)
class Change:
    path: str
    old_mode: str
    new_mode: str


@dataclass(frozen=True)
class Changes:
    entries: list[Change]
    patch: bytes

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.entries]


def _parse_raw(raw: bytes) -> list[Change]:
    """Parse ``git diff --raw -z --no-renames``: ``:old new sha sha status NUL path NUL`` per entry."""
    fields = raw.split(b"\0")
    entries = []
    for header, path in zip(fields[0::2], fields[1::2], strict=False):
        if not header:
            break
        old_mode, new_mode = header.lstrip(b":").split(b" ")[:2]
        # Undecodable names are kept visible (as escapes) so the scope check can reject them by name.
        entries.append(Change(path.decode("utf-8", "backslashreplace"), old_mode.decode(), new_mode.decode()))
    return entries


def collect_changes(checkout: Path, base_sha: str, *, home: Path) -> Changes:
    """Stage everything (new files included) and describe it against ``base_sha``."""
    _git(["add", "--all"], home=home, cwd=checkout)
    raw = _git(["diff", "--cached", "--raw", "-z", *_DIFF_FLAGS, base_sha], home=home, cwd=checkout)
    patch = _git(
        ["diff", "--cached", "--binary", "--full-index", *_DIFF_FLAGS, base_sha], home=home, cwd=checkout
    )
    return Changes(_parse_raw(raw), patch)
