"""The steps of one Leviathan cycle, as plain functions the DAG's tasks call.

Airflow-free on purpose: each step takes typed inputs and returns JSON-able data (the XComs), so the
steps are testable without a scheduler and the DAG file stays a thin wiring diagram.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from leviathan_lib.contracts.attempt import ContinuePr
from leviathan_lib.contracts.xcom import CycleError, GuardrailResult, ReadResult
from leviathan_lib.core.backlog import Backlog, InvalidTask, Task
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.guardrails import Decision
from leviathan_lib.core.read_limits import MAX_BACKLOG_BYTES, MAX_RECIPES_BYTES, TooLarge, TooManyTasks
from leviathan_lib.cycle.repo_reader import NoCommitAtDate, RepoUnreachable, read_at_branch, read_at_commit
from leviathan_lib.evidence.records import (
    MAX_TASK_VERDICTS,
    ApprovalEvidence,
    AttemptEvidence,
    CheckEvidence,
    CycleRecord,
    Ledger,
    TaskVerdictEvidence,
    Totals,
)

log = logging.getLogger(__name__)

#: Status the delivering PR sets on its task: when a human merges the PR, the task is done.
DELIVERED_STATUS = "completed"


class ContinueRequest(BaseModel):
    """An open PR of task ``task_id`` this cycle should deliver to instead of opening one: a conflicted PR
    brought up to date, or a PR a review sent back (see :func:`leviathan_lib.cycle.decision.continue_decision`)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    task_id: str
    pr: ContinuePr


def read_backlog(
    target: TargetConfig, repo_url: str, cache_dir: Path, *, as_of: datetime | None = None,
    git_env: dict[str, str] | None = None,
) -> ReadResult:
    """Pin the target branch and read the backlog and recipes at that commit. Never raises for bad input."""
    result = ReadResult(repo_url=repo_url, branch=target.target_branch, backlog_path=target.backlog_path,
                        as_of=as_of)
    try:
        snap = read_at_branch(repo_url, target.target_branch, target.backlog_path, cache_dir=cache_dir,
                              as_of=as_of, env=git_env, max_bytes=MAX_BACKLOG_BYTES, code="backlog_too_large")
    except (RepoUnreachable, NoCommitAtDate, TooLarge) as exc:
        result.error = CycleError(code=exc.code, message=str(exc))
        return result
    result.commit_sha = snap.commit_sha
    if snap.data is None:
        result.error = CycleError(
            code="backlog_missing",
            message=f"{target.backlog_path} does not exist at {snap.commit_sha[:12]} of {target.target_branch}",
        )
        return result
    from leviathan_lib.cycle.repo_reader import git_dir_for

    try:
        result.backlog_text = snap.text()
        _, problems = result.parsed_backlog()
        result.problems = [str(p) for p in problems]
        # Recipes are text the worker runs: undecodable ones stop the cycle like an unreadable backlog.
        result.recipes_text = read_at_commit(git_dir_for(repo_url, cache_dir), snap.commit_sha, target.recipes_path,
                                             max_bytes=MAX_RECIPES_BYTES, code="recipes_too_large")
    except ValidationFailed as exc:
        code = exc.code if isinstance(exc, TooManyTasks) else "backlog_invalid"
        result.error = CycleError(code=code, message="; ".join(str(p) for p in exc.problems))
    except (RepoUnreachable, TooLarge) as exc:
        result.error = CycleError(code=exc.code, message=str(exc))
    return result


def check_names(required: Sequence[str], task: Task) -> list[str]:
    """The repository's checks an attempt at ``task`` runs: the target's ``required_checks``, then the task's."""
    return list(dict.fromkeys([*required, *task.checks]))


