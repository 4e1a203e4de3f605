"""``leviathan plan``: dry-run the guardrails.

``plan`` runs exactly the decision the DAG runs, on files an operator can edit, so "why did nothing
happen?" can be answered (and a config change tried) without a scheduler.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from leviathan_lib.contracts.xcom import ReadResult
from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.config import TargetConfig, load_target
from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.guardrails import parse_state
from leviathan_lib.core.secrets_scan import redact_text
from leviathan_lib.core.yamlsrc import decode_utf8
from leviathan_lib.cycle.decision import DecisionInputs, PlanState, build_decision
from leviathan_lib.cycle.steps import read_backlog


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


def _from_repo(target: TargetConfig, config_path: Path) -> ReadResult:
    """The read the DAG makes: backlog and recipes at the tip of the target branch."""
    url = target.repo_location(config_path)
    with tempfile.TemporaryDirectory(prefix="leviathan-plan-") as cache:
        read = read_backlog(target, url, Path(cache))
    if read.error and read.error.code == "repo_unreachable":
        raise ValidationFailed([Problem(str(config_path), "target_repo_url",
                                        redact_text(f"cannot read the target repository: {read.error.message}"))])
    if read.error and read.error.code == "backlog_invalid":  # the DAG stops here too; say why, as it does
        where = redact_text(f"{url}@{target.target_branch}")
        raise ValidationFailed([Problem(where, "", read.error.message)])
    if read.backlog_text is None:
        source = redact_text(f"{url}@{target.target_branch}:{target.backlog_path}")
        raise ValidationFailed([Problem(source, "", f"no backlog at commit {(read.commit_sha or '')[:12]}")])
    return read


def _recipes_file(args: argparse.Namespace, target: TargetConfig) -> Path | None:
    """``--recipes``, else the recipes file beside ``--backlog`` (a checkout's ``.leviathan/``), else None."""
    if args.recipes:
        return Path(args.recipes)
    beside = Path(args.backlog).parent / PurePosixPath(target.recipes_path).name
    if beside.is_file():
        print(f"note: recipes read from {beside} (beside the backlog; --recipes FILE to choose)", file=sys.stderr)
        return beside
    print(f"note: no --recipes and no {beside.name} beside the backlog: judged as the DAG judges a repository "
          "without a recipes file (a task naming a recipe is invalid_task)", file=sys.stderr)
    return None


def _from_files(args: argparse.Namespace, target: TargetConfig) -> ReadResult:
    """The read of ``--backlog`` (and the recipes), as if the DAG had pinned a commit holding them."""
    text = _read(Path(args.backlog))
    _, task_problems = parse_backlog(text, args.backlog)  # a file-level problem raises: exit 2, as the DAG stops
    for problem in task_problems:
        print(f"warning: {problem} (task reported as invalid_task)", file=sys.stderr)
    recipes = _recipes_file(args, target)
    return ReadResult(repo_url=args.backlog, branch=target.target_branch, backlog_path=args.backlog,
                      backlog_text=text, recipes_text=_read(recipes) if recipes else None)


def cmd_plan(args: argparse.Namespace) -> int:
    """The decision the DAG's ``plan`` would make on these files and this state (one builder for both)."""
    config_path = Path(args.config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            target = load_target(config_path)
        finally:
            _print_warnings(caught)
    from leviathan_lib.control.limits import limit_warnings

    for lowered in limit_warnings(target, str(config_path)):
        print(lowered.render("warning"), file=sys.stderr)
    read = _from_files(args, target) if args.backlog else _from_repo(target, config_path)
    state = parse_state(_read(Path(args.state)), args.state, PlanState) if args.state else PlanState()
    if state.now is None:  # as the DAG: the hourly PR limit and the daily budget count back from now
        state = state.model_copy(update={"now": datetime.now(UTC)})
    result = build_decision(DecisionInputs(target=target, read=read, state=state,
                                           continue_request=state.continue_pr, fleet=state.fleet))
    for problem in result.task_problems:
        if not args.backlog:  # from --backlog they were printed with their lines already
            print(f"warning: {problem} (task reported as invalid_task)", file=sys.stderr)
    assert result.decision is not None  # the read raised on every error
    text = result.decision.model_dump_json(indent=2)  # pydantic-core: ~6x json.dumps(indent=)
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
                      help="the recipes file with --backlog (default: the one beside the backlog, if any)")
    plan.add_argument("--state", metavar="STATE.json",
                      help="open PRs, attempts, global switch, an open PR to continue, the fleet state "
                           "(default: none open, no attempts, switch on, fleet limits not evaluated)")
    plan.set_defaults(func=cmd_plan)
