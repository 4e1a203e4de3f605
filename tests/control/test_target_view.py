"""control.target_view: the view's bounded reads of target files and backlogs (the pages: tests/spider/test_view.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from leviathan_lib.control import fleet, target_view
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.records import CycleRecord, History


def test_every_target_file_is_listed_with_why_it_cannot_be_used(tmp_path, targets_dir):
    create_demo_target(tmp_path, target_id="tv_ok", targets_dir=targets_dir)
    (targets_dir / "twin-a.yaml").write_text("target_id: twin\ntarget_repo_url: /a.git\n")
    (targets_dir / "twin-b.yaml").write_text("target_id: twin\ntarget_repo_url: /b.git\n")
    (targets_dir / "bad.yaml").write_text("target_id: bad\n")
    found, problem = fleet.target_files()
    assert problem is None
    by_name = {f.name: f for f in found}
    assert by_name["tv_ok.yaml"].target is not None and by_name["tv_ok.yaml"].problems == []
    assert by_name["twin-a.yaml"].target is None and "is also named by" in by_name["twin-a.yaml"].problems[0]
    assert by_name["twin-b.yaml"].target is None and by_name["twin-b.yaml"].target_id == "twin"
    assert by_name["bad.yaml"].target is None and "target_repo_url" in by_name["bad.yaml"].problems[0]
    assert by_name["bad.yaml"].target_id == "bad"


def test_a_slow_backlog_read_is_unknown_within_its_time_bound(tmp_path, monkeypatch):
    target = TargetConfig.model_validate({"target_id": "slow", "target_repo_url": "/r.git"})
    monkeypatch.setattr(target_view, "_verdicts", lambda *args: time.sleep(3))  # a hung clone
    started = time.monotonic()
    view = target_view.backlog_view(target, tmp_path / "slow.yaml", History(), None, global_autonomy=True, timeout=0.5)
    assert time.monotonic() - started < 2
    assert view.unknown == "reading the backlog took longer than 0.5s (the repository may be slow or unreachable)"


def test_a_missing_repository_is_unknown_with_its_reason_and_no_credentials(tmp_path):
    target = TargetConfig.model_validate({"target_id": "gone", "target_repo_url": str(tmp_path / "gone.git")})
    pinned = CycleRecord(target_id="gone", dag_run_id="r1", recorded_at=datetime.now(UTC), decision="skip",
                         stopped_reason="no_eligible_task", commit_sha="a" * 40)
    view = target_view.backlog_view(target, tmp_path / "gone.yaml", History(cycles=[pinned]), None,
                                    global_autonomy=True)
    assert view.unknown.startswith("repo_unreachable: ") and view.tasks == []
