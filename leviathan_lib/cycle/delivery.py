"""Turn a worker's patch into an ``agent/…`` branch and a pull request — outside the worker.

The worker never holds a forge credential; this step does, so it trusts nothing the worker says. The
patch is size-checked, then applied to the pinned commit in git's objects only (a bare repository and
a temporary index: there is no work tree a patch could plant a symlink in), and the resulting tree is
checked before anything else reads it. The backlog status edit is Leviathan's own, made on the pinned
backlog blob, and the delivered backlog must differ from it in that one status line, byte for byte.
The changed paths in the PR and the evidence are git's, never the worker's claim.
"""

from __future__ import annotations

import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.backlog_edit import check_status_edit, set_task_status
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import LeviathanError, ValidationFailed
from leviathan_lib.core.names import AGENT_BRANCH_PREFIX
from leviathan_lib.core.scope import Scope, task_scope
from leviathan_lib.core.secrets_scan import redact_text, scan_bytes
from leviathan_lib.cycle.diffcheck import changed_paths, check_final_diff
from leviathan_lib.cycle.pr_body import render_pr_body
from leviathan_lib.cycle.protected import protected_for
from leviathan_lib.cycle.steps import DELIVERED_STATUS, AttemptPlan, ReadResult
from leviathan_lib.cycle.untrusted import patch_problem
from leviathan_lib.forge.base import Forge, PullRequest
from leviathan_lib.git.runner import GitError, run_git
from leviathan_lib.worker.contract import AttemptResult

#: The one piece of ``git apply``'s error worth keeping: which file and line did not apply.
_APPLY_FAILED = re.compile(r"patch failed: (.+):(\d+)$", re.MULTILINE)


class DeliveryRejected(LeviathanError):
    """The change may not be delivered (a guardrail on the final diff said no).

    ``changed_paths`` are the real paths of the change when it could be applied (redacted).
    """

    def __init__(self, code: str, message: str, changed_paths: list[str] | None = None):
        super().__init__(code, message)
        self.changed_paths = changed_paths or []


class Delivery(BaseModel):
    """The pull request, and what it really changes (from git's objects)."""

    pr: PullRequest
    changed_paths: list[str]


class _Repo:
    """A bare scratch repository with its own index file: every step works on objects only."""

    def __init__(self, path: Path, env: dict[str, str]):
        self.path, self.env = path, env

    def git(self, args: list[str], *, input: bytes | str | None = None) -> str:
        out: str = run_git(args, cwd=self.path, input=input, env=self.env).stdout
        return out.strip()

    def blob(self, rev_path: str) -> bytes:
        out: bytes = run_git(["cat-file", "blob", rev_path], cwd=self.path, env=self.env, text=False).stdout
        return out


def _apply(repo: _Repo, base: str, patch: str) -> str:
    """The tree of ``base`` with ``patch`` applied to the index (never to files)."""
    repo.git(["read-tree", base])
    try:
        repo.git(["apply", "--cached", "--whitespace=nowarn", "-"], input=patch.encode("utf-8", "surrogateescape"))
    except GitError as exc:
        where = _APPLY_FAILED.search(exc.stderr)
        at = f" ({redact_text(where.group(1))}, line {where.group(2)})" if where else ""
        raise DeliveryRejected("patch_does_not_apply", f"the patch does not apply to the pinned commit{at}") from None
    return repo.git(["write-tree"])


def _set_status(repo: _Repo, base: str, backlog_path: str, task_id: str) -> bytes:
    """Stage the pinned backlog blob with only the task's status edited; the pinned bytes."""
    meta, _, _name = repo.git(["ls-tree", "-z", base, "--", backlog_path]).rstrip("\0").partition("\t")
    if not meta:
        raise DeliveryRejected("backlog_edited", f"{backlog_path} is missing at the pinned commit")
    mode, _kind, _sha = meta.split(" ")
    before = repo.blob(f"{base}:{backlog_path}")
    try:
        edited = set_task_status(before.decode("utf-8"), task_id, DELIVERED_STATUS).encode("utf-8")
        check_status_edit(before, edited, task_id, DELIVERED_STATUS)
    except (ValueError, ValidationFailed) as exc:
        raise DeliveryRejected("backlog_edited", f"cannot set the status in {backlog_path}: {exc}") from None
    sha = repo.git(["hash-object", "-w", "--no-filters", "--stdin"], input=edited)
    repo.git(["update-index", "--add", "--cacheinfo", f"{mode},{sha},{backlog_path}"])
    return before


