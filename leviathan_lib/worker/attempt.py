"""One attempt at one task, from a pinned commit to a patch: clone, run the executor, collect the diff."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from leviathan_lib.contracts.attempt import (
    AttemptResult,
    AttemptSpec,
    LlmExecutorSpec,
    RecipeExecutorSpec,
    Usage,
    failed_result,
    utc_now,
)
from leviathan_lib.contracts.recipes import parse_recipes
from leviathan_lib.core.backlog import Task
from leviathan_lib.core.egress import EgressReport
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.guardrails import ReasonCode
from leviathan_lib.core.limits import RESOURCE_LIMIT, LimitsReport
from leviathan_lib.core.scope import Scope, task_scope
from leviathan_lib.worker.checks import (
    CACHE_ENV,
    CHECKS_RED_AT_BASE,
    TIMEOUT,
    AttemptChecks,
    BaseCache,
    ChecksUnusable,
    describe,
    load_checks,
    make_runner,
)
from leviathan_lib.worker.egress import EgressProxy, proxy_env
from leviathan_lib.worker.recipes import RecipeRun, run_recipe, step_env
from leviathan_lib.worker.sandbox import SANDBOX_HOME, Sandbox, bwrap_path, mode_label, probe, sandbox_path
from leviathan_lib.worker.workspace import FORBIDDEN_MODES, Changes, GitFailed, clone_at, collect_changes

#: The error code of an attempt whose recipe would have needed a sandbox this machine cannot build
#: (the same string the guardrails stop a cycle with, before the worker).
SANDBOX_UNAVAILABLE = ReasonCode.SANDBOX_UNAVAILABLE.value

if TYPE_CHECKING:  # the llm executor (pydantic-ai) loads only when an attempt uses it
    from leviathan_lib.worker.llm import Preflight


def _recipes_text(checkout: Path, recipes_path: str) -> str:
    path = (checkout / recipes_path).resolve()
    if not path.is_relative_to(checkout.resolve()):
        raise OSError(f"{recipes_path} resolves outside the checkout")
    return path.read_text(encoding="utf-8")


class _Failed(Exception):
    """The attempt stopped: a stable code, a message, and the outcome to report."""

    def __init__(self, code: str, message: str,
                 outcome: Literal["failed", "timed_out", "checks_red_at_base"] = "failed") -> None:
        super().__init__(message)
        self.code, self.message, self.outcome = code, message, outcome


@dataclass
class _Progress:
    """What the attempt has established so far; a failure reports all of it."""

    started: datetime
    base: str | None = None
    paths: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    usage: Usage | None = None
    egress: EgressReport | None = None
    limits: LimitsReport | None = None
    checks: AttemptChecks | None = None

    def failed(self, exc: _Failed) -> AttemptResult:
        checks = self.checks
        return failed_result(exc.code, exc.message, outcome=exc.outcome, started_at=self.started,
                             base_sha=self.base, changed_paths=self.paths, executor=self.summary,
                             usage=self.usage, egress=self.egress,
                             checks=checks.results() if checks else None).model_copy(update={"limits": self.limits})


def _checked_task(spec: AttemptSpec) -> tuple[Task, Preflight | None]:
    """The task, and the llm executor's preflight (key and price; None for recipes); :class:`_Failed` if
    either is unusable."""
    try:
        task = Task.model_validate(spec.task)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise _Failed("invalid_spec", f"task: {fields}") from None
    executor = spec.executor
    if isinstance(executor, RecipeExecutorSpec):
        if task.recipe is not None and task.recipe != executor.recipe:
            raise _Failed("invalid_spec",
                          f"task {task.id} names recipe {task.recipe!r} but the spec asks for {executor.recipe!r}")
        return task, None
    if task.recipe is not None:
        raise _Failed(
            "invalid_spec", f"task {task.id} names recipe {task.recipe!r} but the spec asks for the llm executor"
        )
    from leviathan_lib.worker.llm import preflight

    checked = preflight(executor, os.environ)
    if checked.failure:
        raise _Failed(checked.failure.code, checked.failure.message)
    return task, checked


def _checked_sandbox(spec: AttemptSpec) -> None:
    """Defence in depth: the orchestrator probed the sandbox, but a recipe or a check never runs without it here."""
    runs_code = isinstance(spec.executor, RecipeExecutorSpec) or spec.checks is not None
    if runs_code and spec.sandbox == "bwrap":
        problem = probe()
        if problem:
            raise _Failed(SANDBOX_UNAVAILABLE, f"recipes and checks run only in the bubblewrap sandbox: {problem}")


def _prepared_checks(spec: AttemptSpec, task: Task, *, checkout: Path, workspace: Path, home: Path,
                     clock: float) -> AttemptChecks | None:
    """The repository's checks the spec names, read from the checkout (None: it names none)."""
    if spec.checks is None:
        return None
    from leviathan_lib.worker.llm import attempt_deadline

    try:
        defined = load_checks(checkout, spec.checks)
    except ChecksUnusable as exc:
        raise _Failed(exc.code, exc.message) from None
    runner = make_runner(checkout, home=home, workspace=workspace, mode=spec.sandbox, task_id=task.id,
                         limits=spec.limits)
    cache_dir = os.environ.get(CACHE_ENV)
    return AttemptChecks(spec.checks, defined, runner, deadline=attempt_deadline(spec.timeout_seconds, clock),
                         cache=BaseCache(Path(cache_dir)) if cache_dir else None,
                         cache_key=AttemptChecks.key(spec.repo_url, spec.start_sha, spec.sandbox, defined))


