"""Full cycles through real Airflow (``dag.test()``) against real git repositories and the local forge."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import commit_file, evidence_record, run_cycle, set_switch, xcom

pytestmark = pytest.mark.usefixtures("airflow_db")


def _changed_files(bare: Path, branch: str) -> list[str]:
    out = run_git(["--git-dir", str(bare), "diff", "--name-only", f"main...{branch}"]).stdout
    return sorted(out.split())


def _verdicts(record: dict) -> dict[str, list[str]]:
    return {t["id"]: t["reasons"] for t in record["tasks"]}


@pytest.mark.sqlite_subset
def test_demo_target_opens_one_pr_then_respects_the_open_pr_limit(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="cycle_demo", targets_dir=targets_dir)
    bare = tmp_path / "repos" / "cycle_demo.git"
    forge = LocalForge(bare)

    dag_run, states = run_cycle(target_file)
    assert dag_run.state == "success"
    assert states[names.TASK_SKIP] == "skipped" and names.TASK_RECORD_EVIDENCE in states
    assert {s for t, s in states.items() if t != names.TASK_SKIP} == {"success"}
    record = evidence_record(dag_run)
    assert record["decision"] == "run" and record["stopped_reason"] == "pr_opened"
    assert record["selected_task"] == "docs-quickstart"
    assert record["commit_sha"] == run_git(["--git-dir", str(bare), "rev-parse", "main"]).stdout.strip()
    verdicts = _verdicts(record)
    assert verdicts["ci-workflow"] == ["scope_violation"]
    assert verdicts["docs-changelog"] == ["dependencies_incomplete"]
    assert verdicts["docs-architecture"] == ["not_ready"]
    assert verdicts["docs-readme-badge"] == ["status_not_pending"]

    prs = forge.list_open_prs()
    assert [(p.number, p.head, p.base) for p in prs] == [(1, "agent/docs-quickstart/1", "main")]
    assert record["attempt"]["pr_number"] == 1 and record["attempt"]["outcome"] == "succeeded"
    assert record["attempt"]["sandbox"] == "bwrap"
    assert record["checks"][-1] == {"name": "sandbox", "passed": True, "detail": "recipe steps run in: bwrap"}
    # Only the in-scope file and the backlog status edit.
    assert _changed_files(bare, "agent/docs-quickstart/1") == [".leviathan/backlog.yaml", "docs/quickstart.md"]
    backlog = run_git(["--git-dir", str(bare), "show", "agent/docs-quickstart/1:.leviathan/backlog.yaml"]).stdout
    statuses = {t["id"]: t.get("status") for t in yaml.safe_load(backlog)["tasks"]}
    assert statuses["docs-quickstart"] == "completed"
    assert "docs-quickstart" in prs[0].body and str(record["commit_sha"]) in prs[0].body

    # Next cycle: the open PR limit (DEV: 1) stops it before the worker.
    dag_run2, states2 = run_cycle(target_file)
    assert dag_run2.state == "success"
    # An idle cycle is one task process: plan; it skipped every other task itself but the EmptyOperator.
    assert {t for t, s in states2.items() if s == "success"} == {names.TASK_PLAN, names.TASK_SKIP}
    assert set(states2.values()) == {"success", "skipped"}
    # ... and stores one XCom row: Airflow's own note of the branch it followed (the record is the event).
    assert _xcom_keys(dag_run2) == [(names.TASK_PLAN, "skipmixin_key")]
    record2 = evidence_record(dag_run2)
    assert record2["decision"] == "skip" and record2["reasons"] == ["open_pr_limit"]
    assert record2["attempt"] is None
    assert len(forge.list_open_prs()) == 1

    # A human merges: the dependency is now completed, so the next cycle delivers the dependent task.
    forge.merge(1)
    dag_run3, _ = run_cycle(target_file)
    record3 = evidence_record(dag_run3)
    assert record3["selected_task"] == "docs-changelog", record3
    assert _changed_files(bare, "agent/docs-changelog/1") == [".leviathan/backlog.yaml", "docs/changelog.md"]

    # Exactly one evidence event per cycle, written by the task that wrote the record: record_evidence after
    # an attempt, plan (through its alias outlet) on a skip; plan's success on the attempt path emits nothing.
    assert _evidence_events("cycle_demo") == [
        (dag_run.run_id, names.TASK_RECORD_EVIDENCE), (dag_run2.run_id, names.TASK_PLAN),
        (dag_run3.run_id, names.TASK_RECORD_EVIDENCE)]


def _evidence_events(target_id: str) -> list[tuple[str, str]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from leviathan_lib.core.names import evidence_asset_uri

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.source_run_id, AssetEvent.source_task_id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == evidence_asset_uri(target_id)).order_by(AssetEvent.id))
        return [tuple(row) for row in rows]


def test_out_of_scope_task_never_reaches_the_worker(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="cycle_scope", targets_dir=targets_dir)
    bare = tmp_path / "repos" / "cycle_scope.git"
    # Leave only the out-of-scope task ready.
    backlog = yaml.safe_load(run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout)
    for task in backlog["tasks"]:
        task["ready"] = task["id"] == "ci-workflow"
    commit_file(bare, tmp_path / "work", ".leviathan/backlog.yaml", yaml.safe_dump(backlog), "only ci ready")

    dag_run, states = run_cycle(target_file)
    assert states[names.TASK_RUN_WORKER] == "skipped" and states[names.TASK_OPEN_PULL_REQUEST] == "skipped"
    record = evidence_record(dag_run)
    assert record["reasons"] == ["no_eligible_task"]
    assert _verdicts(record)["ci-workflow"] == ["scope_violation"]
    assert LocalForge(bare).list_open_prs() == []


BAD_BACKLOGS = {
    "malformed_yaml": ("tasks:\n  - id: a\n    title: [unclosed\n", "backlog_invalid", ".leviathan/backlog.yaml:"),
    "wrong_shape": ("tasks: {id: a}\n", "backlog_invalid", "tasks: expected a list"),
    "missing": (None, "backlog_missing", "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_BACKLOGS))
def test_bad_backlog_stops_before_the_worker_with_a_clear_reason(tmp_path, targets_dir, case):
    text, code, message = BAD_BACKLOGS[case]
    target_file = create_demo_target(tmp_path, target_id=f"bad_{case}", targets_dir=targets_dir)
    bare = tmp_path / "repos" / f"bad_{case}.git"
    commit_file(bare, tmp_path / "work", ".leviathan/backlog.yaml", text, f"break backlog: {case}")

    dag_run, states = run_cycle(target_file)
    assert dag_run.state == "failed"  # an operator must look: cycle_outcome fails the run
    # plan records the error skip itself and branches straight to cycle_outcome, which fails the run.
    assert states[names.TASK_PLAN] == "success" and states[names.TASK_RUN_WORKER] == "skipped"
    assert states[names.TASK_RECORD_EVIDENCE] == "skipped" and states[names.TASK_OPEN_PULL_REQUEST] == "skipped"
    assert states[names.TASK_CYCLE_OUTCOME] == "failed"
    record = evidence_record(dag_run)
    assert record["decision"] == "error" and record["reasons"] == [code]
    assert message in record["stopped_detail"]
    assert LocalForge(bare).list_open_prs() == []


def test_unknown_recipe_makes_the_task_invalid_and_another_task_runs(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="cycle_recipe", targets_dir=targets_dir)
    bare = tmp_path / "repos" / "cycle_recipe.git"
    text = run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout
    commit_file(bare, tmp_path / "work", ".leviathan/backlog.yaml",
                text.replace("recipe: write-quickstart", "recipe: no-such-recipe"), "typo in recipe")

    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert _verdicts(record)["docs-quickstart"] == ["invalid_task"]
    assert record["selected_task"] == "docs-faq"


def test_unreachable_repository_fails_closed(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="cycle_gone", targets_dir=targets_dir)
    run_git(["--git-dir", str(tmp_path / "repos" / "cycle_gone.git"), "update-ref", "-d", "refs/heads/main"])
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert record["decision"] == "error" and record["reasons"] == ["repo_unreachable"]
    assert "branch 'main' not found" in record["stopped_detail"]
    assert states[names.TASK_RUN_WORKER] == "skipped" and dag_run.state == "failed"


def test_the_global_switch_is_on_only_when_set_on_through_leviathan(tmp_path, targets_dir):
    """Off, a bad value, a missing Variable: off. An admin's recorded off stays off when someone sets the
    Variable to true with Airflow's own tools (an op may edit Variables; only Leviathan's record counts)."""
    from airflow.models.variable import Variable

    target_file = create_demo_target(tmp_path, target_id="cycle_switch", targets_dir=targets_dir)
    try:
        for value in ("false", "maybe", None):
            if value is None:
                Variable.delete("leviathan_autonomy_enabled")
            else:
                Variable.set("leviathan_autonomy_enabled", value)
            dag_run, states = run_cycle(target_file)
            record = evidence_record(dag_run)
            assert record["reasons"] == ["autonomy_disabled"], value
            assert states[names.TASK_RUN_WORKER] == "skipped"
        set_switch(False)  # an admin switches everything off, on the record
        Variable.set("leviathan_autonomy_enabled", "true")  # then the Variable is edited directly
        record = evidence_record(run_cycle(target_file)[0])
        assert record["reasons"] == ["autonomy_disabled"]
        assert "global switch=off" in record["checks"][0]["detail"]
    finally:
        set_switch(True)


def test_worker_timeout_is_recorded_and_counts_toward_the_breaker(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="cycle_slow", timeout=3, targets_dir=targets_dir)
    bare = tmp_path / "repos" / "cycle_slow.git"
    slow = "import time\ntime.sleep(120)\n"
    commit_file(bare, tmp_path / "work", ".leviathan/recipes/write_doc.py", slow, "a recipe that hangs")

    for attempt in (1, 2):
        dag_run, states = run_cycle(target_file)
        record = evidence_record(dag_run)
        assert states[names.TASK_RUN_WORKER] == "failed" and dag_run.state == "failed"
        assert record["attempt"]["outcome"] == "timed_out"
        assert record["attempt"]["branch"] == f"agent/docs-quickstart/{attempt}"
        assert record["stopped_reason"] == "timeout"
    # Two consecutive failures open the breaker (circuit_breaker_failures: 2); the worker is not run.
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert "circuit_breaker_open" in record["reasons"] and states[names.TASK_RUN_WORKER] == "skipped"
    assert LocalForge(bare).list_open_prs() == []

    # An operator resets the breaker, on the record; the exhausted task stays out, the next one is tried.
    reset = subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", "breaker", "reset",
                            "--target", "cycle_slow", "--reason", "recipe fixed upstream", "--by", "oncall"],
                           capture_output=True, text=True)
    assert reset.returncode == 0, reset.stderr
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert "circuit_breaker_open" not in record["reasons"]
    assert _verdicts(record)["docs-quickstart"] == ["attempts_exhausted"]
    assert record["attempt"]["task_id"] == "docs-faq" and record["attempt"]["outcome"] == "timed_out"
    quickstart_hash = record["ledger"]["failures"]["docs-quickstart"]["task_hash"]
    assert record["ledger"]["failures"]["docs-quickstart"]["count"] == 2

    # A human edits the exhausted task's definition: it starts afresh (and its failure feeds the breaker).
    backlog = run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout
    commit_file(bare, tmp_path / "work", ".leviathan/backlog.yaml",
                backlog.replace("in two minutes.", "in one minute."), "sharpen docs-quickstart")
    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert _verdicts(record)["docs-quickstart"] == []
    assert (record["attempt"]["task_id"], record["attempt"]["attempt"]) == ("docs-quickstart", 3)
    assert record["attempt"]["task_hash"] != quickstart_hash and record["breaker_opened"] is True
    assert record["ledger"]["failures"]["docs-quickstart"] == {"task_hash": record["attempt"]["task_hash"],
                                                                "count": 1}


def test_breaker_reset_for_an_unknown_target_is_a_clear_error():
    result = subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", "breaker", "reset", "--target", "nope",
                             "--reason", "x"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "no evidence asset for target 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_a_machine_without_the_sandbox_stops_recipes_and_the_opt_out_runs_them(tmp_path, targets_dir, monkeypatch,
                                                                                caplog):
    """Fail closed: no bubblewrap → sandbox_unavailable in plan, task log and evidence, and no worker."""
    target_file = create_demo_target(tmp_path, target_id="cycle_nobwrap", targets_dir=targets_dir)
    bare = tmp_path / "repos" / "cycle_nobwrap.git"
    missing = str(tmp_path / "no-bwrap-here")
    monkeypatch.setenv("LEVIATHAN_BWRAP", missing)

    plan = subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", "plan", "--config", str(target_file)],
                          capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    doc = json.loads(plan.stdout)
    assert doc["decision"] == "skip" and doc["reasons"] == ["sandbox_unavailable"]
    assert doc["checks"][-1]["name"] == "sandbox" and missing in doc["checks"][-1]["detail"]

    with caplog.at_level(logging.INFO, logger="leviathan"):
        dag_run, states = run_cycle(target_file)
    assert states["run_worker"] == "skipped" and states["record_evidence"] == "skipped"
    assert states["cycle_outcome"] == "failed"  # an operator must install bubblewrap: the run says so
    assert dag_run.state == "failed"
    record = evidence_record(dag_run)
    assert record["decision"] == "skip" and record["reasons"] == ["sandbox_unavailable"]
    assert record["stopped_reason"] == "sandbox_unavailable" and missing in record["stopped_detail"]
    assert record["attempt"] is None
    logged = [r.getMessage() for r in caplog.records if "sandbox" in r.getMessage()]
    assert any("FAIL" in line and missing in line for line in logged), logged
    assert LocalForge(bare).list_open_prs() == []

    text = target_file.read_text() + "unsafe_allow_unsandboxed_recipes: true\n"
    target_file.write_text(text)
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert states["run_worker"] == "success" and record["stopped_reason"] == "pr_opened"
    assert record["attempt"]["sandbox"] == "unsandboxed (opt-out)"
    sandbox_check = [c for c in record["checks"] if c["name"] == "sandbox"]
    assert sandbox_check == [{"name": "sandbox", "passed": True,
                              "detail": "recipe steps run in: unsandboxed (opt-out)"}]
# --- a hostile recipe through a real cycle: nothing it smuggles reaches XCom, evidence or a PR ---

LEAKED = "ghp_" + "Hx7v" * 9  # a github_token shape, assembled at run time


def _hostile_target(tmp_path, targets_dir, target_id: str, script: str) -> tuple[Path, Path]:
    """The demo target whose docs-quickstart task may write under docs/ and whose recipe is ``script``."""
    target_file = create_demo_target(tmp_path, target_id=target_id, targets_dir=targets_dir)
    bare = tmp_path / "repos" / f"{target_id}.git"
    text = run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout
    commit_file(bare, tmp_path / "work", ".leviathan/backlog.yaml",
                text.replace('      - "docs/quickstart.md"', '      - "docs/"', 1), "the quickstart may use docs/")
    commit_file(bare, tmp_path / "work", ".leviathan/recipes/write_doc.py", script, "a hostile recipe")
    return target_file, bare


def _xcoms(dag_run) -> list[tuple[str, str, Any]]:
    """The run's XCom rows: (task id, key, value)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id)).all()
        return [(row.task_id, row.key, XComModel.deserialize_value(row)) for row in rows]


