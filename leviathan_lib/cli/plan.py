"""``leviathan validate | schema | plan``: check files, publish their schemas, and dry-run the guardrails.

``plan`` runs exactly the decision the DAG runs, on files an operator can edit, so "why did nothing
happen?" can be answered (and a config change tried) without a scheduler.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from leviathan_lib.core.backlog import Backlog, Task, parse_backlog
from leviathan_lib.core.config import DEPRECATED_KEYS, LEGACY_KEYS, TargetConfig, load_target, parse_target
from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.guardrails import CycleState, decide, parse_state
from leviathan_lib.core.scope import ScopeViolation, path_segments
from leviathan_lib.core.yamlsrc import decode_utf8, line_of, load_yaml
from leviathan_lib.cycle.steps import apply_recipe_checks, check_sandbox, read_backlog

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _redact(text: str) -> str:
    """Credentials embedded in a repository URL never reach the terminal."""
    return _URL_USERINFO.sub("***@", text)


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)


def _read(path: Path) -> str:
    """A file as strict UTF-8 text (never decoded lossily); any problem is a one-line ValidationFailed."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationFailed([Problem(str(path), "", f"cannot read file: {exc}")]) from None
    return decode_utf8(data, str(path))


def _kind_of(data: Any, source: str) -> str:
    if isinstance(data, dict) and ("target_id" in data or "target_repo_url" in data):
        return "target"
    if isinstance(data, dict) and "tasks" in data:
        return "backlog"
    raise ValidationFailed([Problem(
        source, "", "cannot tell whether this is a target config (target_id:) or a backlog (tasks:); "
                    "use --kind target|backlog",
    )])


def _reference_problems(backlog: Backlog, raw_tasks: list[Any], text: str, source: str) -> list[Problem]:
    """What parse_backlog does not check across tasks: dangling dependencies and unsafe paths."""
    known = {t.id for t in backlog.tasks} | {i.id for i in backlog.invalid if i.id}
    valid = backlog.by_id()
    problems = []
    for index, raw in enumerate(raw_tasks):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        task = valid.get(raw_id) if isinstance(raw_id, str) else None
        if task is None:
            continue
        if task.ready and not task.allowed_paths:
            where = Problem(source, f"tasks[{index}].allowed_paths", "ready task has no allowed_paths, so it "
                            "can never run", line_of(text, ["tasks", index]))
            warnings.warn(str(where), UserWarning, stacklevel=2)
        for j, dep in enumerate(task.dependencies):
            loc: list[str | int] = ["tasks", index, "dependencies", j]
            if dep == task.id:
                problems.append(Problem(source, f"tasks[{index}].dependencies[{j}]",
                                        "a task cannot depend on itself", line_of(text, loc)))
            elif dep not in known:
                problems.append(Problem(source, f"tasks[{index}].dependencies[{j}]",
                                        f"unknown task id {dep!r}", line_of(text, loc)))
        for j, path in enumerate(task.allowed_paths):
            try:
                path_segments(path)
            except ScopeViolation as exc:
                problems.append(Problem(source, f"tasks[{index}].allowed_paths[{j}]", f"unsafe path: {exc}",
                                        line_of(text, ["tasks", index, "allowed_paths", j])))
    return problems


def _validate_file(path: Path, kind: str | None) -> list[Problem]:
    source = str(path)
    text = _read(path)
    kind = kind or _kind_of(load_yaml(text, source), source)
    if kind == "target":
        parse_target(text, source)
        return []
    backlog, problems = parse_backlog(text, source)
    raw_tasks = load_yaml(text, source).get("tasks") or []
    return problems + _reference_problems(backlog, raw_tasks, text, source)


def cmd_validate(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    for name in args.files:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                problems.extend(_validate_file(Path(name), args.kind))
            except ValidationFailed as exc:
                problems.extend(exc.problems)
        _print_warnings(caught)
    if problems:
        raise ValidationFailed(problems)
    return 0


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


def _backlog_from_repo(target: TargetConfig, config_path: Path) -> tuple[str, str, str | None]:
    """Backlog and recipes text at the tip of the target branch (as the DAG reads them), and a source name."""
    url = target.repo_location(config_path)
    source = _redact(f"{url}@{target.target_branch}:{target.backlog_path}")
    with tempfile.TemporaryDirectory(prefix="leviathan-plan-") as cache:
        read = read_backlog(target, url, Path(cache))
    if read.error and read.error.code == "repo_unreachable":
        raise ValidationFailed([Problem(str(config_path), "target_repo_url",
                                        _redact(f"cannot read the target repository: {read.error.message}"))])
    if read.error and read.error.code == "backlog_invalid":  # the DAG stops here too; say why, as it does
        where = _redact(f"{url}@{target.target_branch}")
        raise ValidationFailed([Problem(where, "", read.error.message)])
    if read.backlog_text is None:
        raise ValidationFailed([Problem(source, "", f"no backlog at commit {(read.commit_sha or '')[:12]}")])
    return read.backlog_text, source, read.recipes_text


def cmd_plan(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            target = load_target(config_path)
        finally:
            _print_warnings(caught)
    check_recipes = bool(args.recipes) or not args.backlog
    recipes_text = _read(Path(args.recipes)) if args.recipes else None
    if args.backlog:
        text, source = _read(Path(args.backlog)), args.backlog
    else:
        text, source, recipes_text = _backlog_from_repo(target, config_path)
    backlog, task_problems = parse_backlog(text, source)
    for problem in task_problems:
        print(f"warning: {problem} (task reported as invalid_task)", file=sys.stderr)
    if check_recipes:
        # As the DAG does: a ready task whose recipe is missing or unknown never reaches the worker.
        backlog = apply_recipe_checks(backlog, recipes_text, args.recipes or target.recipes_path,
                                      llm_enabled=target.executor == "llm")
    state = parse_state(_read(Path(args.state)), args.state) if args.state else CycleState()
    decision = check_sandbox(target, backlog, decide(target, backlog, state))  # on this machine, as the DAG
    text = decision.model_dump_json(indent=2)  # pydantic-core: ~6x json.dumps(indent=)
    if not text.isascii():  # keep json.dumps' \\u escapes, so the output is byte-for-byte what it always was
        text = json.dumps(json.loads(text), indent=2)
    print(text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    validate = subparsers.add_parser(
        "validate", help="check target configs and backlogs; exit 2 with one line per problem",
    )
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--kind", choices=["target", "backlog"],
                          help="file kind (default: detect from the top-level keys)")
    validate.set_defaults(func=cmd_validate)

    schema = subparsers.add_parser("schema", help="print the JSON Schema of a backlog or a target config")
    schema.add_argument("kind", choices=["backlog", "target"])
    schema.set_defaults(func=cmd_schema)

    plan = subparsers.add_parser("plan", help="print the guardrail decision for a target, as JSON")
    plan.add_argument("--config", required=True, metavar="TARGET.yaml")
    plan.add_argument("--backlog", metavar="BACKLOG.yaml",
                      help="backlog file (default: read it from the target repository's branch tip)")
    plan.add_argument("--recipes", metavar="RECIPES.yaml",
                      help="also check each ready task's recipe against this file (always done without --backlog)")
    plan.add_argument("--state", metavar="STATE.json",
                      help="open PRs, attempts, global switch (default: none open, no attempts, switch on)")
    plan.set_defaults(func=cmd_plan)
