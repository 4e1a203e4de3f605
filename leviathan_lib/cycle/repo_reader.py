"""Read the target repository at a pinned commit without a work tree.

Local repositories (a path or ``file://`` URL) are read in place; remote ones through a bare mirror
kept under a cache directory, refreshed with one fetch of the target branch per cycle. The URL and
branch are validated before git sees them, every URL and ref argument follows ``--`` or a fixed
prefix, and a mirror's config is reset before each use so nothing planted in it is trusted.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from leviathan_lib.core.errors import CodedError
from leviathan_lib.core.read_limits import TooLarge
from leviathan_lib.core.yamlsrc import decode_utf8
from leviathan_lib.git.runner import GitError, branch_arg, remote_arg, reset_repo_config, run_git
from leviathan_lib.git.urls import RepoUrlError, parse_repo_url


class RepoUnreachable(CodedError):
    """The target repository or branch could not be read."""

    CODE = "repo_unreachable"


class NoCommitAtDate(CodedError):
    """A replay's date is before the branch's first commit: there was nothing to decide on then."""

    CODE = "no_commit_at_date"


class Snapshot(BaseModel):
    """What a cycle read: the branch tip it pinned and the backlog file's bytes at that commit."""

    repo_url: str
    branch: str
    commit_sha: str
    path: str
    data: bytes | None  # None when the file does not exist at that commit

    def text(self) -> str | None:
        """The file as text: strict UTF-8, a :class:`ValidationFailed` naming the first bad byte."""
        return None if self.data is None else decode_utf8(self.data, self.path)


