"""The one way Leviathan runs git, with an explicit safety profile and a timeout on every call.

Both profiles give git a closed environment (no inherited tokens, a fixed identity, no prompts, no
system or global config, a HOME nobody can plant a ``.gitconfig`` in), argv lists only, and command-line
config that outranks anything a repository's own ``config`` says: no hooks, no fsmonitor, no pager,
editor, askpass, credential helper or ssh command taken from a repository, and a transport allowlist
(``file``, ``https``, ``http``, ``ssh``; never ``ext`` or ``fd``, which run commands). So a repository
written by untrusted code (the worker's checkout, a planted mirror, a target's own ``.git/config``)
cannot make git run anything. One error type carries what failed and a stable code.

``ORCHESTRATOR`` is for mirrors, scratch repositories and pushes; ``UNTRUSTED_WORKSPACE`` for the
worker's checkout of target-repository content (longer default timeout; paths and diff headers in the
fixed format the worker parses).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from enum import Enum
from pathlib import Path
from typing import Any

from leviathan_lib.core.errors import LeviathanError
from leviathan_lib.core.git_refs import check_branch_name
from leviathan_lib.core.repo_url import RepoUrlError, parse_repo_url
from leviathan_lib.core.secrets_scan import redact_text

IDENTITY = {
    "GIT_AUTHOR_NAME": "Leviathan",
    "GIT_AUTHOR_EMAIL": "leviathan@localhost",
    "GIT_COMMITTER_NAME": "Leviathan",
    "GIT_COMMITTER_EMAIL": "leviathan@localhost",
}

#: HOME for every git call: a path nobody can plant a ``.gitconfig`` in (unlike a shared tmp dir).
FALLBACK_HOME = "/nonexistent"

#: Transports git may use; ``ext::`` and ``fd::`` (which run commands or use descriptors) never.
ALLOWED_PROTOCOLS = ("file", "https", "http", "ssh")

class GitProfile(Enum):
    """Who the repository git operates on belongs to, and so how long git may take."""

    ORCHESTRATOR = "orchestrator"
    UNTRUSTED_WORKSPACE = "untrusted_workspace"


DEFAULT_TIMEOUT = {GitProfile.ORCHESTRATOR: 120.0, GitProfile.UNTRUSTED_WORKSPACE: 300.0}

#: Command-line config outranks system, global and repository config; these are the keys through which
#: a repository's own config (or a planted one) could otherwise run a program.
_HARDENING = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.editor=:",
    "core.askPass=",
    "core.sshCommand=ssh",
    "credential.helper=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "protocol.allow=never",
    *(f"protocol.{name}.allow=always" for name in ALLOWED_PROTOCOLS),
]
_WORKSPACE = [
    "core.quotePath=false",
    "diff.noprefix=false",
    "diff.mnemonicPrefix=false",
]


def hardening_args(profile: GitProfile = GitProfile.ORCHESTRATOR) -> list[str]:
    """The ``-c key=value`` options every git call of ``profile`` starts with."""
    pairs = _HARDENING + (_WORKSPACE if profile is GitProfile.UNTRUSTED_WORKSPACE else [])
    return [arg for pair in pairs for arg in ("-c", pair)]


class GitError(LeviathanError):
    """A git command failed (``git_failed``), timed out (``git_timeout``) or was refused (``git_refused``)."""

    def __init__(self, argv: list[str], returncode: int, stderr: str, *, code: str = "git_failed"):
        self.argv = argv
        self.returncode = returncode
        # Belt and braces: git echoes URLs in errors; never let credentials embedded in one through.
        self.stderr = redact_text(stderr).strip()
        super().__init__(code, f"{_command(argv)} failed (exit {returncode}): {_headline(self.stderr)}")


def _command(argv: list[str]) -> str:
    """``git <subcommand>``, skipping the leading ``-c``/``--git-dir`` options."""
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in ("-c", "-C", "--git-dir", "--work-tree") else 1
    return f"git {argv[i]}" if i < len(argv) else "git"


def _headline(stderr: str) -> str:
    """The line of git's error output that says what went wrong (git adds advice lines after it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "no error output"


