"""What ``leviathan validate`` checks beyond each file's parser: references across tasks and files, and
list items that YAML silently joined.

The parsers (``core.config``, ``core.backlog``, ``worker.recipes``) judge one document as the DAG reads
it; these checks need the whole backlog, another file, or a guess at what the human meant to write.
"""

from __future__ import annotations

import json
from typing import Any

from leviathan_lib.core.backlog import Backlog, Task, entry_ids, task_field
from leviathan_lib.core.errors import Problem
from leviathan_lib.core.scope import ScopeViolation, path_segments
from leviathan_lib.core.yamlsrc import LineFinder, did_you_mean

#: Lists of paths, ids and names, where an item holding " - " is two items joined by mis-indentation.
TARGET_LISTS = ("allowed_path_prefixes", "protected_paths", "pr_labels", "pr_reviewers", "pr_assignees",
                "approval_assignees")
TASK_LISTS = ("allowed_paths", "dependencies", "labels")


def task_indexes(backlog: Backlog, raw_tasks: list[Any]) -> dict[str, int]:
    """Each valid task's position in the file (valid ids are unique, so the id finds its entry)."""
    valid = backlog.by_id()
    ids = [raw.get("id") if isinstance(raw, dict) else None for raw in raw_tasks]
    return {task_id: i for i, task_id in enumerate(ids) if isinstance(task_id, str) and task_id in valid}


def reference_problems(backlog: Backlog, indexes: dict[str, int], source: str,
                       lines: LineFinder) -> tuple[list[Problem], list[Problem]]:
    """Errors no single task shows (dangling or self dependencies, unsafe paths), and a warning for a
    ready task that can never run."""
    known = {t.id for t in backlog.tasks} | {i.id for i in backlog.invalid if i.id}
    errors: list[Problem] = []
    warnings: list[Problem] = []
    for task in backlog.tasks:
        task_errors, task_warnings = _task_references(task, indexes[task.id], known, source, lines)
        errors += task_errors
        warnings += task_warnings
    return errors, warnings


def _task_references(task: Task, index: int, known: set[str], source: str,
                     lines: LineFinder) -> tuple[list[Problem], list[Problem]]:
    def at(rest: list[str | int], message: str) -> Problem:
        return Problem(source, task_field(index, task.id, rest), message, lines(["tasks", index, *rest]))

    errors = []
    warnings = [at(["allowed_paths"], "ready task has no allowed_paths, so it can never run")] \
        if task.ready and not task.allowed_paths else []
    for j, dep in enumerate(task.dependencies):
        if dep == task.id:
            errors.append(at(["dependencies", j], "a task cannot depend on itself"))
        elif dep not in known:
            errors.append(at(["dependencies", j], f"unknown task id {dep!r}"))
    for j, path in enumerate(task.allowed_paths):
        try:
            path_segments(path)
        except ScopeViolation as exc:
            errors.append(at(["allowed_paths", j], f"unsafe path: {exc}"))
    return errors, warnings


def unknown_recipes(raw_tasks: list[Any], recipes: tuple[str, set[str]], source: str,
                    lines: LineFinder) -> list[Problem]:
    """Entries naming a recipe the recipes file (``recipes``: its name and recipe names) does not define;
    invalid entries too, so one run shows every mistake."""
    recipes_source, names = recipes
    listed = ", ".join(sorted(names)) or "none"
    problems = []
    for index, (raw, task_id) in enumerate(zip(raw_tasks, entry_ids(raw_tasks), strict=True)):
        recipe = raw.get("recipe") if isinstance(raw, dict) else None
        if isinstance(recipe, str) and recipe not in names:
            hint = did_you_mean(recipe, names)
            problems.append(Problem(source, task_field(index, task_id, ["recipe"]),
                                    f"unknown recipe {recipe!r} in {recipes_source}{hint} (known: {listed})",
                                    lines(["tasks", index, "recipe"])))
    return problems


def unknown_checks(raw_tasks: list[Any], checks: tuple[str, set[str]], source: str,
                   lines: LineFinder) -> list[Problem]:
    """Entries whose ``checks:`` name a check the recipes file (``checks``: its name and check names) does not
    define; such a ready task never runs (``invalid_task``)."""
    recipes_source, names = checks
    listed = ", ".join(sorted(names)) or "none"
    problems = []
    for index, (raw, task_id) in enumerate(zip(raw_tasks, entry_ids(raw_tasks), strict=True)):
        wanted = raw.get("checks") if isinstance(raw, dict) else None
        for j, name in enumerate(wanted if isinstance(wanted, list) else []):
            if isinstance(name, str) and name not in names:
                problems.append(Problem(source, task_field(index, task_id, ["checks", j]),
                                        f"unknown check {name!r} in {recipes_source}{did_you_mean(name, names)} "
                                        f"(known: {listed})", lines(["tasks", index, "checks", j])))
    return problems


def _joined(items: Any, loc: list[str | int], field: str, source: str, lines: LineFinder) -> list[Problem]:
    if not isinstance(items, list):
        return []
    return [
        Problem(source, f"{field}[{j}]", f"looks like two list items joined by mis-indentation "
                f'({json.dumps(item, ensure_ascii=False)}); indent each "- " item the same', lines([*loc, j]))
        for j, item in enumerate(items) if isinstance(item, str) and " - " in item
    ]


def joined_target_items(data: dict[Any, Any], source: str, lines: LineFinder) -> list[Problem]:
    """``- docs/`` over ``   - .leviathan/`` (one space deeper) is the single string ``"docs/ - .leviathan/"``."""
    return [p for key in TARGET_LISTS for p in _joined(data.get(key), [key], key, source, lines)]


def joined_task_items(raw_tasks: list[Any], source: str, lines: LineFinder) -> list[Problem]:
    """:func:`joined_target_items` for each task's lists, the task named by id."""
    problems = []
    for index, (raw, task_id) in enumerate(zip(raw_tasks, entry_ids(raw_tasks), strict=True)):
        if isinstance(raw, dict):
            for key in TASK_LISTS:
                field = task_field(index, task_id, [key])
                problems += _joined(raw.get(key), ["tasks", index, key], field, source, lines)
    return problems