def apply_recipe_checks(
    backlog: Backlog, recipes_text: str | None, recipes_path: str, *, llm_enabled: bool = False,
    required_checks: Sequence[str] = (), attempt_timeout_seconds: int | None = None,
) -> Backlog:
    """Move tasks whose executor cannot run (recipe missing or unknown, model not enabled), or whose checks
    cannot (unknown, unreadable, longer than the attempt), to ``invalid``.

    A task without a recipe runs on the LLM executor only when the target enables it (``llm_enabled``).
    """
    from leviathan_lib.contracts.recipes import RecipesFile, parse_recipes_file

    defined = RecipesFile(recipes={})
    recipes_problem = None
    if recipes_text is None:
        recipes_problem = f"{recipes_path} does not exist"
    else:
        try:
            defined = parse_recipes_file(recipes_text, source=recipes_path)
        except ValidationFailed as exc:
            recipes_problem = "; ".join(str(p) for p in exc.problems)
    keep, invalid = [], list(backlog.invalid)
    taken = {i.index for i in invalid}
    file_indexes = (i for i in range(len(backlog.tasks) + len(taken)) if i not in taken)
    for index, task in zip(file_indexes, backlog.tasks, strict=False):
        problems = []
        if task.ready:
            problem = _executor_problem(task, defined.recipes, recipes_problem, llm_enabled)
            problems = ([problem] if problem else []) + _checks_problems(
                task, defined.checks, recipes_problem, required_checks, attempt_timeout_seconds)
        if problems:
            invalid.append(InvalidTask(index=index, id=task.id, problems=problems))
        else:
            keep.append(task)
    return Backlog(tasks=keep, invalid=sorted(invalid, key=lambda i: i.index), metadata=backlog.metadata)


def _checks_problems(task: Task, checks: dict[str, Any], recipes_problem: str | None, required: Sequence[str],
                     timeout: int | None) -> list[str]:
    """Why the checks a ready task's attempt would run cannot run: unreadable, unknown, or longer than the attempt."""
    names = check_names(required, task)
    if not names:
        return []
    if recipes_problem:
        return [f"task {task.id}: its checks ({', '.join(names)}) cannot be loaded: {recipes_problem}"]
    known = ", ".join(sorted(checks)) or "none"
    problems = [f"task {task.id}: {'required_checks' if name in required else 'checks'} names unknown check "
                f"{name!r} (known: {known})" for name in names if name not in checks]
    problems += [f"task {task.id}: check {name!r} has timeout_seconds {checks[name].timeout_seconds}, more than "
                 f"attempt_timeout_seconds {timeout}" for name in names
                 if name in checks and timeout is not None and (checks[name].timeout_seconds or 0) > timeout]
    return problems


def _executor_problem(task: Task, recipes: dict[str, Any], recipes_problem: str | None,
                      llm_enabled: bool) -> str | None:
    """Why a ready task's executor cannot run it, or None."""
    if task.recipe and task.executor == "llm":
        return f"task {task.id}: names a recipe and 'executor: llm'; give one of the two"
    if not task.recipe:
        if task.executor != "recipe" and llm_enabled:
            return None
        if task.executor == "llm":
            return f"task {task.id}: 'executor: llm' but the target does not enable it (executor: llm)"
        return f"task {task.id}: no 'recipe' named (the target's executor is 'recipe')"
    if recipes_problem:
        return f"task {task.id}: recipe {task.recipe!r} cannot be loaded: {recipes_problem}"
    if task.recipe not in recipes:
        known = ", ".join(sorted(recipes)) or "none"
        return f"task {task.id}: unknown recipe {task.recipe!r} (known: {known})"
    return None


def build_record(
    target: TargetConfig,
    *,
    dag_run_id: str,
    run_type: str | None,
    read: ReadResult | None,
    guard: GuardrailResult | None,
    attempt: AttemptEvidence | None,
    failure: CycleError | None = None,
    approval: ApprovalEvidence | None = None,
) -> CycleRecord:
    """Assemble the cycle record from whatever the earlier tasks left (any of them may be missing)."""
    record = CycleRecord(
        target_id=target.target_id, dag_run_id=dag_run_id, run_type=run_type,
        recorded_at=datetime.now(UTC), decision="error", stopped_reason="incomplete",
        replay=bool(read and read.as_of), logical_date=read.as_of if read else None,
        pr_sync=guard.pr_sync if guard else [], lifecycle=guard.lifecycle if guard else [],
        dashboard=guard.dashboard if guard else None, reverts_scanned_to=guard.reverts_scanned_to if guard else None,
        repo_url=read.repo_url if read else None, branch=read.branch if read else None,
        commit_sha=read.commit_sha if read else None, attempt=attempt, approval=approval,
    )
    stop = _stopped_early(read, guard, failure)
    if stop is not None:
        record.reasons, record.stopped_reason, record.stopped_detail = [stop.code], stop.code, stop.message
        if stop.code == NoCommitAtDate.CODE and record.replay:
            record.decision = "skip"  # nothing existed then to decide on: a green replay, not an error
        return _with_totals(record, guard)
    assert read is not None and guard is not None and guard.decision is not None  # _stopped_early checked
    decision = guard.decision
    record.decision = decision.decision
    record.reasons = list(decision.reasons)
    record.checks = [CheckEvidence.model_validate(c.model_dump()) for c in decision.checks]
    record.tasks = [TaskVerdictEvidence.model_validate(t.model_dump(mode="json"))
                    for t in decision.tasks[:MAX_TASK_VERDICTS]]
    record.tasks_total = len(decision.tasks)
    record.task_reasons = dict(Counter(str(r) for t in decision.tasks for r in t.reasons))
    record.selected_task = decision.task_id
    stopped = _stopped(read, guard, decision, attempt, failure)
    if stopped is not None:
        record.stopped_reason, record.stopped_detail = stopped
    if not guard.replay:
        record.ledger = guard.ledger.with_cycle(record)
        # Opened by this cycle: a failed attempt, or a PR seen reverted, made the streak reach the threshold.
        threshold = target.circuit_breaker_failures
        record.breaker_opened = guard.ledger.failure_streak() < threshold <= record.ledger.failure_streak()
    return _with_totals(record, guard)


