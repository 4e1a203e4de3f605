"""Reverts of merged Leviathan PRs: a commit on the target branch that undoes a PR's change.

A PR counts as reverted when one new commit of the target branch *reverses its change* for the PR's paths:
applying the PR's patch (its merge or squash commit against the commit's first parent) in reverse to that
commit's parent gives exactly the commit's tree for those paths. A message that says "Revert" or names the
PR's commit proves nothing and is never read. Only a full revert counts: a commit that undoes part of the
change (one of two files, some of the lines) is humans fixing forward, not a revert. Neither is a revert
spread over several commits, nor a rebase-merged PR's earlier commits (the forge names only its last).

Bounded: the newest :data:`~leviathan_lib.evidence.records.RECENT_MERGED` merged PRs are watched, and per
PR at most :data:`MAX_COMMITS` commits after its merge that touch its paths, since the commit the previous
cycle pinned. A remote repository's mirror holds one commit of the branch (``plan`` fetches with depth 1),
so it is deepened by :data:`MAX_COMMITS` first, only when there is something to look for. A PR whose merge
commit is not in that history is not judged. A reverted PR is recorded ``reverted`` (the PR sync's
evidence, ``pr.reverted``) and counts as a failure for the breaker; the task's backlog status stays the
humans' to change. Airflow-free.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from leviathan_lib.contracts.xcom import ReadResult
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.paths import cache_dir
from leviathan_lib.cycle.read import forge_git_env
from leviathan_lib.cycle.repo_reader import RepoUnreachable, git_dir_for, local_path
from leviathan_lib.evidence.records import Ledger, LedgerMerged, PrStateChange
from leviathan_lib.forge.base import ForgeError
from leviathan_lib.git.runner import GitError, run_git

log = logging.getLogger("leviathan")

#: Commits after a merge looked at per PR (and how far a remote mirror is deepened).
MAX_COMMITS = 200


def check_reverts(target: TargetConfig, read: ReadResult, ledger: Ledger, changes: list[PrStateChange]
                  ) -> tuple[list[PrStateChange], str | None]:
    """This cycle's reverted PRs (the ledger's merged PRs and those ``changes`` saw merged) and the commit the
    search reached: ``read``'s pinned commit, or None when git could not answer (the next cycle looks at
    those commits again). Costs nothing while the pinned commit stays where it was."""
    new = [LedgerMerged(number=c.number, task_id=c.task_id, branch=c.branch, merge_sha=c.merge_sha)
           for c in changes if c.state == "merged" and c.merge_sha]
    pinned = read.commit_sha
    if pinned is None or (pinned == ledger.revert_scan_sha and not new) or not (ledger.merged_prs or new):
        return [], pinned
    try:
        git_dir = git_dir_for(read.repo_url, cache_dir())
        deepen(git_dir, read.repo_url, read.branch, forge_git_env(target, read.repo_url))
        found = find_reverts(git_dir, pinned, [*ledger.merged_prs, *new], since=ledger.revert_scan_sha,
                             new={m.number for m in new})
    except (GitError, RepoUnreachable, ForgeError) as exc:
        log.warning("reverts not looked for this cycle (the next one looks again): %s", exc)
        return [], None
    return found, pinned


def deepen(git_dir: Path, repo_url: str, branch: str, env: dict[str, str] | None) -> None:
    """Give a remote repository's shallow mirror the branch's last :data:`MAX_COMMITS` commits (a local
    repository has its whole history). GitError when the fetch fails."""
    if local_path(repo_url) is not None:
        return
    run_git(["--git-dir", str(git_dir), "fetch", "--quiet", "--no-tags", f"--deepen={MAX_COMMITS}", "--", repo_url,
             f"+refs/heads/{branch}:refs/heads/{branch}"], env=env)


def find_reverts(git_dir: Path, pinned: str, merged: list[LedgerMerged], *, since: str | None,
                 new: set[int]) -> list[PrStateChange]:
    """The PRs of ``merged`` a commit up to ``pinned`` reverts. ``since`` (the commit the previous cycle looked
    up to) bounds the commits looked at, except for the PRs first seen merged this cycle (``new``), whose
    reverts may predate it. Raises GitError when git cannot answer (the caller looks again next cycle)."""
    found = []
    for pr in merged:
        sha = _revert_of(git_dir, pinned, pr, None if pr.number in new else since)
        if sha is not None:
            log.info("PR #%s (%s) was reverted by %s", pr.number, pr.task_id, sha)
            found.append(PrStateChange(number=pr.number, task_id=pr.task_id, branch=pr.branch, state="reverted",
                                       merge_sha=pr.merge_sha, revert_sha=sha))
    return found


def _git(git_dir: Path, *args: str, env: dict[str, str] | None = None, data: bytes | None = None,
         check: bool = True) -> tuple[int, str]:
    proc = run_git(["--git-dir", str(git_dir), *args], env=env, input=data, check=check)
    return proc.returncode, proc.stdout


def _has(git_dir: Path, rev: str) -> bool:
    return _git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}",
                check=False)[0] == 0


def _revert_of(git_dir: Path, pinned: str, pr: LedgerMerged, since: str | None) -> str | None:
    """The first commit after ``pr``'s merge (and after ``since``) up to ``pinned`` that reverses its change."""
    merge = pr.merge_sha
    if not (_has(git_dir, f"{merge}^1") and _has(git_dir, pinned)):
        log.info("PR #%s: its merge %s is not in the history read: not judged for a revert", pr.number, merge)
        return None
    paths = [p for p in _git(git_dir, "diff", "--name-only", "-z", "--no-renames", f"{merge}^1", merge)[1]
             .split("\0") if p]
    if not paths:
        return None
    patch = run_git(["--git-dir", str(git_dir), "diff", "--binary", "--full-index", "--no-renames", f"{merge}^1",
                     merge, "--", *paths], text=False).stdout
    exclude = [f"^{merge}"] + ([f"^{since}"] if since and _has(git_dir, since) else [])
    commits = _git(git_dir, "rev-list", f"--max-count={MAX_COMMITS}", "--no-merges", "--reverse", pinned,
                   *exclude, "--", *paths)[1].split()
    return next((c for c in commits if _reverses(git_dir, c, patch, paths)), None)


def _reverses(git_dir: Path, commit: str, patch: bytes, paths: list[str]) -> bool:
    """Does ``patch`` applied in reverse to ``commit``'s parent give ``commit``'s tree for ``paths``?"""
    if not _has(git_dir, f"{commit}^1"):
        return False
    with tempfile.TemporaryDirectory(prefix="leviathan-revert-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(git_dir, "read-tree", f"{commit}^1", env=env)
        try:
            _git(git_dir, "apply", "--cached", "--reverse", "--whitespace=nowarn", "-", env=env, data=patch)
        except GitError:  # the change is no longer there as it was merged
            return False
        tree = _git(git_dir, "write-tree", env=env)[1].strip()
    return _git(git_dir, "diff", "--quiet", tree, commit, "--", *paths, check=False)[0] == 0
