"""``leviathan plan``: dry-run the guardrails.

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

from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.config import TargetConfig, load_target
from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.guardrails import CycleState, decide, parse_state
from leviathan_lib.core.yamlsrc import decode_utf8
from leviathan_lib.cycle.steps import apply_recipe_checks, check_sandbox, read_backlog

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
    plan = subparsers.add_parser("plan", help="print the guardrail decision for a target, as JSON")
    plan.add_argument("--config", required=True, metavar="TARGET.yaml")
    plan.add_argument("--backlog", metavar="BACKLOG.yaml",
                      help="backlog file (default: read it from the target repository's branch tip)")
    plan.add_argument("--recipes", metavar="RECIPES.yaml",
                      help="also check each ready task's recipe against this file (always done without --backlog)")
    plan.add_argument("--state", metavar="STATE.json",
                      help="open PRs, attempts, global switch (default: none open, no attempts, switch on)")
    plan.set_defaults(func=cmd_plan)