def _run_base_checks(spec: AttemptSpec, checks: AttemptChecks) -> None:
    """The checks on the start commit; red there ends the attempt under ``checks_red_at_base: skip``."""
    checks.run_base()
    if checks.base_cut:
        raise _Failed(TIMEOUT, "the attempt deadline passed while the checks ran on the start commit", "timed_out")
    red = [r for r in checks.base if not r.passed]
    if red and checks.spec.on_red_at_base == "skip":
        raise _Failed(CHECKS_RED_AT_BASE, f"the repository's own checks already fail on {spec.start_sha[:12]}, "
                      "before any change (" + "; ".join(describe(r) for r in red) + "): the repository's state, "
                      "not this attempt's failure", "checks_red_at_base")


def _run_change_checks(checks: AttemptChecks) -> None:
    """The checks on the change (unless the LLM executor just ran them on this very tree); :class:`_Failed`
    when a required one fails."""
    verdict = checks.verdict() if checks.unchanged_since_checked() else checks.run_change()
    if verdict.code is not None:
        raise _Failed(verdict.code, verdict.message, "timed_out" if verdict.code == TIMEOUT else "failed")


def _feedback_file(spec: AttemptSpec, workspace: Path) -> Path | None:
    """The review text of an attempt continuing a PR, as a read-only file outside the checkout (or None)."""
    feedback = spec.continue_pr.feedback if spec.continue_pr is not None else None
    if not feedback:
        return None
    path = workspace / "review-feedback.md"
    path.write_text(feedback + "\n", encoding="utf-8")
    path.chmod(0o444)
    return path


@contextlib.contextmanager
def _egress_proxy(spec: AttemptSpec, workspace: Path, progress: _Progress) -> Iterator[EgressProxy | None]:
    """The attempt's egress proxy while the recipe runs (None without rules); its report goes to ``progress``.

    The sandbox reaches it through a Unix socket (its network namespace stays private); a pod or an
    unsandboxed step through 127.0.0.1.
    """
    if not spec.egress:
        yield None
        return
    proxy = EgressProxy(spec.egress)
    try:
        if spec.sandbox == "bwrap":
            proxy.start_unix(workspace)
        else:
            proxy.start_tcp()
        yield proxy
    finally:
        progress.egress = proxy.stop()