def _xcom_keys(dag_run) -> list[tuple[str, str]]:
    return sorted((task_id, key) for task_id, key, _ in _xcoms(dag_run))


def _all_xcoms(dag_run) -> str:
    return json.dumps([value for _, _, value in _xcoms(dag_run)], default=str)


def test_a_secret_hidden_from_git_diff_never_reaches_xcom_evidence_or_a_pr(tmp_path, targets_dir):
    script = (
        "from pathlib import Path\n"
        "token = 'ghp_' + 'Hx7v' * 9\n"
        "print('leaking', token)\n"
        "Path('docs/.gitattributes').write_text('*.md -diff\\n')\n"
        "Path('docs/quickstart.md').write_bytes(b'# Quickstart\\n\\0' + token.encode() + b'\\n')\n"
    )
    target_file, bare = _hostile_target(tmp_path, targets_dir, "hostile_secret", script)
    dag_run, states = run_cycle(target_file)
    assert states["run_worker"] == "failed" and states["open_pull_request"] == "upstream_failed"
    record = evidence_record(dag_run)
    assert record["attempt"]["outcome"] == "failed" and record["attempt"]["error_code"] == "secret_detected"
    result = xcom(dag_run, "run_worker")
    assert result["patch"] == "" and "[REDACTED:github_token]" in json.dumps(result["executor"])
    assert LEAKED not in _all_xcoms(dag_run)
    assert LocalForge(bare).list_prs() == []
    assert run_git(["--git-dir", str(bare), "branch", "--list", "agent/*"]).stdout == ""


