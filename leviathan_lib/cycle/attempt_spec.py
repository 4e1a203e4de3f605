"""The attempt spec a worker runs: the pinned commit, the task as read at it, the executor it needs."""

from __future__ import annotations

import logging
from pathlib import Path

from leviathan_lib.contracts.attempt import AttemptSpec
from leviathan_lib.contracts.xcom import AttemptPlan, ReadResult
from leviathan_lib.core.backlog import Task
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.limits import AttemptLimits, resolve_limits
from leviathan_lib.cycle.repo_reader import RepoUnreachable, fetch_branch, fetch_commit
from leviathan_lib.cycle.steps import check_names
from leviathan_lib.worker.llm_spec import executor_spec
from leviathan_lib.worker.sandbox import required_mode

log = logging.getLogger("leviathan")


def worker_source(target: TargetConfig, read: ReadResult, cache_dir: Path, plan: AttemptPlan | None = None, *,
                  git_env: dict[str, str] | None = None) -> str:
    """Where the worker clones from. A local worker holds no credentials, so a forge that needs them
    (GitHub) is read through a mirror in ``cache_dir`` that this task fetches the pinned commit into
    itself, with the forge's ``git_env``: ``plan``'s mirror may be on another machine (RepoUnreachable
    when the commit cannot be had). An attempt that continues a PR's branch fetches that branch here
    too. A pod clones the repository itself, with the optional read-only token (``worker_clone_secret``);
    the local forge's bare repository is the remote itself."""
    if target.forge == "local" or target.worker_backend == "kubernetes":
        return read.repo_url
    git_dir = fetch_commit(read.repo_url, read.commit_sha or "", cache_dir, env=git_env)
    cont = plan.continue_pr if plan else None
    if cont is not None and cont.start == "branch":
        try:
            fetch_branch(read.repo_url, cont.branch, cache_dir=cache_dir, env=git_env)
        except RepoUnreachable as exc:  # the worker then fails with clone_failed, saying why
            log.warning("cannot fetch %s for the attempt: %s", cont.branch, exc)
    return str(git_dir)


def attempt_spec(read: ReadResult, target: TargetConfig, plan: AttemptPlan, cache_dir: Path, *,
                 api_base_url: str | None = None, region: str | None = None,
                 git_env: dict[str, str] | None = None, caps: AttemptLimits | None = None) -> AttemptSpec:
    """The spec of attempt ``plan`` of a task of the backlog ``read`` pinned; ``api_base_url`` and ``region``
    come from the model connection (llm executor), ``git_env`` from the forge (see :func:`worker_source`),
    ``caps`` from the deployment (the target's ``limits`` within them; a value above a cap is logged)."""
    backlog, _ = read.parsed_backlog()
    limits, lowered = resolve_limits(target.limits, caps or AttemptLimits(), target.target_id)
    for problem in lowered:
        log.warning("%s", problem.render("warning"))
    task_def = backlog.by_id()[plan.task_id]
    return AttemptSpec.model_validate({
        "spec_version": 1, "target_id": target.target_id,
        "repo_url": worker_source(target, read, cache_dir, plan, git_env=git_env),
        "commit_sha": read.commit_sha, "task": task_def.model_dump(mode="json"),
        "allowed_path_prefixes": target.allowed_path_prefixes,
        "executor": executor_spec(target, task_def, api_base_url=api_base_url, region=region),
        "attempt": plan.attempt, "timeout_seconds": target.attempt_timeout_seconds,
        "sandbox": required_mode(target),
        "continue_pr": plan.continue_pr.model_dump() if plan.continue_pr else None,
        "egress": [rule.model_dump() for rule in target.sandbox_egress],
        "limits": limits.model_dump(),
        "checks": _checks(target, task_def),
    })


def _checks(target: TargetConfig, task: Task) -> dict[str, object] | None:
    """The repository's checks the attempt runs: the target's required ones, then the task's own."""
    names = check_names(target.required_checks, task)
    if not names:
        return None
    return {"names": names, "recipes_path": target.recipes_path, "on_red_at_base": target.checks_red_at_base,
            "llm_rounds": target.llm_check_rounds}