def _run_recipe_executor(
    spec: AttemptSpec, executor: RecipeExecutorSpec, task: Task, checkout: Path, workspace: Path, *,
    progress: _Progress,
) -> RecipeRun:
    """Run the named recipe in ``checkout``, each step in the sandbox ``spec.sandbox`` asks for."""
    recipes_path = executor.recipes_path
    try:
        recipes = parse_recipes(_recipes_text(checkout, recipes_path), recipes_path)
    except ValidationFailed as exc:
        raise _Failed("recipes_invalid", str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Failed("recipes_invalid", f"{recipes_path}: cannot read: {exc}") from None
    recipe = recipes.get(executor.recipe)
    if recipe is None:
        known = ", ".join(sorted(recipes)) or "none"
        raise _Failed("recipe_unknown", f"{recipes_path} has no recipe {executor.recipe!r} (known: {known})")
    task_file = workspace / "task.json"
    task_file.write_text(json.dumps(task.model_dump(), indent=2), encoding="utf-8")
    feedback_file = _feedback_file(spec, workspace)
    with _egress_proxy(spec, workspace, progress) as proxy:
        sandbox = None
        if spec.sandbox == "bwrap":
            readonly = (task_file,) if feedback_file is None else (task_file, feedback_file)
            sandbox = Sandbox(bwrap=bwrap_path(), checkout=checkout, etc_dir=workspace / "sandbox-etc",
                              readonly=readonly, egress_socket=proxy.socket_path if proxy else None,
                              limits=spec.limits)  # fmt: skip
            sandbox.write_etc()
            env = step_env(recipe, task.id, task_file, SANDBOX_HOME, path=sandbox_path(),
                           feedback_file=feedback_file)  # fmt: skip
        else:
            recipe_home = workspace / "recipe-home"
            recipe_home.mkdir()
            env = step_env(recipe, task.id, task_file, recipe_home, feedback_file=feedback_file)
        if proxy is not None:
            env.update(proxy_env(proxy.step_url))
        return run_recipe(executor.recipe, recipe, checkout=checkout, env=env, logs=workspace / "logs",
                          sandbox=sandbox, label=mode_label(spec.sandbox))  # fmt: skip


def _run_executor(
    spec: AttemptSpec, task: Task, scope: Scope, *, llm_key: Preflight | None, workspace: Path, checkout: Path,
    clock: float,
    progress: _Progress,
) -> tuple[str, list[str]]:
    """Run the executor; what it was (for messages) and the backlog baseline (llm), or :class:`_Failed`."""
    executor = spec.executor
    if isinstance(executor, RecipeExecutorSpec):
        run = _run_recipe_executor(spec, executor, task, checkout, workspace, progress=progress)
        progress.summary, progress.limits = run.summary(), run.limits
        if run.failure:
            raise _Failed(RESOURCE_LIMIT if run.limits and run.limits.exceeded else "recipe_failed", run.failure)
        return f"recipe {executor.recipe!r}", []
    from leviathan_lib.worker.llm import attempt_deadline, run_llm
    from leviathan_lib.worker.llm_validate import baseline_backlog_problems

    baseline = baseline_backlog_problems(checkout, executor.backlog_path)
    if spec.continue_pr is not None and spec.continue_pr.feedback and not executor.review_feedback:
        executor = executor.model_copy(update={"review_feedback": spec.continue_pr.feedback})
    assert llm_key is not None and llm_key.price is not None  # preflight refused the attempt otherwise
    checks = progress.checks
    llm = run_llm(executor, task, scope, checkout, api_key=llm_key.api_key, price=llm_key.price,
                  deadline=attempt_deadline(spec.timeout_seconds, clock),
                  checks=checks.run_change if checks else None,
                  check_rounds=spec.checks.llm_rounds if spec.checks else 0)  # fmt: skip
    progress.summary, progress.usage = llm.executor_summary(), llm.usage()
    if llm.failure:
        raise _Failed(llm.failure.code, llm.failure.message,
                      "timed_out" if llm.failure.outcome == "timed_out" else "failed")
    return f"the model {executor.model!r}", baseline


def _check_changes(changes: Changes, scope: Scope, what: str) -> None:
    """Something changed, and only regular files inside the scope; :class:`_Failed` otherwise."""
    if not changes.paths:
        raise _Failed("no_changes", f"{what} changed nothing")
    violations = [f"{c.path!r} is a {FORBIDDEN_MODES[m]}" for c in changes.entries
                  for m in sorted({c.old_mode, c.new_mode} & FORBIDDEN_MODES.keys())]  # fmt: skip
    violations += [reason for path in changes.paths if (reason := scope.check(path))]
    if violations:
        raise _Failed("scope_violation", "; ".join(violations))


def _patch_text(spec: AttemptSpec, changes: Changes) -> str:
    """The patch as UTF-8 text within the size limit; :class:`_Failed` otherwise."""
    if len(changes.patch) > spec.max_patch_bytes:
        raise _Failed("patch_too_large", f"patch is {len(changes.patch)} bytes, the limit is {spec.max_patch_bytes}")
    try:
        return changes.patch.decode("utf-8")
    except UnicodeDecodeError:
        message = "the diff holds text that is not UTF-8; write UTF-8 text or binary files"
        raise _Failed("patch_not_utf8", message) from None


def run_attempt(spec: AttemptSpec, workspace: Path) -> AttemptResult:
    """Run one attempt in ``workspace`` (an empty or missing directory) and describe the outcome."""
    progress = _Progress(started=utc_now())
    try:
        return _attempt(spec, workspace, progress, time.monotonic())
    except _Failed as exc:
        return progress.failed(exc)


def _attempt(spec: AttemptSpec, workspace: Path, progress: _Progress, clock: float) -> AttemptResult:
    task, llm_key = _checked_task(spec)
    scope = task_scope(task.allowed_paths, spec.allowed_path_prefixes)
    if not scope.prefixes:
        raise _Failed("scope_violation",
                      f"task {task.id} has no allowed_paths within the target's prefixes {spec.allowed_path_prefixes}")
    _checked_sandbox(spec)
    workspace.mkdir(parents=True, exist_ok=True)
    if any(workspace.iterdir()):
        raise _Failed("invalid_spec", f"workspace {workspace} is not empty")
    home, checkout = workspace / "home", workspace / "checkout"
    home.mkdir()  # the trusted git's HOME; a recipe never sees it
    start = spec.start_sha  # the pinned commit, or the PR's head when the attempt continues its branch
    try:
        clone_at(spec.repo_url, start, checkout, home=home)
    except GitFailed as exc:
        raise _Failed("clone_failed", str(exc)) from None
    progress.base = start
    checks = _prepared_checks(spec, task, checkout=checkout, workspace=workspace, home=home, clock=clock)
    progress.checks = checks
    if checks is not None:
        _run_base_checks(spec, checks)

    what, baseline = _run_executor(spec, task, scope, llm_key=llm_key, workspace=workspace, checkout=checkout,
                                   clock=clock, progress=progress)
    try:
        changes = collect_changes(checkout, start, home=home)
    except GitFailed as exc:
        raise _Failed("diff_failed", str(exc)) from None
    progress.paths = changes.paths
    _check_changes(changes, scope, what)
    if isinstance(spec.executor, LlmExecutorSpec):
        problems = _llm_final_check(checkout, changes.paths, spec.executor, baseline)
        if problems:
            raise _Failed("llm_validation_failed", "; ".join(problems))
    if checks is not None:
        _run_change_checks(checks)
    patch = _patch_text(spec, changes)
    return AttemptResult(
        result_version=1,
        outcome="succeeded",
        error=None,
        base_sha=start,
        changed_paths=changes.paths,
        patch=patch,
        executor=progress.summary,
        started_at=progress.started,
        finished_at=utc_now(),
        usage=progress.usage,
        egress=progress.egress,
        limits=progress.limits,
        checks=checks.results() if checks else [],
        checks_red_at_base=checks.red_at_base if checks else [],
    )


def _llm_final_check(checkout: Path, paths: list[str], executor: LlmExecutorSpec, baseline: list[str]) -> list[str]:
    """The type checks again, on the final diff: what is delivered is what was validated."""
    from leviathan_lib.worker.llm_validate import check_files

    return check_files(checkout, paths, backlog_path=executor.backlog_path, backlog_baseline=baseline)
