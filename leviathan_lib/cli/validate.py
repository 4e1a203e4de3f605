"""``leviathan validate | schema``: check target files, backlogs and recipes files; publish their schemas.

``validate`` takes files and folders, tells the three kinds apart and says what it found, so a clean run
is visibly clean. Every problem is one line, ``file:line: field: problem``, from the parsers the DAGs use,
plus what only a look at several tasks or files shows (:mod:`leviathan_lib.cli.file_checks`). Errors exit
2; warnings exit 0, or 1 with ``--strict`` so CI can refuse them.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leviathan_lib.cli.file_checks import (
    joined_target_items,
    joined_task_items,
    reference_problems,
    task_indexes,
    unknown_checks,
    unknown_recipes,
)
from leviathan_lib.contracts.recipes import parse_recipes_file
from leviathan_lib.core.backlog import Task, parse_backlog
from leviathan_lib.core.config import (
    DEPRECATED_KEYS,
    LEGACY_KEYS,
    LeviathanDeprecationWarning,
    TargetConfig,
    parse_target,
    target_files,
)
from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.fleet import parse_fleet
from leviathan_lib.core.names import FLEET_FILE_NAMES
from leviathan_lib.core.yamlsrc import decode_utf8, line_finder, load_yaml

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
KINDS = ("target", "backlog", "recipes", "fleet")
#: A file's kind by its name, when its content does not say (a backlog that lost its ``tasks:`` key).
KIND_BY_NAME = {"backlog.yaml": "backlog", "backlog.yml": "backlog", "recipes.yaml": "recipes",
                "recipes.yml": "recipes"}
#: The fleet file beside the target files (core/fleet.py) is one by its name, whatever it holds.
FLEET_NAMES = frozenset(FLEET_FILE_NAMES)
#: What a folder's ``.leviathan/`` adds to its ``*.yaml`` files.
LEVIATHAN_FILES = ("backlog.yaml", "recipes.yaml")


@dataclass
class Checked:
    """One file: its kind and text, and what checking it found."""

    path: Path
    kind: str = ""
    text: str = ""
    data: Any = None
    #: What a valid file is, for the ``ok:`` line: ``target demo``, ``backlog, 5 tasks``...
    what: str = ""
    target_id: str | None = None
    #: The recipe names of a valid recipes file.
    recipes: set[str] | None = None
    #: The check names of a valid recipes file.
    checks: set[str] | None = None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def _paths(names: list[str]) -> tuple[list[Path], list[Problem]]:
    """The files named, each folder as its ``*.yaml``/``*.yml`` files and its ``.leviathan/`` backlog and
    recipes (each file once), and a problem for a folder holding none."""
    found: dict[Path, Path] = {}
    problems = []
    for name in names:
        path = Path(name)
        listed = [path]
        if path.is_dir():
            try:
                listed = _folder_files(path)
            except OSError as exc:
                listed = []
                problems.append(Problem(name, "", f"cannot read folder: {exc}"))
            else:
                if not listed:
                    problems.append(Problem(name, "", "no *.yaml or *.yml file in this folder or its .leviathan/"))
        for file in listed:
            found.setdefault(file.resolve(), file)
    return list(found.values()), problems


def _folder_files(folder: Path) -> list[Path]:
    nested = folder / ".leviathan"
    return target_files(folder) + [nested / n for n in LEVIATHAN_FILES if (nested / n).is_file()]


def _kind(data: Any, path: Path) -> str:
    if path.name in FLEET_NAMES:
        return "fleet"
    if isinstance(data, dict):
        if "target_id" in data or "target_repo_url" in data:
            return "target"
        if "tasks" in data:
            return "backlog"
        if "recipes" in data or "checks" in data:
            return "recipes"
    if path.name in KIND_BY_NAME:
        return KIND_BY_NAME[path.name]
    raise ValidationFailed([Problem(
        str(path), "", "cannot tell whether this is a target file (target_id:), a backlog (tasks:) or a recipes "
                       "file (recipes:); use --kind target|backlog|recipes",
    )])


def _load(path: Path, kind: str | None) -> Checked:
    checked = Checked(path)
    try:
        checked.text = decode_utf8(path.read_bytes(), str(path))  # never decoded lossily
        checked.data = load_yaml(checked.text, str(path))
        checked.kind = kind or _kind(checked.data, path)
    except OSError as exc:
        checked.errors = [Problem(str(path), "", f"cannot read file: {exc}")]
    except ValidationFailed as exc:
        checked.errors = exc.problems
    return checked


def _with_recipes_beside(files: list[Checked]) -> list[Checked]:
    """``files`` plus the ``recipes.yaml`` beside each backlog, which its tasks' ``recipe:`` names refer to."""
    have = {f.path.resolve() for f in files}
    added = []
    for backlog in (f for f in files if f.kind == "backlog"):
        beside = backlog.path.parent / "recipes.yaml"
        if beside.is_file() and beside.resolve() not in have:
            have.add(beside.resolve())
            added.append(_load(beside, "recipes"))
    return files + added


