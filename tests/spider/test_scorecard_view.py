"""The fleet page's scorecard section, served by a real ``airflow api-server`` after real cycles on the local
forge: a merged PR, a closed one, the cells ``leviathan scorecard`` prints, "—" where nothing is measured."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.scorecard import LABELS
from leviathan_lib.forge.local import LocalForge
from tests.airflow_helpers import evidence_record, run_cycle

pytestmark = pytest.mark.usefixtures("airflow_db")


def _cells(section: str, row: str) -> list[str]:
    tr = re.search(rf'<tr data-scorecard="{re.escape(row)}">(.*?)</tr>', section, re.S).group(1)
    return re.findall(r'<td data-cell="\w+">(.*?)</td>', tr, re.S)


def test_the_fleet_page_shows_each_target_s_scorecard_and_the_fleet_s(tmp_path, targets_dir, viewer):
    target_file = create_demo_target(tmp_path, target_id="view_score", targets_dir=targets_dir)
    # The default hourly limit: the third cycle (after #2 was closed) opens nothing.
    target_file.write_text(target_file.read_text().replace("max_prs_per_hour: 3", "max_prs_per_hour: 2"))
    create_demo_target(tmp_path / "idle", target_id="view_idle", targets_dir=targets_dir)  # never ran
    forge = LocalForge(tmp_path / "repos" / "view_score.git")
    first = evidence_record(run_cycle(target_file)[0])  # PR #1
    forge.merge(1)
    assert evidence_record(run_cycle(target_file)[0])["attempt"]["pr_number"] == 2  # sees #1 merged
    forge.close_pr(2)
    assert [c["state"] for c in evidence_record(run_cycle(target_file)[0])["pr_sync"]] == ["closed"]

    page = viewer.get("/ui")
    assert page.status_code == 200, page.text
    section = re.search(r'<section class="panel" id="scorecard".*?</section>', page.text, re.S).group(0)
    assert [h for h in re.findall(r"<th>(.*?)</th>", section)] == ["Target", "Since", *LABELS.values()]
    # Two PRs opened, #1 merged within 10 minutes, #2 closed; both attempts passed lint-docs; no CI reported.
    scored = ["2", "1", "1", "0", "50% (1/2)", "≤ 10m", "100% (2/2)", "—", "2.0", "$0.00"]
    assert _cells(section, "view_score") == scored
    assert _cells(section, "(fleet)") == scored  # the idle target adds nothing
    assert _cells(section, "view_idle") == ["0", "0", "0", "0", "—", "—", "—", "—", "—", "—"]
    since = datetime.fromisoformat(first["recorded_at"])
    shown = re.search(r'<tr data-scorecard="view_score">.*?<time datetime="([^"]+)"', section, re.S).group(1)
    assert datetime.fromisoformat(shown) == since
