"""``leviathan scorecard`` over records from before the scorecard counters: they read as zero, and the output
says from when the counters count. Records are inserted as the asset events cycles write (as
tests/cli/test_evidence.py does); real cycles are tests/orchestrator/test_scorecard_cycle.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leviathan_lib.cli.main import main
from leviathan_lib.core.names import evidence_asset_uri
from leviathan_lib.evidence.records import CycleRecord, PrStateChange, Totals

pytestmark = pytest.mark.usefixtures("airflow_db")
NOW = datetime.now(UTC).replace(microsecond=0)


def _insert(target_id: str, records: list[tuple[CycleRecord, dict]]) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = AssetModel(name=f"leviathan_evidence__{target_id}", uri=evidence_asset_uri(target_id),
                           group="leviathan")
        session.add(asset)
        session.flush()
        for record, extra in records:
            session.add(AssetEvent(asset_id=asset.id, extra=extra, source_run_id=record.dag_run_id,
                                   timestamp=record.recorded_at))


def test_counters_from_before_the_scorecard_read_as_zero_and_the_output_says_since_when(targets_dir, capsys):
    (targets_dir / "scold.yaml").write_text("target_id: scold\ntarget_repo_url: /srv/scold.git\n")
    start, old_at, new_at = NOW - timedelta(days=10), NOW - timedelta(days=2), NOW - timedelta(days=1)
    # Totals as a version without the scorecard wrote them: four PRs opened, none of the new keys.
    stored = {"since": start.isoformat(), "cycles": {"run": 4}, "attempts": {"succeeded": 4}, "prs_opened": 4}
    legacy = Totals.model_validate(stored)
    old = CycleRecord(target_id="scold", dag_run_id="scheduled__old", recorded_at=old_at, decision="skip",
                      reasons=["open_pr_limit"], stopped_reason="open_pr_limit", totals=legacy)
    merged = PrStateChange(number=4, task_id="t4", branch="agent/t4/1", state="merged",
                           opened_at=new_at - timedelta(hours=2), decided_at=new_at - timedelta(minutes=5))
    new = CycleRecord(target_id="scold", dag_run_id="scheduled__new", recorded_at=new_at, decision="skip",
                      reasons=["no_eligible_task"], stopped_reason="no_eligible_task", pr_sync=[merged])
    new.totals = legacy.with_cycle(new)
    _insert("scold", [(old, {**old.model_dump(mode="json"), "totals": stored}), (new, new.model_dump(mode="json"))])

    capsys.readouterr()
    assert main(["scorecard", "--target", "scold"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["scold", start.isoformat()]
    assert lines[1].split()[2:] == ["4", "1", "0", "0", "100%", "(1/1)", "1h–4h", "—", "—", "4.0", "$0.00"]
    assert lines[2] == (f"scold: merged, closed, merge times, checks, CI and cost counted since {new_at.isoformat()} "
                        "(the first record that kept them)")

    # Since a time before the newer record: the baseline is the legacy record; its scorecard counters are zero.
    since = old_at + timedelta(hours=1)
    assert main(["scorecard", "--target", "scold", "--since", since.isoformat()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:7] == ["scold", since.isoformat(), "0", "1", "0", "0", "100%"]
    assert lines[2].endswith(f"counted since {new_at.isoformat()} (the first record that kept them)")

    # A --since that is no time is an error naming the flag.
    assert main(["scorecard", "--since", "yesterday"]) == 2
    assert "error: leviathan scorecard: --since: expected an ISO 8601 time, got 'yesterday'" in \
        capsys.readouterr().err.splitlines()
