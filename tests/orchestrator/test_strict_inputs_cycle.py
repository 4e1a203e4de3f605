"""Hostile target-repository input through a real cycle (``dag.test()``): it stops before the worker.

A non-UTF-8 or alias-laden backlog stops the cycle on ``backlog_invalid`` at read time (never at delivery),
and a FIFO planted among the local forge's records fails the guardrails closed on ``forge_state_unknown``
instead of hanging the task.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import evidence_record, run_cycle

pytestmark = pytest.mark.usefixtures("airflow_db")

BOMB = "\n".join(["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                 + [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]" for i in range(1, 9)]) + "\ntasks: []\n"


def _commit_bytes(bare: Path, work: Path, path: str, data: bytes) -> None:
    run_git(["clone", "--quiet", str(bare), str(work)])
    (work / path).write_bytes(data)
    run_git(["commit", "--quiet", "-am", "hostile backlog"], cwd=work)
    run_git(["push", "--quiet", "origin", "HEAD:main"], cwd=work)


def _backlog(bare: Path) -> bytes:
    data: bytes = run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"], text=False).stdout
    return data


@pytest.mark.parametrize("case", ["latin1", "alias_bomb"])
def test_hostile_backlog_stops_the_cycle_at_read_time(tmp_path, targets_dir, case):
    target_file = create_demo_target(tmp_path, target_id=f"hostile_{case}", targets_dir=targets_dir)
    bare = tmp_path / "repos" / f"hostile_{case}.git"
    if case == "latin1":
        original = _backlog(bare)
        data = original + "# résumé\n".encode("latin-1")
        message = f".leviathan/backlog.yaml: cannot read file: not valid UTF-8 at byte {len(original) + 3}"
    else:
        data, message = BOMB.encode(), ".leviathan/backlog.yaml:1: YAML anchors (&lol0) are not allowed"
    _commit_bytes(bare, tmp_path / "work", ".leviathan/backlog.yaml", data)

    started = time.monotonic()
    dag_run, states = run_cycle(target_file)
    record = evidence_record(dag_run)
    assert record["decision"] == "error" and record["reasons"] == ["backlog_invalid"], record
    assert record["stopped_detail"] == message
    assert states["run_worker"] == "skipped" and states["open_pull_request"] == "skipped"
    assert LocalForge(bare).list_prs() == []
    assert time.monotonic() - started < 120


def test_a_fifo_among_the_forge_records_fails_closed_without_running_the_worker(
    tmp_path, targets_dir, capfd, caplog,
):
    target_file = create_demo_target(tmp_path, target_id="hostile_fifo", targets_dir=targets_dir)
    bare = tmp_path / "repos" / "hostile_fifo.git"
    pulls = bare / "leviathan" / "pulls"
    pulls.mkdir(parents=True)
    fifo = pulls / "1.json"
    os.mkfifo(fifo)

    started = time.monotonic()
    dag_run, states = run_cycle(target_file)
    assert time.monotonic() - started < 120  # the guardrail check did not hang on the FIFO
    record = evidence_record(dag_run)
    assert record["decision"] == "skip" and record["reasons"] == ["forge_state_unknown"], record
    assert states["run_worker"] == "skipped" and states["open_pull_request"] == "skipped"
    assert record["attempt"] is None
    captured = capfd.readouterr()
    logs = "\n".join([captured.out, captured.err, caplog.text,
                      *(p.read_text(errors="replace") for p in (Path(os.environ["AIRFLOW_HOME"]) / "logs").rglob("*")
                        if p.is_file())])
    assert f"cannot read pull request record {fifo}: not a regular file" in logs
    assert run_git(["--git-dir", str(bare), "for-each-ref", "refs/heads/agent/"]).stdout == ""


def test_read_backlog_decodes_backlog_and_recipes_strictly(tmp_path):
    """The read step itself: bytes from git, strict UTF-8, backlog_invalid with the pinned commit kept."""
    from leviathan_lib.core.config import parse_target
    from leviathan_lib.cycle.steps import read_backlog

    bare = create_demo_target(tmp_path, target_id="strict_read").parent.parent / "repos" / "strict_read.git"
    target = parse_target(f"target_id: strict_read\ntarget_repo_url: {bare}\n", "t.yaml")
    good = read_backlog(target, str(bare), tmp_path / "cache")
    assert good.error is None and good.backlog_text and good.recipes_text

    recipes = run_git(["--git-dir", str(bare), "show", "main:.leviathan/recipes.yaml"], text=False).stdout
    work = tmp_path / "work"
    _commit_bytes(bare, work, ".leviathan/recipes.yaml", recipes + b"# \xff\n")
    read = read_backlog(target, str(bare), tmp_path / "cache")
    assert read.commit_sha and read.error is not None and read.error.code == "backlog_invalid"
    assert read.error.message == (f".leviathan/recipes.yaml: cannot read file: not valid UTF-8 at byte "
                                  f"{len(recipes) + 2}")
