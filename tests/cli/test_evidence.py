"""``leviathan evidence --target``: a target that does not exist is an error, not an empty table.

Runs the CLI entry in-process on the run's metadata DB; the evidence record is inserted directly as the
asset event a cycle writes (as tests/control/test_fleet.py does).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leviathan_lib.cli.main import main
from leviathan_lib.core.names import evidence_asset_uri
from leviathan_lib.evidence.records import CycleRecord

pytestmark = pytest.mark.usefixtures("airflow_db")
HEADER = ["RECORDED_AT", "RUN_ID", "DECISION", "REASONS", "TASK", "ATTEMPT", "PR", "STOPPED"]


def _insert_record(target_id: str, at: datetime) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    record = CycleRecord(target_id=target_id, dag_run_id="scheduled__evgone", recorded_at=at, decision="skip",
                         reasons=["open_pr_limit"], stopped_reason="open_pr_limit")
    with create_session() as session:
        asset = AssetModel(name=f"leviathan_evidence__{target_id}", uri=evidence_asset_uri(target_id),
                           group="leviathan")
        session.add(asset)
        session.flush()
        session.add(AssetEvent(asset_id=asset.id, extra=record.model_dump(mode="json"),
                               source_run_id=record.dag_run_id, timestamp=at))


def test_an_unknown_target_is_an_error_naming_the_configured_ones(targets_dir, capsys):
    (targets_dir / "evdemo.yaml").write_text("target_id: evdemo\ntarget_repo_url: /srv/evdemo.git\n")
    assert main(["evidence", "--target", "evdemo2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: leviathan evidence: --target 'evdemo2': no such target (configured: evdemo)" in \
        captured.err.splitlines()
    # Configured but never run: an empty table is the true answer.
    assert main(["evidence", "--target", "evdemo"]) == 0
    assert capsys.readouterr().out.split() == HEADER


def test_a_target_whose_file_is_gone_but_whose_evidence_remains_is_known(targets_dir, capsys):
    _insert_record("evgone", datetime.now(UTC) - timedelta(days=3))
    assert main(["evidence", "--target", "evgone"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 and "scheduled__evgone" in rows[1] and "open_pr_limit" in rows[1]
    # Nothing since yesterday is still an answer about a known target, not an error.
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert main(["evidence", "--target", "evgone", "--since", since]) == 0
    assert capsys.readouterr().out.split() == HEADER