def _scan_pr_text(title: str, body: str) -> None:
    for what, text in (("title", title), ("body", body)):
        rules = sorted({f.rule for f in scan_bytes(text.encode("utf-8", "surrogateescape"))})
        if rules:
            raise DeliveryRejected("secret_detected", f"the PR {what} holds possible secrets ({', '.join(rules)})")


def deliver(
    target: TargetConfig,
    read: ReadResult,
    plan: AttemptPlan,
    result: AttemptResult,
    forge: Forge,
    *,
    run_id: str,
    commit_date: datetime,
    evidence_summary: dict[str, Any],
    scratch_dir: Path | None = None,
) -> Delivery:
    """Push ``plan.branch`` and open (or find) its PR. Idempotent: a rerun returns the same PR."""
    if not plan.branch.startswith(AGENT_BRANCH_PREFIX):
        raise DeliveryRejected("branch_not_agent", f"refusing to push to {plan.branch!r}")
    problem = patch_problem(result.patch)
    if problem:
        raise DeliveryRejected(*problem)
    backlog, _ = parse_backlog(read.backlog_text or "", source=read.backlog_path)
    task = backlog.by_id()[plan.task_id]
    scope = task_scope(task.allowed_paths, target.allowed_path_prefixes)
    base = read.commit_sha or ""

    with tempfile.TemporaryDirectory(prefix="leviathan-pr-", dir=scratch_dir) as tmp:
        path = Path(tmp) / "repo.git"
        run_git(["init", "--quiet", "--bare", str(path)])
        repo = _Repo(path, {"GIT_INDEX_FILE": str(Path(tmp) / "index"),
                            "GIT_AUTHOR_DATE": commit_date.isoformat(), "GIT_COMMITTER_DATE": commit_date.isoformat()})
        run_git(["fetch", "--quiet", "--no-tags", "--depth", "1", "--", read.repo_url, base], cwd=path,
                env=forge.git_push_env())
        worker_tree = _apply(repo, base, result.patch)
        real = [redact_text(p) for p in changed_paths(path, base, worker_tree)]
        protected = protected_for(target, read.recipes_text)
        violations = check_final_diff(path, base, worker_tree, scope, protected=protected,
                                      backlog_path=read.backlog_path)
        if violations:
            detail = "; ".join(f"{v.code}: {v.path or ''} {v.detail}".strip() for v in violations)
            raise DeliveryRejected(violations[0].code, f"final diff rejected: {detail}", real)

        status_note = ""
        pinned_backlog = None
        if Scope.of(target.allowed_path_prefixes).contains(read.backlog_path):
            pinned_backlog = _set_status(repo, base, read.backlog_path, task.id)
        else:
            status_note = f"{read.backlog_path} is outside allowed_path_prefixes, so its status was not edited."
        tree = repo.git(["write-tree"])
        message = (f"{task.title}\n\nLeviathan-Task: {task.id}\nLeviathan-Attempt: {plan.attempt}\n"
                   f"Leviathan-Run: {run_id}\n")
        head_sha = repo.git(["commit-tree", tree, "-p", base, "-F", "-"], input=message)
        # What is pushed: the worker's paths plus, at most, Leviathan's own one-line status edit.
        delivered = changed_paths(path, base, head_sha)
        if pinned_backlog is not None:
            try:
                check_status_edit(pinned_backlog, repo.blob(f"{head_sha}:{read.backlog_path}"), task.id,
                                  DELIVERED_STATUS)
            except ValueError as exc:
                raise DeliveryRejected("backlog_edited", f"{read.backlog_path}: {exc}", real) from None
        if set(delivered) - set(real) - {read.backlog_path}:
            raise DeliveryRejected("backlog_edited", "the delivered commit changes more than the checked tree", real)

        title = f"[leviathan] {task.title}"
        worker_paths = [p for p in delivered if p != read.backlog_path]
        body = render_pr_body(task=task, plan=plan, read=read, changed_paths=worker_paths, run_id=run_id,
                              evidence=evidence_summary, note=status_note, head_sha=head_sha)
        _scan_pr_text(title, body)
        existing = forge.find_pr_by_head(plan.branch)
        if existing is not None:
            return Delivery(pr=existing, changed_paths=delivered)
        run_git(["push", "--quiet", "--porcelain", "--", read.repo_url, f"+{head_sha}:refs/heads/{plan.branch}"],
                cwd=path, env=forge.git_push_env())

    pr = forge.create_pr(head=plan.branch, base=target.target_branch, title=title, body=body)
    return Delivery(pr=pr, changed_paths=delivered)
