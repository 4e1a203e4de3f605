"""The scorecard from real cycles (``dag.test()``) on the local forge: Leviathan opens three PRs; CI passes on
the first; a human merges it, closes the second, then reverts the merge with a real ``git revert``.
``leviathan scorecard`` (table and ``--json``, all time and ``--since``) is checked exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from leviathan_lib.cli.main import main
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import evidence_record, run_cycle

pytestmark = pytest.mark.usefixtures("airflow_db")
NOTE = "MEDIAN_MERGE is an estimate: the time-to-merge bucket holding the median; — : nothing to measure yet"


def _cycle(target_file) -> dict:
    dag_run, states = run_cycle(target_file)
    assert dag_run.state == "success", states
    return evidence_record(dag_run)


def _out(capsys, *args: str) -> str:
    capsys.readouterr()  # the cycles' logs
    assert main(["scorecard", *args]) == 0
    return capsys.readouterr().out


def _table(since: str, target: list[str], fleet: list[str] | None = None) -> list[str]:
    header = ["TARGET", "SINCE", "OPENED", "MERGED", "CLOSED", "REVERTED", "MERGE_RATE", "MEDIAN_MERGE",
              "CHECKS_PASS", "CI_FIRST_PUSH", "ATTEMPTS_PER_MERGED", "COST_PER_MERGED"]
    rows = [header, ["score_demo", since, *target], *([["(fleet)", since, *fleet]] if fleet else [])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def test_the_scorecard_of_opened_merged_closed_and_reverted_prs(tmp_path, targets_dir, capsys):
    target_file = create_demo_target(tmp_path, target_id="score_demo", targets_dir=targets_dir)
    target_file.write_text(target_file.read_text().replace("max_prs_per_hour: 3", "max_prs_per_hour: 5"))
    bare, work = tmp_path / "repos" / "score_demo.git", tmp_path / "human"
    forge = LocalForge(bare)
    first = _cycle(target_file)
    assert first["attempt"]["pr_number"] == 1
    assert main(["forge", "status", "--repo", str(bare), "1", "--context", "ci", "--state", "success"]) == 0
    assert [a["kind"] for a in _cycle(target_file)["lifecycle"]] == ["ci_passed"]  # max_open_prs: 1, no attempt
    merge = forge.merge(1).merge_sha  # a human merges #1
    record = _cycle(target_file)
    assert [(c["number"], c["state"], c["ci_first_push"]) for c in record["pr_sync"]] == [(1, "merged", "success")]
    assert record["attempt"]["pr_number"] == 2
    since = datetime.now(UTC)
    forge.close_pr(2)  # a human closes #2 unmerged
    record = _cycle(target_file)
    assert [(c["number"], c["state"], c["ci_first_push"]) for c in record["pr_sync"]] == [(2, "closed", None)]
    assert record["attempt"]["pr_number"] == 3
    run_git(["clone", "--quiet", str(bare), str(work)])
    run_git(["revert", "--no-edit", "-m", "1", merge], cwd=work)
    run_git(["push", "--quiet", "origin", "HEAD:main"], cwd=work)
    record = _cycle(target_file)
    assert [(c["number"], c["state"]) for c in record["pr_sync"]] == [(1, "reverted")]
    start = datetime.fromisoformat(first["recorded_at"]).isoformat(timespec="seconds")
    assert record["totals"]["since"] == first["recorded_at"] == record["totals"]["scorecard_since"]

    # All time: 3 opened, #1 merged within 10 minutes (CI green on its first push) then reverted, #2 closed.
    # Each of the 3 attempts passed lint-docs on its change; the recipes cost nothing.
    target = ["3", "1", "1", "1", "50% (1/2)", "≤ 10m", "100% (3/3)", "100% (1/1)", "3.0", "$0.00"]
    assert _out(capsys).splitlines() == [*_table(start, target, target), NOTE]
    assert _out(capsys, "--target", "score_demo").splitlines() == [*_table(start, target), NOTE]

    # Since #2 was opened: #3 opened, #2 closed, #1 reverted; nothing merged, so no rate per merged PR.
    window = ["1", "0", "1", "1", "0% (0/1)", "—", "100% (1/1)", "—", "—", "—"]
    moment = since.isoformat(timespec="seconds")
    assert _out(capsys, "--since", since.isoformat()).splitlines() == [*_table(moment, window, window), NOTE]

    document = json.loads(_out(capsys, "--json", "--target", "score_demo"))
    card = {"target_id": "score_demo", "since": start, "scorecard_since": start,
            "prs": {"opened": 3, "merged": 1, "closed": 1, "reverted": 1}, "merge_rate": 0.5,
            "median_time_to_merge": {"low_seconds": 0.0, "high_seconds": 600.0, "estimate": "histogram bucket"},
            "merge_counts": {"buckets_seconds": [600.0, 3600.0, 14400.0, 43200.0, 86400.0, 172800.0, 259200.0,
                                                 604800.0, 1209600.0, 2592000.0],
                             "counts": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]},
            "checks_before_review": {"ran": 3, "passed": 3, "rate": 1.0},
            "ci_first_push": {"passed": 1, "failed": 0, "rate": 1.0},
            "attempts": 3, "attempts_per_merged_pr": 3.0, "cost_usd": 0.0, "cost_per_merged_pr_usd": 0.0}
    assert document == {"scorecard_version": 1, "since": None, "fleet": {**card, "target_id": None},
                        "targets": [card], "unknown": []}

    # A mistyped target is an error naming it, not an empty scorecard.
    capsys.readouterr()
    assert main(["scorecard", "--target", "score_dmeo"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "error: leviathan scorecard: --target 'score_dmeo': no such target " \
        "(configured: score_demo)" in captured.err.splitlines()
