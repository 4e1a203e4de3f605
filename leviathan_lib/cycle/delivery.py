"""Turn a worker's patch into an ``agent/…`` branch and a pull request — outside the worker.

The worker never holds a forge credential; this step does, so it re-checks everything the worker
claims: the patch is applied to the pinned commit, the only backlog change allowed is this task's
status, and the final diff is checked against the scope before anything is pushed.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.backlog_edit import set_task_status
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import LeviathanError, ValidationFailed
from leviathan_lib.core.names import AGENT_BRANCH_PREFIX
from leviathan_lib.core.scope import Scope, path_segments, task_scope
from leviathan_lib.cycle.diffcheck import check_final_diff
from leviathan_lib.cycle.pr_body import render_pr_body
from leviathan_lib.cycle.steps import DELIVERED_STATUS, AttemptPlan, ReadResult
from leviathan_lib.forge.base import Forge, PullRequest
from leviathan_lib.git.runner import run_git
from leviathan_lib.worker.contract import AttemptResult


class DeliveryRejected(LeviathanError):
    """The change may not be delivered (a guardrail on the final diff said no)."""


def _backlog_only_status_changed(before: str, after: str, task_id: str, path: str) -> None:
    old, _ = parse_backlog(before, source=path)
    try:
        new, _ = parse_backlog(after, source=path)
    except ValidationFailed as exc:
        raise DeliveryRejected("backlog_edited", f"the change breaks {path}: {exc}") from None
    strip = [t.model_copy(update={"status": None}) if t.id == task_id else t for t in old.tasks]
    strip_new = [t.model_copy(update={"status": None}) if t.id == task_id else t for t in new.tasks]
    if strip != strip_new or old.invalid != new.invalid:
        raise DeliveryRejected("backlog_edited", f"the change edits tasks in {path}; only humans edit the backlog")


def deliver(
    target: TargetConfig,
    read: ReadResult,
    plan: AttemptPlan,
    result: AttemptResult,
    forge: Forge,
    *,
    run_id: str,
    commit_date: datetime,
    evidence_summary: dict,
    scratch_dir: Path | None = None,
) -> PullRequest:
    """Push ``plan.branch`` and open (or find) its PR. Idempotent: a rerun returns the same PR."""
    if not plan.branch.startswith(AGENT_BRANCH_PREFIX):
        raise DeliveryRejected("branch_not_agent", f"refusing to push to {plan.branch!r}")
    existing = forge.find_pr_by_head(plan.branch)
    if existing is not None:
        return existing
    backlog, _ = parse_backlog(read.backlog_text or "", source=read.backlog_path)
    task = backlog.by_id()[plan.task_id]
    scope = task_scope(task.allowed_paths, target.allowed_path_prefixes)
    for path in result.changed_paths:
        reason = scope.check(path)
        if reason:
            raise DeliveryRejected("scope_violation", f"worker changed {reason}")

    with tempfile.TemporaryDirectory(prefix="leviathan-pr-", dir=scratch_dir) as tmp:
        repo = Path(tmp) / "repo"
        env = {"GIT_AUTHOR_DATE": commit_date.isoformat(), "GIT_COMMITTER_DATE": commit_date.isoformat()}
        run_git(["init", "--quiet", str(repo)])
        run_git(["fetch", "--quiet", "--no-tags", "--depth", "1", read.repo_url, read.commit_sha or ""],
                cwd=repo, env=forge.git_push_env())
        run_git(["checkout", "--quiet", "-b", plan.branch, read.commit_sha or ""], cwd=repo)
        run_git(["apply", "--index", "--whitespace=nowarn", "-"], cwd=repo, input=result.patch.encode())

        allowed = list(scope.prefixes)
        target_scope = Scope.of(target.allowed_path_prefixes)
        status_note = ""
        if target_scope.contains(read.backlog_path):
            backlog_file = repo / read.backlog_path
            # Edit the file as the worker left it, so any other change it made is caught below.
            current = backlog_file.read_text(encoding="utf-8") if backlog_file.is_file() else ""
            try:
                edited = set_task_status(current, task.id, DELIVERED_STATUS)
            except (ValueError, ValidationFailed) as exc:
                message = f"cannot set the status in {read.backlog_path}: {exc}"
                raise DeliveryRejected("backlog_edited", message) from None
            backlog_file.write_text(edited, encoding="utf-8")
            run_git(["add", "--", read.backlog_path], cwd=repo)
            allowed.append(path_segments(read.backlog_path))
        else:
            status_note = f"{read.backlog_path} is outside allowed_path_prefixes, so its status was not edited."

        message = (f"{task.title}\n\nLeviathan-Task: {task.id}\nLeviathan-Attempt: {plan.attempt}\n"
                   f"Leviathan-Run: {run_id}\n")
        run_git(["commit", "--quiet", "--no-verify", "-m", message], cwd=repo, env=env)
        violations = check_final_diff(repo, read.commit_sha or "", "HEAD", Scope(tuple(allowed)))
        if violations:
            detail = "; ".join(f"{v.code}: {v.path or ''} {v.detail}".strip() for v in violations)
            raise DeliveryRejected(violations[0].code, f"final diff rejected: {detail}")
        committed = run_git(["show", f"HEAD:{read.backlog_path}"], cwd=repo, check=False)
        _backlog_only_status_changed(read.backlog_text or "", committed.stdout if committed.returncode == 0 else "",
                                     task.id, read.backlog_path)
        head_sha = run_git(["rev-parse", "HEAD"], cwd=repo).stdout.strip()
        run_git(["push", "--quiet", "--porcelain", read.repo_url, f"+HEAD:refs/heads/{plan.branch}"],
                cwd=repo, env=forge.git_push_env())

    body = render_pr_body(task=task, plan=plan, read=read, result=result, run_id=run_id,
                          evidence=evidence_summary, note=status_note, head_sha=head_sha)
    return forge.create_pr(head=plan.branch, base=target.target_branch, title=f"[leviathan] {task.title}", body=body)

