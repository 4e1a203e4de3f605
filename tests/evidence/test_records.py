"""Evidence and history: PR lifecycle sync, the event stream, the evidence CLI, replays and retention."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import TEMPLATE, create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import init_bare, run_git
from tests.airflow_helpers import commit_file, evidence_record, run_cycle

pytestmark = pytest.mark.usefixtures("airflow_db")
ROOT = Path(__file__).resolve().parents[2]


def leviathan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", *args], capture_output=True, text=True,
                          env=os.environ.copy())


def _verdicts(record: dict) -> dict[str, list[str]]:
    return {t["id"]: t["reasons"] for t in record["tasks"]}


def test_pr_lifecycle_sync_closed_merged_and_changed_definition(tmp_path, targets_dir):
    from leviathan_lib.control.evidence_db import read_events

    target_file = create_demo_target(tmp_path, target_id="sync", targets_dir=targets_dir)
    # Three PRs within minutes: above the default hourly limit, which is not what this test is about.
    target_file.write_text(target_file.read_text().replace("max_prs_per_hour: 3", "max_prs_per_hour: 10"))
    bare = tmp_path / "repos" / "sync.git"
    forge = LocalForge(bare)

    run_cycle(target_file)  # PR #1: docs-quickstart
    forge.close_pr(1)  # the human says no
    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert [(c["number"], c["state"], c["branch_deleted"]) for c in record["pr_sync"]] == [(1, "closed", True)]
    assert "agent/docs-quickstart/1" not in run_git(["--git-dir", str(bare), "branch", "--list"]).stdout
    assert _verdicts(record)["docs-quickstart"] == ["pr_closed_unchanged"]
    assert record["selected_task"] == "docs-faq" and record["attempt"]["pr_number"] == 2

    forge.merge(2)
    text = run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout
    commit_file(bare, tmp_path / "human", ".leviathan/backlog.yaml",
                text.replace("install and run widgets in two minutes", "install and run widgets quickly"),
                "reword the quickstart task")
    dag_run, _ = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert [(c["number"], c["state"], c["branch_deleted"]) for c in record["pr_sync"]] == [(2, "merged", True)]
    # Only Leviathan pushed to the merged branch (its tip is the recorded push), so it is deleted.
    assert "agent/docs-faq/1" not in run_git(["--git-dir", str(bare), "branch", "--list"]).stdout
    # The definition changed, so the closed PR no longer blocks it: attempt 2 on a new branch.
    assert record["selected_task"] == "docs-quickstart"
    assert record["attempt"]["branch"] == "agent/docs-quickstart/2" and record["attempt"]["pr_number"] == 3

    events = read_events(target_id="sync", limit=1000)
    types = [e.type for e in events]
    assert types.count("cycle.started") == 3 and types.count("pr.created") == 3
    assert "pr.closed" in types and "pr.merged" in types and types.count("branch.deleted") == 2
    assert [e.id for e in events] == sorted(e.id for e in events)
    # Resume from the middle: exactly the rest, in order.
    middle = events[len(events) // 2].id
    assert [e.id for e in read_events(after=middle, target_id="sync")] == [e.id for e in events if e.id > middle]

    # The ledger carried in the newest record summarises the whole history exactly as a full fold does.
    from leviathan_lib.control.evidence_db import record_rows
    from leviathan_lib.evidence.records import parse_records

    history = parse_records([(run, extra) for _, _, run, extra in record_rows(target_id="sync")])
    assert history.latest_ledger(exclude_run_id=None) == history.ledger()
    assert [p.number for p in history.ledger().open_prs] == [3]
    assert [(c.task_id, c.task_hash) for c in history.ledger().closed_prs] == [
        ("docs-quickstart", history.cycles[0].attempt.task_hash)]

    table = leviathan("evidence", "--target", "sync")
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("pr_opened") == 3
    assert "LIFECYCLE" in table.stdout and "#1 closed branch deleted" in table.stdout
    assert "#2 merged branch deleted" in table.stdout
    as_json = json.loads(leviathan("evidence", "--target", "sync", "--json", "--task", "docs-faq").stdout)
    assert [r["attempt"]["pr_number"] for r in as_json] == [2]
    one = json.loads(leviathan("evidence", "--cycle", dag_run.run_id, "--target", "sync").stdout)
    assert one[0]["dag_run_id"] == dag_run.run_id
    bad = leviathan("evidence", "--target", "sync", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr


def _dated_repo(bare: Path, work: Path, commits: list[tuple[str, str]]) -> None:
    """A target repo whose history has backlog versions committed at the given dates."""
    init_bare(bare)
    shutil.copytree(TEMPLATE, work)
    run_git(["init", "--quiet", "-b", "main"], cwd=work)
    original = (work / ".leviathan" / "backlog.yaml").read_text()
    for date, ready_task in commits:
        text = original.replace("ready: true", "ready: false")
        marker = f"  - id: {ready_task}\n"
        head, rest = text.split(marker, 1)
        text = head + marker + rest.replace("ready: false", "ready: true", 1)
        (work / ".leviathan" / "backlog.yaml").write_text(text)
        run_git(["add", "-A"], cwd=work)
        run_git(["commit", "--quiet", "-m", f"backlog on {date}"], cwd=work,
                env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
    run_git(["push", "--quiet", str(bare), "main:refs/heads/main"], cwd=work)


def test_backfill_replays_the_backlog_as_it_was_and_matches_plan(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="replay", targets_dir=targets_dir)
    bare = tmp_path / "repos" / "replay.git"
    shutil.rmtree(bare)
    _dated_repo(bare, tmp_path / "work", [("2026-03-01T12:00:00+00:00", "docs-quickstart"),
                                          ("2026-03-03T12:00:00+00:00", "docs-faq")])
    for day, expected in (("2026-03-02", "docs-quickstart"), ("2026-03-04", "docs-faq")):
        when = datetime.fromisoformat(f"{day}T00:00:00+00:00")
        from leviathan_lib.core.config import load_target
        from leviathan_lib.orchestrator.dag_factory import build_target_dag

        dag_run = build_target_dag(load_target(target_file), target_file).test(logical_date=when)
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        record = evidence_record(dag_run)
        assert record["replay"] is True and record["stopped_reason"] == "replay"
        assert record["decision"] == "run" and record["selected_task"] == expected
        assert record["attempt"] is None and states[names.TASK_RUN_WORKER] == "skipped"
        assert dag_run.state == "success"
        # The same decision as `leviathan plan` on the backlog of that commit (recipes checked, as the DAG does).
        backlog = tmp_path / f"backlog-{day}.yaml"
        at_commit = f"{record['commit_sha']}:.leviathan/backlog.yaml"
        backlog.write_text(run_git(["--git-dir", str(bare), "show", at_commit]).stdout)
        recipes = tmp_path / "recipes.yaml"
        recipes.write_text(run_git(["--git-dir", str(bare), "show", "main:.leviathan/recipes.yaml"]).stdout)
        plan = json.loads(leviathan("plan", "--config", str(target_file), "--backlog", str(backlog),
                                    "--recipes", str(recipes)).stdout)
        assert (plan["decision"], plan["task_id"]) == (record["decision"], record["selected_task"])
        assert plan["tasks"] == record["tasks"]
    assert LocalForge(bare).list_prs() == []
    assert run_git(["--git-dir", str(bare), "branch", "--list", "agent/*"]).stdout == ""


def test_prune_keeps_what_the_guardrails_need(tmp_path, targets_dir):
    from leviathan_lib.control.evidence_db import record_rows
    from leviathan_lib.control.fleet import read_evidence
    from leviathan_lib.control.retention import prune

    target_file = create_demo_target(tmp_path, target_id="prune", targets_dir=targets_dir)
    for _ in range(3):
        run_cycle(target_file)  # PR, then two open_pr_limit skips
    before = record_rows(target_id="prune")
    assert len(before) == 3
    evidence = read_evidence({"prune"})["prune"]
    assert evidence.totals is not None and evidence.totals.cycles == {"run": 1, "skip": 2}
    # Records younger than the cutoff are never touched (other tests' older records may go).
    prune(older_than=timedelta(days=1), keep_attempts=1)
    assert record_rows(target_id="prune") == before
    assert prune(older_than=timedelta(0), keep_attempts=1, dry_run=True) >= 1
    prune(older_than=timedelta(0), keep_attempts=1)
    after = record_rows(target_id="prune")
    kept = [extra for _, _, _, extra in after]
    # The attempt record (PR #1) and the newest record survive; the middle skip is gone.
    assert any(e.get("attempt") for e in kept) and after[-1][0] == before[-1][0]
    assert len(after) == 2
    # Pruning changes no running total and nothing the guardrails know.
    pruned = read_evidence({"prune"})["prune"]
    assert (pruned.totals, pruned.ledger) == (evidence.totals, evidence.ledger)
