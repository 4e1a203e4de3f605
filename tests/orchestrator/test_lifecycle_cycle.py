"""PR lifecycle rules in real cycles (``dag.test()``) on the local forge."""

from __future__ import annotations

from datetime import datetime

import pytest

from leviathan_lib.core import names, until
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from tests.airflow_helpers import evidence_record, run_cycle

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_the_hourly_pr_limit_counts_the_prs_the_evidence_says_were_opened(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="hourly", targets_dir=targets_dir)
    text = target_file.read_text().replace("max_open_prs: 1", "max_open_prs: 3")
    text = text.replace("max_prs_per_hour: 3", "max_prs_per_hour: 1")
    target_file.write_text(text)
    first, _ = run_cycle(target_file)
    assert evidence_record(first)["attempt"]["pr_number"] == 1
    second, states = run_cycle(target_file)
    record = evidence_record(second)
    assert record["reasons"] == ["pr_hourly_limit"] and states[names.TASK_RUN_WORKER] == "skipped"
    check = next(c for c in record["checks"] if c["name"] == "prs_per_hour")
    # Until when, from the recorded open time of PR #1: an hour later (the wording is tested in tests/core).
    opened = datetime.fromisoformat(record["ledger"]["prs_opened_at"][0])
    assert check == {"name": "prs_per_hour", "passed": False, "detail": "1 PR(s) opened in the last hour, limit 1; "
                     + until.next_pr_after(opened + until.HOUR, datetime.fromisoformat(record["recorded_at"]))}
    assert len(record["ledger"]["prs_opened_at"]) == 1
    assert [pr.number for pr in LocalForge(tmp_path / "repos" / "hourly.git").list_prs()] == [1]  # no second PR