def git_env(extra: dict[str, str] | None = None, *, home: str | Path | None = None) -> dict[str, str]:
    """The environment for a git subprocess: only what git needs, never the rest of ``os.environ``.

    HOME is ``home`` (the worker's own empty one) or a nonexistent path, never the caller's: a recipe
    that writes ``~/.gitconfig`` must not configure the orchestrator's next fetch or push.
    """
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home) if home is not None else FALLBACK_HOME,
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "GIT_ALLOW_PROTOCOL": ":".join(ALLOWED_PROTOCOLS),
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
    timeout: float | None = None,
    text: bool = True,
    profile: GitProfile = GitProfile.ORCHESTRATOR,
    home: str | Path | None = None,
) -> subprocess.CompletedProcess[Any]:
    """Run ``git <hardening> *args``; ``env`` adds to :func:`git_env` (``home`` sets its HOME).

    ``timeout`` defaults to the profile's; when it expires git is killed and GitError ``git_timeout``
    raised. With ``text`` (the default) stdout/stderr are ``str``, decoded as UTF-8 with replacement so
    odd bytes in a diff cannot crash a caller; otherwise stdout is ``bytes`` (stderr is always ``str``).
    """
    limit = DEFAULT_TIMEOUT[profile] if timeout is None else timeout
    shown = ["git", *args]  # what errors name: the hardening options are the same on every call
    argv = ["git", "--no-pager", *hardening_args(profile), *args]
    data = input.encode() if isinstance(input, str) else input
    try:
        # A session of its own: no controlling terminal to prompt on, and one group to kill on timeout.
        proc = subprocess.Popen(
            argv, cwd=cwd, env=git_env(env, home=home), start_new_session=True,
            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    except OSError as exc:  # git missing, or cwd does not exist
        raise GitError(shown, -1, str(exc)) from exc
    with proc:
        try:
            out, err = proc.communicate(data, timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # git and anything it started (ssh, a helper)
            proc.communicate()
            raise GitError(shown, -1, f"timed out after {limit:g}s", code="git_timeout") from None
    stdout = out.decode("utf-8", "replace") if text else out
    stderr = err.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise GitError(shown, proc.returncode, stderr)
    return subprocess.CompletedProcess(shown, proc.returncode, stdout, stderr)


def remote_arg(url: str) -> str:
    """``url`` if it may be handed to git as a repository; GitError ``git_refused`` if not."""
    try:
        parse_repo_url(url)
    except RepoUrlError as exc:
        raise GitError(["git"], -1, f"refusing repository {url[:80]!r}: {exc}", code="git_refused") from None
    return url


def branch_arg(branch: str) -> str:
    """``branch`` if it is a safe branch name (see :mod:`leviathan_lib.core.git_refs`); GitError if not."""
    try:
        return check_branch_name(branch)
    except ValueError as exc:
        raise GitError(["git"], -1, f"refusing branch {branch[:80]!r}: {exc}", code="git_refused") from None


#: A git directory's ``config`` as ``git init`` writes it; see :func:`reset_repo_config`.
_PLAIN_CONFIG = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = {bare}\n"


def reset_repo_config(git_dir: str | Path, *, bare: bool) -> None:
    """Replace ``git_dir``'s config with a plain one and drop alternates before git trusts it again.

    Command-line hardening covers the keys known to run programs; this covers the rest (filter and
    diff drivers, includes, ``remote.*.uploadpack``) for repositories Leviathan owns (mirrors) or that
    untrusted code could write (the worker's checkout), and stops a planted ``objects/info/alternates``
    from feeding objects in from elsewhere.
    """
    git_dir = Path(git_dir)
    (git_dir / "config").write_text(_PLAIN_CONFIG.format(bare="true" if bare else "false"), encoding="utf-8")
    (git_dir / "objects" / "info" / "alternates").unlink(missing_ok=True)


def rev_parse(repo: str | Path, rev: str) -> str:
    """The object name ``rev`` resolves to in ``repo`` (work tree or bare); GitError if it does not."""
    out: str = run_git(["rev-parse", "--verify", "--end-of-options", rev], cwd=repo).stdout
    return out.strip()


def ls_remote_head(url: str, branch: str, *, env: dict[str, str] | None = None) -> str | None:
    """SHA of ``refs/heads/<branch>`` on the remote, None if absent; GitError if the remote is unreachable."""
    ref = f"refs/heads/{branch_arg(branch)}"
    out: str = run_git(["ls-remote", "--", remote_arg(url), ref], env=env).stdout
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:  # ls-remote patterns match ref-name tails; keep the exact ref only
            return sha
    return None


def push_delete_with_lease(url: str, branch: str, expect: str, *, env: dict[str, str] | None = None) -> bool:
    """Delete ``refs/heads/<branch>`` on ``url`` only while it still points at ``expect``: True when deleted,
    False when the lease did not hold (the branch moved or is gone); GitError when the push itself failed.

    The condition is git's own ``--force-with-lease``, checked by the receiving side under its ref lock, so
    a human commit pushed between a read and the delete is never lost (a REST delete has no condition).
    """
    ref = f"refs/heads/{branch_arg(branch)}"
    with tempfile.TemporaryDirectory(prefix="leviathan-delete-") as tmp:
        run_git(["init", "--quiet", "--bare", tmp])
        proc = run_git(["push", "--porcelain", f"--force-with-lease={ref}:{expect}", "--", remote_arg(url),
                        f":{ref}"], cwd=tmp, env=env, check=False)
    if proc.returncode == 0:
        return True
    if any(line.startswith("!") and "stale info" in line for line in proc.stdout.splitlines()):
        return False
    raise GitError(["git", "push", "--delete", ref], proc.returncode, proc.stderr or proc.stdout)


def init_bare(path: str | Path, default_branch: str = "main") -> Path:
    """Create a bare repository whose HEAD names ``default_branch``."""
    path = Path(path)
    branch = branch_arg(default_branch)
    run_git(["init", "--quiet", "--bare", f"--initial-branch={branch}", "--", str(path)])
    return path