@contextmanager
def _warnings_into(checked: Checked) -> Iterator[None]:
    """The parsers' Python warnings (deprecated keys) as this file's warnings, also when the parser raises."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                message = warning.message
                checked.warnings.append(message.problem if isinstance(message, LeviathanDeprecationWarning)
                                        else Problem(str(checked.path), "", str(message)))


def _check_target(checked: Checked) -> None:
    source = str(checked.path)
    if isinstance(checked.data, dict):
        checked.warnings += joined_target_items(checked.data, source, line_finder(checked.text))
    target = parse_target(checked.text, source)
    checked.what, checked.target_id = f"target {target.target_id}", target.target_id
    if target.limits.model_fields_set:
        from leviathan_lib.control.limits import limit_warnings

        checked.warnings += limit_warnings(target, source)


def _check_backlog(checked: Checked, files: list[Checked]) -> None:
    source, lines = str(checked.path), line_finder(checked.text)
    raw_tasks = checked.data.get("tasks") if isinstance(checked.data, dict) else None
    if isinstance(raw_tasks, list):
        checked.warnings += joined_task_items(raw_tasks, source, lines)
    backlog, problems = parse_backlog(checked.text, source)
    indexes = task_indexes(backlog, raw_tasks or [])
    errors, warned = reference_problems(backlog, indexes, source, lines)
    recipes_file = _recipes_file_for(checked, files)
    if recipes_file is not None and recipes_file.recipes is not None:
        errors += unknown_recipes(raw_tasks or [], (str(recipes_file.path), recipes_file.recipes), source, lines)
    if recipes_file is not None and recipes_file.checks is not None:
        errors += unknown_checks(raw_tasks or [], (str(recipes_file.path), recipes_file.checks), source, lines)
    checked.errors += problems + errors
    checked.warnings += warned
    count = len(backlog.tasks) + len(backlog.invalid)
    checked.what = f"backlog, {count} task{'s' * (count != 1)}"


def _recipes_file_for(backlog: Checked, files: list[Checked]) -> Checked | None:
    """The recipes file a backlog's tasks name recipes and checks from: the one beside it, else the only one
    given."""
    recipes = [f for f in files if f.kind == "recipes"]
    beside = [f for f in recipes if f.path.parent.resolve() == backlog.path.parent.resolve()]
    chosen = beside or (recipes if len(recipes) == 1 else [])
    return chosen[0] if chosen else None


def _check_recipes(checked: Checked) -> None:
    defined = parse_recipes_file(checked.text, str(checked.path))
    checked.recipes, checked.checks = set(defined.recipes), set(defined.checks)
    count, checks = len(checked.recipes), len(checked.checks)
    checked.what = f"recipes file, {count} recipe{'s' * (count != 1)}"
    if checks:
        checked.what += f", {checks} check{'s' * (checks != 1)}"


def _check(checked: Checked, files: list[Checked]) -> None:
    if checked.errors:  # unreadable, or not a kind we know
        return
    try:
        with _warnings_into(checked):
            if checked.kind == "backlog":
                _check_backlog(checked, files)
            elif checked.kind == "target":
                _check_target(checked)
            elif checked.kind == "fleet":
                teams = len(parse_fleet(checked.text, str(checked.path)).teams)
                checked.what = f"fleet file, {teams} team{'s' * (teams != 1)}"
            else:
                _check_recipes(checked)
    except ValidationFailed as exc:
        checked.errors += exc.problems


def _shared_target_ids(files: list[Checked]) -> None:
    """Two target files with one ``target_id``: the DAG folder refuses both, so both are errors here too."""
    by_id: dict[str, list[Checked]] = {}
    for checked in files:
        if checked.target_id:  # a valid target file
            by_id.setdefault(checked.target_id, []).append(checked)
    for target_id, same in by_id.items():
        for checked in same if len(same) > 1 else []:
            others = ", ".join(str(o.path) for o in same if o is not checked)
            line = line_finder(checked.text)(["target_id"])
            checked.errors.append(Problem(str(checked.path), "target_id", f"{target_id!r} is also the target_id of "
                                          f"{others}; Airflow would refuse both", line))


def _report(files: list[Checked]) -> int:
    """Print each file's warnings (stderr) and ``ok:`` line (stdout), then the summary; return the warnings."""
    for checked in files:
        for warning in checked.warnings:
            print(warning.render("warning"), file=sys.stderr)
        if not checked.errors:
            print(f"ok: {checked.path} ({checked.what})")
    valid = sum(not f.errors for f in files)
    warned = sum(len(f.warnings) for f in files)
    summary = f"{valid} file{'s' * (valid != 1)} valid"
    if valid < len(files):
        summary = f"{valid} of {len(files)} files valid"
    if files:
        print(summary + (f", {warned} warning{'s' * (warned != 1)}" if warned else ""))
    return warned


