"""A small, shared way to run git.

Every git subprocess gets a minimal, explicit environment (no inherited tokens, a fixed identity, no
prompts), argv lists only, and one error type carrying what failed, so callers never parse tracebacks.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

IDENTITY = {
    "GIT_AUTHOR_NAME": "Leviathan",
    "GIT_AUTHOR_EMAIL": "leviathan@localhost",
    "GIT_COMMITTER_NAME": "Leviathan",
    "GIT_COMMITTER_EMAIL": "leviathan@localhost",
}

#: Used when the caller has no HOME: a path nobody can plant a ``.gitconfig`` in (unlike a shared tmp dir).
FALLBACK_HOME = "/nonexistent"

_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class GitError(RuntimeError):
    """A git command failed or timed out."""

    def __init__(self, argv: list[str], returncode: int, stderr: str):
        self.argv = argv
        self.returncode = returncode
        # Belt and braces: git echoes URLs in errors; never let credentials embedded in one through.
        self.stderr = _URL_USERINFO.sub("***@", stderr).strip()
        super().__init__(f"{' '.join(argv[:2])} failed (exit {returncode}): {_headline(self.stderr)}")


def _headline(stderr: str) -> str:
    """The line of git's error output that says what went wrong (git adds advice lines after it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "no error output"


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a git subprocess: only what git needs, never the rest of ``os.environ``."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME") or FALLBACK_HOME,
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        **IDENTITY,
    }
    env.update(extra or {})
    return env


def run_git(
    args: list[str],
    cwd: str | Path | None = None,
    *,
    input: bytes | str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``git *args``; ``env`` adds to :func:`git_env`.

    With ``text`` (the default) stdout/stderr are ``str``, decoded as UTF-8 with replacement so odd bytes
    in a diff cannot crash a caller; otherwise stdout is ``bytes`` (stderr is always ``str``).
    """
    argv = ["git", *args]
    data = input.encode() if isinstance(input, str) else input
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            input=data,
            env=git_env(env),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(argv, -1, f"timed out after {timeout:g}s") from exc
    except OSError as exc:  # git missing, or cwd does not exist
        raise GitError(argv, -1, str(exc)) from exc
    stdout = proc.stdout.decode("utf-8", "replace") if text else proc.stdout
    stderr = proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise GitError(argv, proc.returncode, stderr)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def rev_parse(repo: str | Path, rev: str) -> str:
    """The object name ``rev`` resolves to in ``repo`` (work tree or bare); GitError if it does not."""
    return run_git(["rev-parse", "--verify", "--end-of-options", rev], cwd=repo).stdout.strip()


def ls_remote_head(url: str, branch: str, *, env: dict[str, str] | None = None) -> str | None:
    """SHA of ``refs/heads/<branch>`` on the remote, None if absent; GitError if the remote is unreachable."""
    ref = f"refs/heads/{branch}"
    out = run_git(["ls-remote", "--", url, ref], env=env).stdout
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:  # ls-remote patterns match ref-name tails; keep the exact ref only
            return sha
    return None


def init_bare(path: str | Path, default_branch: str = "main") -> Path:
    """Create a bare repository whose HEAD names ``default_branch``."""
    path = Path(path)
    run_git(["init", "--quiet", "--bare", f"--initial-branch={default_branch}", "--", str(path)])
    return path