def _git(
    args: list[str], *, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """:func:`~leviathan_lib.git.runner.run_git` without raising on git's exit code; a timeout (or a
    refused argument) means unreachable."""
    try:
        return run_git(args, env=env, check=False, timeout=timeout)
    except GitError as exc:
        raise RepoUnreachable(f"git {args[0]}: {exc.stderr}") from None


def local_path(repo_url: str) -> Path | None:
    """The filesystem path of a local repository URL, or None for a remote one; RepoUnreachable if invalid."""
    try:
        parsed = parse_repo_url(repo_url)
    except RepoUrlError as exc:
        raise RepoUnreachable(f"invalid repository URL: {exc}") from None
    return Path(parsed.path) if parsed.is_local else None


def git_dir_for(repo_url: str, cache_dir: Path) -> Path:
    """The git directory to read from, fetching a remote repository into a bare mirror first."""
    path = local_path(repo_url)
    if path is not None:
        if not path.exists():
            raise RepoUnreachable(f"repository {repo_url} does not exist")
        return path
    mirror = cache_dir / hashlib.sha256(repo_url.encode()).hexdigest()[:16]
    if not (mirror / "HEAD").exists():
        mirror.mkdir(parents=True, exist_ok=True)
        result = _git(["init", "--bare", "--quiet", "--", str(mirror)])
        if result.returncode:
            raise RepoUnreachable(f"cannot create mirror for {repo_url}: {result.stderr.strip()}")
    reset_repo_config(mirror, bare=True)
    return mirror


#: Where :func:`fetch_commit` keeps a pinned commit reachable (a clone of the mirror copies branches only).
PINNED_REF_PREFIX = "refs/heads/leviathan-pinned/"
#: Pinned refs a mirror keeps (newest first): enough for overlapping attempts, bounded over time.
PINNED_REFS_KEPT = 8
_SHA = re.compile(r"^[0-9a-f]{40}$")


def fetch_commit(repo_url: str, commit_sha: str, cache_dir: Path, *, env: dict[str, str] | None = None) -> Path:
    """This machine's git directory holding ``commit_sha`` of ``repo_url``, fetched and verified here.

    A task never relies on a mirror an earlier task fetched: that task may have run on another machine
    (a Celery worker, a pod). The pinned commit is fetched by its id into a ref of its own, and git
    must then resolve exactly that commit; RepoUnreachable otherwise.
    """
    if not _SHA.match(commit_sha):
        raise RepoUnreachable(f"not a pinned commit id: {commit_sha[:50]!r}")
    try:
        remote_arg(repo_url)
    except GitError as exc:
        raise RepoUnreachable(exc.stderr) from None
    git_dir = git_dir_for(repo_url, cache_dir)
    if local_path(repo_url) is None:
        ref = PINNED_REF_PREFIX + commit_sha
        fetched = _git(["--git-dir", str(git_dir), "fetch", "--quiet", "--no-tags", "--depth", "1",
                        "--", repo_url, f"+{commit_sha}:{ref}"], env=env)
        if fetched.returncode:
            raise RepoUnreachable(f"cannot fetch commit {commit_sha[:12]} from {repo_url}: {_tail(fetched.stderr)}")
        _prune_pinned(git_dir, keep=ref)
    got = _git(["--git-dir", str(git_dir), "rev-parse", "--verify", "--quiet", f"{commit_sha}^{{commit}}"])
    if got.returncode or got.stdout.strip() != commit_sha:
        raise RepoUnreachable(f"{repo_url} has no commit {commit_sha[:12]}")
    return git_dir


def readable_commit(repo_url: str, commit_sha: str, cache_dir: Path) -> Path:
    """A git directory holding ``commit_sha``: the repository itself when local, else this machine's mirror,
    fetched only when it does not hold the commit yet (a reader that looks again at a commit costs no fetch)."""
    if local_path(repo_url) is None and _SHA.match(commit_sha):
        mirror = git_dir_for(repo_url, cache_dir)
        have = _git(["--git-dir", str(mirror), "cat-file", "-e", f"{commit_sha}^{{commit}}"])
        if have.returncode == 0:
            return mirror
    return fetch_commit(repo_url, commit_sha, cache_dir)


def _prune_pinned(git_dir: Path, *, keep: str) -> None:
    """Drop all but the newest pinned refs (never ``keep``, the one just fetched)."""
    listed = _git(["--git-dir", str(git_dir), "for-each-ref", "--sort=-committerdate", "--format=%(refname)",
                   PINNED_REF_PREFIX])
    others = [ref for ref in listed.stdout.split() if ref != keep]
    for ref in others[PINNED_REFS_KEPT - 1:]:
        _git(["--git-dir", str(git_dir), "update-ref", "-d", ref])


def read_at_branch(
    repo_url: str, branch: str, path: str, *, cache_dir: Path, as_of: datetime | None = None,
    env: dict[str, str] | None = None, max_bytes: int | None = None, code: str = "file_too_large",
) -> Snapshot:
    """Pin the tip of ``branch`` (or its last commit at ``as_of``, for replays) and read ``path`` there.

    ``env`` is added to the fetch's environment: the forge's git credentials (see ``Forge.git_push_env``).
    """
    try:
        remote_arg(repo_url)
        branch_arg(branch)
    except GitError as exc:
        raise RepoUnreachable(exc.stderr) from None
    git_dir = git_dir_for(repo_url, cache_dir)
    if local_path(repo_url) is None:
        depth = [] if as_of else ["--depth", "1"]  # a replay needs the branch history
        fetched = _git(["--git-dir", str(git_dir), "fetch", "--quiet", "--no-tags", *depth,
                        "--", repo_url, f"+refs/heads/{branch}:refs/heads/{branch}"], env=env)
        if fetched.returncode:
            raise RepoUnreachable(f"cannot fetch {branch!r} from {repo_url}: {_tail(fetched.stderr)}")
    if as_of is not None:
        at = _git(["--git-dir", str(git_dir), "rev-list", "-1", f"--before={as_of.isoformat()}",
                   f"refs/heads/{branch}", "--"])
        sha = at.stdout.strip()
        if at.returncode:
            raise RepoUnreachable(f"cannot read the history of {branch!r} of {repo_url}: {_tail(at.stderr)}")
        if not sha:
            raise NoCommitAtDate(f"branch {branch!r} of {repo_url} has no commit before {as_of.isoformat()}")
        return Snapshot(repo_url=repo_url, branch=branch, commit_sha=sha, path=path,
                        data=read_bytes_at_commit(git_dir, sha, path, max_bytes=max_bytes, code=code))
    tip = _git(["--git-dir", str(git_dir), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"])
    if tip.returncode:
        probe = _git(["--git-dir", str(git_dir), "rev-parse", "--git-dir"])
        if probe.returncode:
            raise RepoUnreachable(f"{repo_url} is not a git repository: {_tail(probe.stderr)}")
        raise RepoUnreachable(f"branch {branch!r} not found in {repo_url}")
    sha = tip.stdout.strip()
    return Snapshot(repo_url=repo_url, branch=branch, commit_sha=sha, path=path,
                    data=read_bytes_at_commit(git_dir, sha, path, max_bytes=max_bytes, code=code))


def fetch_branch(repo_url: str, branch: str, *, cache_dir: Path, env: dict[str, str] | None = None) -> None:
    """Bring ``branch`` into the mirror of a remote repository (a local one already holds it); RepoUnreachable
    if it cannot be fetched. An attempt that continues a PR's branch clones its head from the mirror."""
    try:
        remote_arg(repo_url)
        branch_arg(branch)
    except GitError as exc:
        raise RepoUnreachable(exc.stderr) from None
    git_dir = git_dir_for(repo_url, cache_dir)
    if local_path(repo_url) is not None:
        return
    fetched = _git(["--git-dir", str(git_dir), "fetch", "--quiet", "--no-tags", "--", repo_url,
                    f"+refs/heads/{branch}:refs/heads/{branch}"], env=env)
    if fetched.returncode:
        raise RepoUnreachable(f"cannot fetch {branch!r} from {repo_url}: {_tail(fetched.stderr)}")


def blob_size(git_dir: Path, sha: str, path: str) -> int | None:
    """The size of ``path`` at ``sha`` in bytes, without reading it (None if it does not exist there)."""
    try:
        sized = run_git(["--git-dir", str(git_dir), "cat-file", "-s", f"{sha}:{path}"], check=False, timeout=60)
    except GitError as exc:
        raise RepoUnreachable(f"git cat-file: {exc.stderr}") from None
    if sized.returncode:
        if "does not exist" in sized.stderr or "Not a valid object name" in sized.stderr:
            return None
        raise RepoUnreachable(f"cannot size {path} at {sha[:12]}: {_tail(sized.stderr)}")
    return int(sized.stdout.strip())


def read_bytes_at_commit(git_dir: Path, sha: str, path: str, *, max_bytes: int | None = None,
                         code: str = "file_too_large") -> bytes | None:
    """The file's exact bytes at ``sha`` (None if it does not exist there): decoding is the caller's.

    With ``max_bytes`` the blob's size is checked first and a larger one is never read: :class:`TooLarge`
    with ``code``.
    """
    if max_bytes is not None:
        size = blob_size(git_dir, sha, path)
        if size is None:
            return None
        if size > max_bytes:
            raise TooLarge(code, f"{path} at {sha[:12]} is {size} bytes, over the limit of {max_bytes} bytes "
                                 "(not read)")
    # No "--": git then names a missing path plainly; the argument starts with a hex sha, never "-".
    try:
        shown = run_git(["--git-dir", str(git_dir), "show", "--no-textconv", f"{sha}:{path}"], check=False,
                        timeout=120, text=False)
    except GitError as exc:
        raise RepoUnreachable(f"git show: {exc.stderr}") from None
    if shown.returncode:
        if "does not exist" in shown.stderr or "exists on disk, but not in" in shown.stderr:
            return None
        raise RepoUnreachable(f"cannot read {path} at {sha[:12]}: {_tail(shown.stderr)}")
    data: bytes = shown.stdout
    return data


def read_at_commit(git_dir: Path, sha: str, path: str, *, max_bytes: int | None = None,
                   code: str = "file_too_large") -> str | None:
    """The file as strict UTF-8 text; never decoded lossily (a :class:`ValidationFailed` instead)."""
    data = read_bytes_at_commit(git_dir, sha, path, max_bytes=max_bytes, code=code)
    return None if data is None else decode_utf8(data, path)


def _tail(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"