#: The stop code of a target whose file is broken (or whose id a second file names): no cycle runs.
CONFIG_INVALID = "config_invalid"
#: The most of a broken file's problems one record keeps.
MAX_CONFIG_PROBLEMS = 20


def config_invalid_record(target_id: str, *, run_id: str, run_type: str | None, problems: list[str],
                          ledger: Ledger, totals: Totals | None) -> CycleRecord:
    """The record of a broken target file's run: an error that changes nothing, so the ledger goes on as it was."""
    shown = problems[:MAX_CONFIG_PROBLEMS]
    more = len(problems) - len(shown)
    detail = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
    record = CycleRecord(target_id=target_id, dag_run_id=run_id, run_type=run_type, recorded_at=datetime.now(UTC),
                         decision="error", reasons=[CONFIG_INVALID], stopped_reason=CONFIG_INVALID,
                         stopped_detail=detail[:4000], ledger=ledger)
    return _with_totals(record, GuardrailResult(totals=totals))


def _with_totals(record: CycleRecord, guard: GuardrailResult | None) -> CycleRecord:
    """Carry the running totals forward with this record counted (unknown totals stay unknown)."""
    if guard is not None and guard.totals is not None:
        record.totals = guard.totals.with_cycle(record)
    return record


def _stopped_early(read: ReadResult | None, guard: GuardrailResult | None,
                   failure: CycleError | None) -> CycleError | None:
    """Why the cycle stopped before a decision (a read error, a lost read, no guardrail decision)."""
    if read is None:
        return failure or CycleError(code="read_failed", message="plan left no read")
    error = read.error or (guard.error if guard else None)
    if error:
        return error
    if guard is None or guard.decision is None:
        return failure or CycleError(code="guardrails_failed", message="plan left no decision")
    return None


def _stopped(read: ReadResult, guard: GuardrailResult, decision: Decision, attempt: AttemptEvidence | None,
             failure: CycleError | None) -> tuple[str, str] | None:
    """Why a decided cycle stopped where it did (``stopped_reason``, ``stopped_detail``)."""
    if guard.replay:
        return "replay", (f"replay of {read.as_of.isoformat() if read.as_of else '?'}: the guardrails "
                          f"would have decided {decision.decision} {decision.task_id or ''}").strip()
    if decision.decision == "skip":
        return (decision.reasons[0] if decision.reasons else "skipped",
                "; ".join(c.detail for c in decision.checks if not c.passed))
    if attempt and attempt.awaiting_ci:
        return "pushed_awaiting_ci", (f"{attempt.branch} at {attempt.pr_head_sha}: its PR opens once CI on it "
                                      f"passes (pr_creation: checks_pass)")
    if attempt and attempt.pr_number is not None:
        if attempt.continued_pr is not None:  # delivered to the open PR: brought up to date, or updated
            why = "pr_refreshed" if attempt.continue_why == "pr_conflicted" else "pr_updated"
            return why, " ".join(filter(None, [attempt.pr_url or "", attempt.delivery_note]))
        return "pr_opened", attempt.pr_url or ""
    if attempt and attempt.error_code:
        return attempt.error_code, attempt.error_message or ""
    if failure:
        return failure.code, failure.message
    return None
