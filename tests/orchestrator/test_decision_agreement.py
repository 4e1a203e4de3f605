"""One scenario table through the CLI (``leviathan plan``), the DAG (``plan`` in real Airflow) and the view.

Each scenario sets a demo target up, runs one real cycle with the global switch off (it pins a commit and
leaves a record and its ledger), then asks all three what a cycle starting now decides, with the switch on
(or off, in its scenario): the view from the evidence, the CLI from files an operator would write (the
backlog and recipes at the pinned commit, the ledger's state as STATE.json), the DAG by running the cycle.
They must agree on the decision, the task, the reasons, every check and every task's verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from leviathan_lib.cli.main import main
from leviathan_lib.core.config import load_target
from leviathan_lib.evidence.records import parse_records
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import commit_file, evidence_record, run_cycle, set_switch

pytestmark = pytest.mark.usefixtures("airflow_db")

ROOT = Path(__file__).resolve().parents[2]


def _set_switch(on: bool) -> None:
    set_switch(on)


def _edit_backlog(bare: Path, work: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    backlog = yaml.safe_load(run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout)
    edit(backlog)
    commit_file(bare, work, ".leviathan/backlog.yaml", yaml.safe_dump(backlog, sort_keys=False), "human edit")


def _script_editable(backlog: dict[str, Any]) -> None:
    """The demo's own recipes run .leviathan/recipes/write_doc.py: a task allowed to edit it."""
    task = next(t for t in backlog["tasks"] if t["id"] == "docs-quickstart")
    task["allowed_paths"].append(".leviathan/recipes/write_doc.py")


def _unknown_check(backlog: dict[str, Any]) -> None:
    """docs-quickstart asks for a check the recipes file does not define."""
    next(t for t in backlog["tasks"] if t["id"] == "docs-quickstart")["checks"] = ["lint-doc"]


def _red_at_base(target_file: Path, bare: Path) -> None:
    """A human leaves a TODO in docs/: the demo's required check fails on the pinned commit (the attempt skips)."""
    commit_file(bare, bare.parent / "human-red", "docs/index.md", "# widgets\n\nTODO\n", "a TODO")
    first, _ = run_cycle(target_file)
    assert evidence_record(first)["attempt"]["outcome"] == "checks_red_at_base"


def _forge(*args: str) -> None:
    assert main(["forge", *args]) == 0


def _open_pr(target_file: Path, bare: Path) -> None:
    first, _ = run_cycle(target_file)
    assert evidence_record(first)["attempt"]["pr_number"] == 1


def _review(target_file: Path, bare: Path) -> None:
    _open_pr(target_file, bare)
    _forge("collaborator", "--repo", str(bare), "alice", "write")
    _forge("review", "--repo", str(bare), "1", "--as", "alice", "--request-changes", "--body", "More, please.")


#: (scenario, backlog edit, world before the switched-off cycle, switch on for the question, expected)
SCENARIOS = [
    ("fresh", None, None, True, ("run", "docs-quickstart")),
    ("recipe_script_editable", _script_editable, None, True, ("run", "docs-faq")),
    ("switch_off", None, None, False, ("skip", None)),
    ("open_pr_limit", None, _open_pr, True, ("skip", None)),
    ("review_feedback", None, _review, True, ("run", "docs-quickstart")),
    ("unknown_check", _unknown_check, None, True, ("run", "docs-faq")),
    ("checks_red_at_base", None, _red_at_base, True, ("run", "docs-faq")),
]


def _from_view(target_file: Path) -> dict[str, Any]:
    from leviathan_lib.control.target_view import activity, backlog_view

    target = load_target(target_file)
    seen = activity(target.target_id, target, days=7)
    view = backlog_view(target, target_file, seen.history, seen.ledger, global_autonomy=_switch_on())
    assert view.unknown is None, view.unknown
    return {"decision": view.decision, "task_id": view.selected_task, "reasons": view.reasons,
            "checks": view.checks, "tasks": [{k: t[k] for k in ("id", "eligible", "reasons")} for t in view.tasks]}


