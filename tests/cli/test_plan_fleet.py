"""``leviathan plan`` with a fleet state in STATE.json: the same fleet checks the DAG reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.cli.test_plan import BACKLOG, dev_target, leviathan, plan_doc, write


def _demo(tmp_path) -> tuple[Path, Path, Path]:
    """The demo target (team docs) and its backlog and recipes: a task that would be attempted."""
    from leviathan_lib.demo import TEMPLATE, create_demo_target

    target = create_demo_target(tmp_path, target_id="planfleet")
    target.write_text(target.read_text() + "team: docs\n", encoding="utf-8")
    return target, TEMPLATE / ".leviathan" / "backlog.yaml", TEMPLATE / ".leviathan" / "recipes.yaml"


def test_plan_shows_the_fleet_checks_and_stops_on_them(tmp_path):
    target, backlog, recipes = _demo(tmp_path)
    now = datetime.now(UTC)
    fleet = {"config": {"fleet_max_open_prs": 3, "fleet_max_prs_per_hour": 2,
                        "teams": {"docs": {"max_open_prs": 5}}},
             "account": "local", "team": "docs", "account_open_prs": 3,
             "account_prs_opened_at": [(now - timedelta(minutes=m)).isoformat() for m in (10, 50)],
             "team_open_prs": 1}
    state = write(tmp_path / "state.json", json.dumps({"now": now.isoformat(), "fleet": fleet}))
    doc = plan_doc(leviathan("plan", "--config", target, "--backlog", backlog, "--recipes", recipes, "--state", state))
    assert doc["decision"] == "skip" and doc["reasons"] == ["fleet_open_prs_limit", "fleet_pr_hourly_limit"]
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["fleet_breaker"]["passed"] and checks["team_open_prs"]["passed"]
    next_pr = (now - timedelta(minutes=50) + timedelta(hours=1)).strftime("%H:%M")
    assert checks["fleet_prs_per_hour"]["detail"] == (
        f"2 PR(s) opened by the account in the last hour, limit 2; next PR after {next_pr} UTC")
    unknown = write(tmp_path / "unknown.json", json.dumps({"fleet": {"unknown": "evidence unreadable"}}))
    doc = plan_doc(leviathan("plan", "--config", target, "--backlog", backlog, "--recipes", recipes, "--state",
                             unknown))
    assert doc["reasons"] == ["fleet_state_unknown"]
    # A cycle that would attempt nothing does not evaluate the fleet, whatever its state (as the DAG).
    idle = plan_doc(leviathan("plan", "--config", dev_target(tmp_path, autonomy_enabled=True), "--backlog", BACKLOG,
                              "--state", unknown))
    assert idle["reasons"] == ["no_eligible_task"]
    assert {c["name"]: c["detail"] for c in idle["checks"]}["fleet_state"].startswith("not read: this cycle attempts")
    bad = write(tmp_path / "bad.json", json.dumps({"fleet": {"account_open_prs": -1}}))
    result = leviathan("plan", "--config", target, "--backlog", backlog, "--state", bad)
    assert result.returncode == 2 and f"{bad}: fleet.account_open_prs: Input should be greater than or equal to 0" \
        in result.stderr


def test_validate_checks_the_fleet_file_beside_the_target_files(tmp_path):
    folder = tmp_path / "targets"
    folder.mkdir()
    dev_target(folder, autonomy_enabled=True, team="docs")
    write(folder / "fleet.yaml", "fleet_max_open_prs: 10\nteams:\n  docs: {llm_daily_usd: 5}\n")
    result = leviathan("validate", folder)
    assert result.returncode == 0, result.stderr
    assert f"ok: {folder / 'fleet.yaml'} (fleet file, 1 team)" in result.stdout
    write(folder / "fleet.yaml", "fleet_max_open_prs: 10\nteams:\n  docs: {llm_daily_usd: -5}\n")
    result = leviathan("validate", folder)
    assert result.returncode == 2
    assert f"{folder / 'fleet.yaml'}:3: teams.docs.llm_daily_usd: Input should be greater than 0" in result.stderr
