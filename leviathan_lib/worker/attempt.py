"""One attempt at one task, from a pinned commit to a patch: clone, run the executor, collect the diff."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from leviathan_lib.core.backlog import Task
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.scope import task_scope
from leviathan_lib.worker.contract import (
    AttemptResult,
    AttemptSpec,
    LlmExecutorSpec,
    RecipeExecutorSpec,
    Usage,
    failed_result,
    utc_now,
)
from leviathan_lib.worker.recipes import parse_recipes, run_recipe, step_env
from leviathan_lib.worker.workspace import FORBIDDEN_MODES, GitFailed, clone_at, collect_changes


def _recipes_text(checkout: Path, recipes_path: str) -> str:
    path = (checkout / recipes_path).resolve()
    if not path.is_relative_to(checkout.resolve()):
        raise OSError(f"{recipes_path} resolves outside the checkout")
    return path.read_text(encoding="utf-8")


class _Failed(Exception):
    """An executor stopped the attempt before there was a change to collect."""

    def __init__(self, code: str, message: str, outcome: str = "failed") -> None:
        super().__init__(message)
        self.code, self.message, self.outcome = code, message, outcome


def _run_recipe_executor(
    executor: RecipeExecutorSpec, task: Task, checkout: Path, workspace: Path, home: Path
) -> dict[str, Any]:
    """Run the named recipe in ``checkout``; the executor summary, or :class:`_Failed`."""
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
    env = step_env(recipe, task.id, task_file, home)
    return run_recipe(executor.recipe, recipe, checkout=checkout, env=env, logs=workspace / "logs")


def run_attempt(spec: AttemptSpec, workspace: Path) -> AttemptResult:
    """Run one attempt in ``workspace`` (an empty or missing directory) and describe the outcome."""
    started, clock = utc_now(), time.monotonic()
    try:
        task = Task.model_validate(spec.task)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return failed_result("invalid_spec", f"task: {fields}", started_at=started)
    executor = spec.executor
    api_key, price = "", None
    if isinstance(executor, RecipeExecutorSpec) and task.recipe is not None and task.recipe != executor.recipe:
        return failed_result(
            "invalid_spec",
            f"task {task.id} names recipe {task.recipe!r} but the spec asks for {executor.recipe!r}",
            started_at=started,
        )
    if isinstance(executor, LlmExecutorSpec):
        if task.recipe is not None:
            return failed_result(
                "invalid_spec", f"task {task.id} names recipe {task.recipe!r} but the spec asks for the llm executor",
                started_at=started,
            )  # fmt: skip
        from leviathan_lib.worker.llm import preflight

        checked = preflight(executor, os.environ)
        if checked.failure:
            return failed_result(checked.failure.code, checked.failure.message, started_at=started)
        api_key, price = checked.api_key, checked.price
    scope = task_scope(task.allowed_paths, spec.allowed_path_prefixes)
    if not scope.prefixes:
        return failed_result(
            "scope_violation",
            f"task {task.id} has no allowed_paths within the target's prefixes {spec.allowed_path_prefixes}",
            started_at=started,
        )

    workspace.mkdir(parents=True, exist_ok=True)
    if any(workspace.iterdir()):
        return failed_result("invalid_spec", f"workspace {workspace} is not empty", started_at=started)
    home, checkout = workspace / "home", workspace / "checkout"
    home.mkdir()
    try:
        clone_at(spec.repo_url, spec.commit_sha, checkout, home=home)
    except GitFailed as exc:
        return failed_result("clone_failed", str(exc), started_at=started)
    base = spec.commit_sha

    usage: Usage | None = None
    summary: dict[str, Any] = {}
    try:
        if isinstance(executor, RecipeExecutorSpec):
            run = _run_recipe_executor(executor, task, checkout, workspace, home)
            summary = run.summary()
            what = f"recipe {executor.recipe!r}"
            if run.failure:
                raise _Failed("recipe_failed", run.failure)
        else:
            from leviathan_lib.worker.llm import attempt_deadline, run_llm
            from leviathan_lib.worker.llm_validate import baseline_backlog_problems

            baseline = baseline_backlog_problems(checkout, executor.backlog_path)
            assert price is not None  # preflight refused the attempt otherwise
            llm = run_llm(executor, task, scope, checkout, api_key=api_key, price=price,
                          deadline=attempt_deadline(spec.timeout_seconds, clock))  # fmt: skip
            summary, usage, what = llm.executor_summary(), llm.usage(), f"the model {executor.model!r}"
            if llm.failure:
                raise _Failed(llm.failure.code, llm.failure.message, llm.failure.outcome)
    except _Failed as exc:
        return failed_result(exc.code, exc.message, outcome=exc.outcome, started_at=started, base_sha=base,
                             executor=summary, usage=usage)  # fmt: skip

    try:
        changes = collect_changes(checkout, base, home=home)
    except GitFailed as exc:
        return failed_result(
            "diff_failed", str(exc), started_at=started, base_sha=base, executor=summary, usage=usage
        )
    paths = changes.paths

    def fail(code: str, message: str) -> AttemptResult:
        return failed_result(
            code, message, started_at=started, base_sha=base, changed_paths=paths, executor=summary, usage=usage
        )

    if not paths:
        return fail("no_changes", f"{what} changed nothing")
    violations = [f"{c.path!r} is a {FORBIDDEN_MODES[m]}" for c in changes.entries
                  for m in sorted({c.old_mode, c.new_mode} & FORBIDDEN_MODES.keys())]  # fmt: skip
    violations += [reason for path in paths if (reason := scope.check(path))]
    if violations:
        return fail("scope_violation", "; ".join(violations))
    if isinstance(executor, LlmExecutorSpec):
        problems = _llm_final_check(checkout, paths, executor, baseline)
        if problems:
            return fail("llm_validation_failed", "; ".join(problems))
    if len(changes.patch) > spec.max_patch_bytes:
        return fail(
            "patch_too_large", f"patch is {len(changes.patch)} bytes, the limit is {spec.max_patch_bytes}"
        )
    try:
        patch = changes.patch.decode("utf-8")
    except UnicodeDecodeError:
        return fail(
            "patch_not_utf8", "the diff holds text that is not UTF-8; write UTF-8 text or binary files"
        )
    return AttemptResult(
        result_version=1,
        outcome="succeeded",
        error=None,
        base_sha=base,
        changed_paths=paths,
        patch=patch,
        executor=summary,
        started_at=started,
        finished_at=utc_now(),
        usage=usage,
    )


def _llm_final_check(checkout: Path, paths: list[str], executor: LlmExecutorSpec, baseline: list[str]) -> list[str]:
    """The type checks again, on the final diff: what is delivered is what was validated."""
    from leviathan_lib.worker.llm_validate import check_files

    return check_files(checkout, paths, backlog_path=executor.backlog_path, backlog_baseline=baseline)