def test_a_protected_path_is_rejected_and_odd_file_names_are_inert_in_the_pr(tmp_path, targets_dir):
    workflow = (
        "from pathlib import Path\n"
        "Path('docs/.github/workflows').mkdir(parents=True)\n"
        "Path('docs/.github/workflows/ci.yml').write_text('on: push\\n')\n"
    )
    target_file, bare = _hostile_target(tmp_path, targets_dir, "hostile_protected", workflow)
    dag_run, states = run_cycle(target_file)
    assert states["run_worker"] == "success" and states["open_pull_request"] == "failed"
    record = evidence_record(dag_run)
    assert record["attempt"]["outcome"] == "rejected_by_guardrail"
    assert record["attempt"]["error_code"] == "protected_path"
    assert record["attempt"]["changed_paths"] == ["docs/.github/workflows/ci.yml"]  # git's, not claimed
    assert LocalForge(bare).list_prs() == []

    name = "docs/[x](https:evil.example) <img src=x>.md"
    commit_file(bare, tmp_path / "work", ".leviathan/recipes/write_doc.py",
                f"from pathlib import Path\nPath({name!r}).write_text('hi\\n')\n", "an odd file name")
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert record["attempt"]["outcome"] == "succeeded" and record["attempt"]["pr_number"] == 1, record
    assert record["attempt"]["changed_paths"] == [".leviathan/backlog.yaml", name]
    [pr] = LocalForge(bare).list_prs()
    assert f"- `{name}`" in pr.body