def cmd_validate(args: argparse.Namespace) -> int:
    paths, problems = _paths(args.paths)
    files = _with_recipes_beside([_load(path, args.kind) for path in paths])
    for checked in sorted(files, key=lambda f: f.kind != "recipes"):  # backlogs look their recipes up
        _check(checked, files)
    _shared_target_ids(files)
    warned = _report(files)
    problems += [p for f in files for p in f.errors]
    if problems:
        raise ValidationFailed(problems)
    return 1 if warned and args.strict else 0


def _target_schema() -> dict[str, Any]:
    schema = TargetConfig.model_json_schema()
    for key, why in DEPRECATED_KEYS.items():
        schema["properties"][key] = {"deprecated": True, "description": f"Deprecated: {why}."}
    for key, why in LEGACY_KEYS.items():  # still honoured
        schema["properties"][key].update(deprecated=True, description=f"Deprecated: {why}.")
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": "leviathan-target.schema.json", **schema}


def _backlog_schema() -> dict[str, Any]:
    task = Task.model_json_schema()
    defs = task.pop("$defs", {})
    defs["Task"] = task
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": "leviathan-backlog.schema.json",
        "title": "Leviathan backlog",
        "description": "The human-written .leviathan/backlog.yaml: only tasks with ready: true ever run.",
        "type": "object",
        "properties": {
            "tasks": {"type": "array", "items": {"$ref": "#/$defs/Task"}},
            "metadata": {"type": "object", "description": "Free-form information for humans; unused."},
        },
        "required": ["tasks"],
        "additionalProperties": False,
        "$defs": defs,
    }


def cmd_schema(args: argparse.Namespace) -> int:
    schema = _target_schema() if args.kind == "target" else _backlog_schema()
    print(json.dumps(schema, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    validate = subparsers.add_parser(
        "validate", help="check target files, backlogs and recipes files (files or folders); exit 2 on errors",
    )
    validate.add_argument("paths", nargs="+", metavar="PATH",
                          help="a file, or a folder: its *.yaml/*.yml and its .leviathan/ backlog and recipes")
    validate.add_argument("--kind", choices=KINDS, help="file kind (default: fleet.yaml is the fleet file; else from "
                                                        "the top-level keys, else the file name backlog.yaml/"
                                                        "recipes.yaml)")
    validate.add_argument("--strict", action="store_true", help="exit 1 when there are warnings (and no errors)")
    validate.set_defaults(func=cmd_validate)

    schema = subparsers.add_parser("schema", help="print the JSON Schema of a backlog or a target config")
    schema.add_argument("kind", choices=["backlog", "target"])
    schema.set_defaults(func=cmd_schema)
