"""Every read of a target repository has a bound: a hostile backlog costs neither a cycle nor the API server.

A 16 MiB backlog behind a small push is refused on its blob size before it is read (``backlog_too_large``),
a backlog of 20,000 tasks on its count; the cycle's record lists at most 200 verdicts and counts every
reason; 20 views of such a target's page leave the real API server's memory flat.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from leviathan_lib.core.read_limits import MAX_BACKLOG_BYTES, MAX_TASKS
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.records import MAX_TASK_VERDICTS
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import commit_file, evidence_record, run_cycle


def _rss_kb(pid: int) -> int:
    """The resident memory of a process and its children (the API server's workers), in KiB."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(stat[1]) == pid:
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total


def _huge_backlog(bare: Path, work: Path) -> None:
    """A backlog of well over a mebibyte that compresses to a small push (what a hostile author can send)."""
    backlog = yaml.safe_load(run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout)
    backlog["metadata"] = {"padding": "x" * (16 * 1024 * 1024)}
    commit_file(bare, work, ".leviathan/backlog.yaml", yaml.safe_dump(backlog), "a 16 MiB backlog")


def test_an_oversized_backlog_is_refused_on_its_size_and_the_view_stays_flat(tmp_path, targets_dir, server):
    target_file = create_demo_target(tmp_path, target_id="hostile_size", targets_dir=targets_dir)
    bare = tmp_path / "repos" / "hostile_size.git"
    run_cycle(target_file)  # a normal first cycle: PR #1
    _huge_backlog(bare, tmp_path / "work")
    run, _ = run_cycle(target_file)
    record = evidence_record(run)
    assert run.state == "failed" and record["stopped_reason"] == "backlog_too_large"
    assert f"over the limit of {MAX_BACKLOG_BYTES} bytes (not read)" in record["stopped_detail"]

    with server.client("viewer") as viewer:
        first = viewer.get("/ui/targets/hostile_size")
        assert first.status_code == 200 and "backlog_too_large" in first.text
        before = _rss_kb(server.proc.pid)
        for _ in range(20):
            assert viewer.get("/ui/targets/hostile_size").status_code == 200
        after = _rss_kb(server.proc.pid)
    assert after - before < 40 * 1024, (before, after)  # flat: the 16 MiB blob is never read into memory


def test_a_backlog_of_too_many_tasks_is_refused_and_records_stay_small(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="hostile_count", targets_dir=targets_dir)
    bare = tmp_path / "repos" / "hostile_count.git"
    many = [{"id": f"t{i}", "title": "x"} for i in range(MAX_TASKS + 1)]
    commit_file(bare, tmp_path / "work", ".leviathan/backlog.yaml", yaml.safe_dump({"tasks": many}), "many")
    record = evidence_record(run_cycle(target_file)[0])
    assert record["stopped_reason"] == "backlog_too_large"
    assert f"{MAX_TASKS + 1} tasks, over the limit of {MAX_TASKS}" in record["stopped_detail"]

    # At the limit it runs, and the record lists the first verdicts and counts every reason.
    commit_file(bare, tmp_path / "work", ".leviathan/backlog.yaml", yaml.safe_dump({"tasks": many[:MAX_TASKS]}),
                "at the limit")
    record = evidence_record(run_cycle(target_file)[0])
    assert record["stopped_reason"] == "no_eligible_task"
    assert len(record["tasks"]) == MAX_TASK_VERDICTS and record["tasks_total"] == MAX_TASKS
    assert record["task_reasons"]["not_ready"] == MAX_TASKS
    assert len(str(record)) < 64 * 1024