def test_a_plan_that_fails_still_leaves_exactly_one_record(tmp_path, targets_dir, monkeypatch):
    """An unexpected error in plan (after its read): record_evidence writes the cycle's only record."""
    from leviathan_lib.core.config import load_target
    from leviathan_lib.cycle import check
    from leviathan_lib.orchestrator.dag_factory import build_target_dag

    def broken(*args, **kwargs):
        raise RuntimeError("forge exploded")

    monkeypatch.setattr(check, "check_cycle", broken)
    target_file = create_demo_target(tmp_path, target_id="cycle_planfail", targets_dir=targets_dir)
    dag = build_target_dag(load_target(target_file), target_file)
    dag.task_dict[names.TASK_PLAN].retries = 0  # no 30 s retry delay in the test
    dag_run = dag.test()
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert dag_run.state == "failed"
    assert states[names.TASK_PLAN] == "failed" and states[names.TASK_RECORD_EVIDENCE] == "success"
    assert states[names.TASK_CYCLE_OUTCOME] == "upstream_failed"
    record = evidence_record(dag_run)
    assert record["decision"] == "error" and record["stopped_reason"] == "guardrails_failed"
    assert _evidence_events("cycle_planfail") == [(dag_run.run_id, names.TASK_RECORD_EVIDENCE)]
    assert LocalForge(tmp_path / "repos" / "cycle_planfail.git").list_prs() == []
