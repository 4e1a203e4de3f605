"""The worker: one attempt at one task, from a pinned commit to a patch.

It runs the same way as a local subprocess and in a Kubernetes pod (``python3 -m leviathan_lib.worker``)
and talks only through the JSON documents of :mod:`leviathan_lib.worker.contract`. It holds no forge
credential and reads nothing secret from its environment: it clones, runs a human-defined recipe and
returns the diff; delivering it is the orchestrator's job.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from leviathan_lib.backlog import Task
from leviathan_lib.errors import ValidationFailed
from leviathan_lib.scope import task_scope
from leviathan_lib.worker.contract import AttemptResult, AttemptSpec, failed_result, utc_now
from leviathan_lib.worker.recipes import parse_recipes, run_recipe, step_env
from leviathan_lib.worker.workspace import FORBIDDEN_MODES, GitFailed, clone_at, collect_changes

__all__ = ["run_attempt"]


def _recipes_text(checkout: Path, recipes_path: str) -> str:
    path = (checkout / recipes_path).resolve()
    if not path.is_relative_to(checkout.resolve()):
        raise OSError(f"{recipes_path} resolves outside the checkout")
    return path.read_text(encoding="utf-8")


def run_attempt(spec: AttemptSpec, workspace: Path) -> AttemptResult:
    """Run one attempt in ``workspace`` (an empty or missing directory) and describe the outcome."""
    started = utc_now()
    try:
        task = Task.model_validate(spec.task)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return failed_result("invalid_spec", f"task: {fields}", started_at=started)
    if task.recipe is not None and task.recipe != spec.executor.recipe:
        return failed_result(
            "invalid_spec",
            f"task {task.id} names recipe {task.recipe!r} but the spec asks for {spec.executor.recipe!r}",
            started_at=started,
        )
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
    home, checkout, task_file = workspace / "home", workspace / "checkout", workspace / "task.json"
    home.mkdir()
    try:
        clone_at(spec.repo_url, spec.commit_sha, checkout, home=home)
    except GitFailed as exc:
        return failed_result("clone_failed", str(exc), started_at=started)
    base = spec.commit_sha

    recipes_path = spec.executor.recipes_path
    try:
        recipes = parse_recipes(_recipes_text(checkout, recipes_path), recipes_path)
    except ValidationFailed as exc:
        return failed_result("recipes_invalid", str(exc), started_at=started, base_sha=base)
    except (OSError, UnicodeDecodeError) as exc:
        return failed_result(
            "recipes_invalid", f"{recipes_path}: cannot read: {exc}", started_at=started, base_sha=base
        )
    recipe = recipes.get(spec.executor.recipe)
    if recipe is None:
        known = ", ".join(sorted(recipes)) or "none"
        return failed_result(
            "recipe_unknown",
            f"{recipes_path} has no recipe {spec.executor.recipe!r} (known: {known})",
            started_at=started,
            base_sha=base,
        )

    task_file.write_text(json.dumps(task.model_dump(), indent=2), encoding="utf-8")
    env = step_env(recipe, task.id, task_file, home)
    run = run_recipe(spec.executor.recipe, recipe, checkout=checkout, env=env, logs=workspace / "logs")
    summary = run.summary()
    if run.failure:
        return failed_result(
            "recipe_failed", run.failure, started_at=started, base_sha=base, executor=summary
        )

    try:
        changes = collect_changes(checkout, base, home=home)
    except GitFailed as exc:
        return failed_result("diff_failed", str(exc), started_at=started, base_sha=base, executor=summary)
    paths = changes.paths

    def fail(code: str, message: str) -> AttemptResult:
        return failed_result(
            code, message, started_at=started, base_sha=base, changed_paths=paths, executor=summary
        )

    if not paths:
        return fail("no_changes", f"recipe {spec.executor.recipe!r} changed nothing")
    violations = [f"{c.path!r} is a {FORBIDDEN_MODES[m]}" for c in changes.entries
                  for m in sorted({c.old_mode, c.new_mode} & FORBIDDEN_MODES.keys())]  # fmt: skip
    violations += [reason for path in paths if (reason := scope.check(path))]
    if violations:
        return fail("scope_violation", "; ".join(violations))
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
    )