def _switch_on() -> bool:
    from leviathan_lib.control.fleet import global_switch

    return global_switch()[0]


def _state_file(target_file: Path, ledger: Any, path: Path, commit_sha: str) -> Path:
    """STATE.json as an operator would write it from what the evidence says (``leviathan evidence --json``)."""
    from leviathan_lib.cycle.check import pr_continuation
    from leviathan_lib.cycle.decision import ledger_open_prs, state_from_ledger

    state = state_from_ledger(ledger, global_autonomy=_switch_on(), now=datetime.now(UTC),
                              open_prs=ledger_open_prs(ledger), commit_sha=commit_sha)
    cont, _ = pr_continuation(load_target(target_file), ledger, [],
                                    {pr.number: pr.head_sha for pr in ledger.open_prs})
    from leviathan_lib.control.fleet_limits import fleet_for

    fleet = fleet_for(load_target(target_file), datetime.now(UTC))
    doc = {**state.model_dump(mode="json", exclude={"now"}),
           "continue_pr": cont.model_dump(mode="json") if cont else None, "fleet": fleet.model_dump(mode="json")}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _from_cli(target_file: Path, bare: Path, record: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    sha = record["commit_sha"]
    files = {}
    for name in ("backlog", "recipes"):
        files[name] = tmp_path / "operator" / f"{name}.yaml"
        files[name].parent.mkdir(exist_ok=True)
        files[name].write_text(run_git(["--git-dir", str(bare), "show", f"{sha}:.leviathan/{name}.yaml"]).stdout)
    history = parse_records([(record["dag_run_id"], record)])
    state = _state_file(target_file, history.cycles[-1].ledger, tmp_path / "operator" / "state.json", sha)
    result = subprocess.run(
        [sys.executable, "-m", "leviathan_lib.cli.main", "plan", "--config", str(target_file),
         "--backlog", str(files["backlog"]), "--recipes", str(files["recipes"]), "--state", str(state)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _from_dag(target_file: Path) -> dict[str, Any]:
    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    return {"decision": record["decision"], "task_id": record["selected_task"], "reasons": record["reasons"],
            "checks": record["checks"], "tasks": record["tasks"]}


@pytest.mark.parametrize(("name", "edit", "world", "switch", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_the_cli_the_dag_and_the_view_decide_alike(tmp_path, targets_dir, name, edit, world, switch, expected):
    from leviathan_lib.demo import create_demo_target

    target_file = create_demo_target(tmp_path, target_id=f"agree_{name}", targets_dir=targets_dir)
    bare = tmp_path / "repos" / f"agree_{name}.git"
    if edit is not None:
        _edit_backlog(bare, tmp_path / "human", edit)
    try:
        if world is not None:
            world(target_file, bare)
        _set_switch(False)
        pinned, _ = run_cycle(target_file)  # pins the commit; its record carries the ledger
        record = evidence_record(pinned)
        assert record["reasons"][:1] == ["autonomy_disabled"]
        _set_switch(switch)
        view = _from_view(target_file)
        cli = _from_cli(target_file, bare, record, tmp_path)
        dag = _from_dag(target_file)
    finally:
        set_switch(True)
    assert (dag["decision"], dag["task_id"]) == expected, dag
    for key in ("decision", "task_id", "reasons", "checks", "tasks"):
        assert view[key] == dag[key] == cli[key], (key, view[key], dag[key], cli[key])
    if name == "recipe_script_editable":
        verdicts = {t["id"]: t["reasons"] for t in dag["tasks"]}
        assert verdicts["docs-quickstart"] == ["protected_path"]
    if name == "review_feedback":
        assert [c for c in dag["checks"] if c["name"] == "continue_pr"][0]["passed"]
    if name in ("unknown_check", "checks_red_at_base"):
        verdicts = {t["id"]: t["reasons"] for t in dag["tasks"]}
        assert verdicts["docs-quickstart"] == ["invalid_task" if name == "unknown_check" else "checks_red_at_base"]
