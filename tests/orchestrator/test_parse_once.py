"""Parse once, connect once: a delivering cycle parses the backlog once per task that reads it and opens
the forge once per task that talks to it (``plan`` used to parse the same text four times and open the
forge three times on GitHub). Counted with cProfile over real cycles (``dag.test()``: every task in this
process).
"""

from __future__ import annotations

import cProfile
import pstats

import pytest

from leviathan_lib.demo import create_demo_target
from tests.airflow_helpers import evidence_record, run_cycle
from tests.orchestrator.test_dashboard_cycle import github_target

__all__ = ["github_target"]  # the fixture

pytestmark = pytest.mark.usefixtures("airflow_db")
COUNTED = {("core/backlog.py", "parse_backlog"), ("forge/__init__.py", "_open")}


def _calls(target_file) -> dict[str, int]:
    profile = cProfile.Profile()
    profile.enable()
    dag_run, states = run_cycle(target_file)
    profile.disable()
    assert dag_run.state == "success", states
    assert evidence_record(dag_run)["stopped_reason"] == "pr_opened"
    counts = {name: 0 for _, name in COUNTED}
    for (file, _, name), (_, calls, *_) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        if any(file.endswith(f"leviathan_lib/{where}") and name == what for where, what in COUNTED):
            counts[name] += calls
    return counts


def test_a_delivering_cycle_on_the_local_forge_parses_and_connects_once_per_task(tmp_path, targets_dir):
    target_file = create_demo_target(tmp_path, target_id="once_local", targets_dir=targets_dir)
    target_file.write_text(target_file.read_text() + "dashboard: true\n")
    # One parse in each task that reads the backlog (plan; run_worker for the attempt spec; open_pull_request
    # for the delivered status), one forge in each task that talks to it (plan, open_pull_request).
    assert _calls(target_file) == {"parse_backlog": 3, "_open": 2}


@pytest.mark.parametrize("github_target", [True], ids=["autonomy"], indirect=True)
def test_a_delivering_cycle_on_github_connects_once_per_task(github_target):
    _, target_file, _ = github_target
    # plan reads with the forge's git credentials, syncs the PRs and writes the dashboard: one forge; run_worker
    # clones with its credentials; open_pull_request delivers.
    assert _calls(target_file) == {"parse_backlog": 3, "_open": 3}
