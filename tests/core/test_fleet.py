"""The fleet file and the fleet checks: account limits, the hourly limit, teams, the breaker, unknown state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.fleet import (
    FleetConfig,
    FleetState,
    PeerSummary,
    account_of,
    fleet_checks,
    fleet_state,
    load_fleet,
    parse_fleet,
)
from leviathan_lib.core.guardrails import AttemptRecord, CycleState, OpenPR, ReasonCode
from tests.core.test_parsers_fuzz import structures, yamlish

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _target(tid: str, **extra) -> TargetConfig:
    return TargetConfig.model_validate({"target_id": tid, "target_repo_url": f"/srv/{tid}.git", **extra})


def _attempts(failed: int, ok: int, *, at: datetime = NOW - timedelta(hours=1), cost: float = 0.0):
    return [AttemptRecord(task_id=f"t{i}", outcome="failed" if i < failed else "succeeded",
                          finished_at=at + timedelta(seconds=i), cost_usd=cost) for i in range(failed + ok)]


def _reasons(fleet: FleetState, state: CycleState | None = None) -> list[ReasonCode]:
    return [r for _, r in fleet_checks(fleet, state or CycleState(now=NOW), NOW) if r is not None]


def _check(fleet: FleetState, name: str, state: CycleState | None = None) -> str:
    return next(c.detail for c, _ in fleet_checks(fleet, state or CycleState(now=NOW), NOW) if c.name == name)


def test_the_fleet_file_is_strict_and_names_file_line_field_and_what_was_expected(tmp_path):
    good = parse_fleet("fleet_max_open_prs: 3\nteams:\n  docs:\n    llm_daily_usd: 5\n", "fleet.yaml")
    assert good.fleet_max_open_prs == 3 and good.teams["docs"].llm_daily_usd == 5.0
    assert good.fleet_breaker_failure_rate == 0.30 and good.fleet_breaker_min_attempts == 10
    with pytest.raises(ValidationFailed) as bad:
        parse_fleet("fleet_max_open_pr: 3\nfleet_max_prs_per_hour: 'ten'\nteams:\n  docs:\n    max_open_pr: 1\n",
                    "t/fleet.yaml")
    lines = [str(p) for p in bad.value.problems]
    assert "t/fleet.yaml:1: fleet_max_open_pr: unknown key; did you mean 'fleet_max_open_prs'?" in lines
    assert any(line.startswith("t/fleet.yaml:2: fleet_max_prs_per_hour: Input should be a valid integer")
               and "(got str 'ten')" in line for line in lines), lines
    assert "t/fleet.yaml:5: teams.docs.max_open_pr: unknown key; did you mean 'max_open_prs'?" in lines
    with pytest.raises(ValidationFailed, match="fleet_breaker_failure_rate: Input should be less than or equal"):
        parse_fleet("fleet_breaker_failure_rate: 1.5\n", "fleet.yaml")
    assert load_fleet(tmp_path) == FleetConfig()  # no fleet file: the defaults (the breaker is always on)
    (tmp_path / "fleet.yaml").write_text("- a list\n")
    with pytest.raises(ValidationFailed, match="expected a mapping of fleet settings"):
        load_fleet(tmp_path)


def test_accounts_are_forge_connections_and_the_local_forge_is_one_account():
    assert account_of(_target("a")) == account_of(_target("b")) == "local"
    assert account_of(_target("c", forge="github", target_repo_url="https://github.com/o/c")) == "github:github_default"
    assert account_of(_target("d", forge="github", target_repo_url="https://github.com/o/d",
                              forge_conn_id="gh_bot")) == "github:gh_bot"


def test_the_account_open_pr_limit_counts_other_targets_and_this_one():
    config = FleetConfig(fleet_max_open_prs=2)
    peers = [PeerSummary(target_id="a", account="local", open_prs=1),
             PeerSummary(target_id="gh", account="github:github_default", open_prs=5)]
    fleet = fleet_state(config, _target("b"), peers, now=NOW, breaker_reset_at=None)
    assert fleet.account_open_prs == 1 and _reasons(fleet) == []
    state = CycleState(now=NOW, open_prs=[OpenPR(number=1, branch="agent/x/1")])
    assert _reasons(fleet, state) == [ReasonCode.FLEET_OPEN_PRS_LIMIT]
    assert _check(fleet, "fleet_open_prs", state) == "2 open PR(s) on account local (1 of this target), limit 2"


def test_the_account_hourly_limit_says_when_the_next_pr_may_open():
    config = FleetConfig(fleet_max_prs_per_hour=2)
    peers = [PeerSummary(target_id="a", account="local", prs_opened_at=[NOW - timedelta(minutes=50),
                                                                         NOW - timedelta(minutes=90)])]
    fleet = fleet_state(config, _target("b"), peers, now=NOW, breaker_reset_at=None)
    assert _reasons(fleet) == []
    state = CycleState(now=NOW, prs_opened_at=[NOW - timedelta(minutes=20)])
    assert _reasons(fleet, state) == [ReasonCode.FLEET_PR_HOURLY_LIMIT]
    assert _check(fleet, "fleet_prs_per_hour", state) == (
        "2 PR(s) opened by the account in the last hour, limit 2; next PR after 12:10 UTC")


def test_the_fleet_breaker_trips_above_the_rate_latches_and_closes_only_on_reset():
    config = FleetConfig()
    peers = [PeerSummary(target_id="a", account="local", attempts=_attempts(3, 6))]
    fleet = fleet_state(config, _target("b"), peers, now=NOW, breaker_reset_at=None)
    assert _reasons(fleet) == []  # 9 attempts: below the minimum of 10
    state = CycleState(now=NOW, attempts=_attempts(1, 0, at=NOW - timedelta(minutes=5)))
    assert _reasons(fleet, state) == [ReasonCode.FLEET_BREAKER_OPEN]  # 4 of 10 failed > 30 %
    assert _check(fleet, "fleet_breaker", state).startswith("4 of 10 attempt(s) of the fleet failed in the last 24 h")
    # Latched: once a target stopped for it, it stays open even when the failures age out...
    stopped = PeerSummary(target_id="a", account="local", breaker_stop_at=NOW - timedelta(hours=30))
    fleet = fleet_state(config, _target("b"), [stopped], now=NOW, breaker_reset_at=None)
    assert _reasons(fleet) == [ReasonCode.FLEET_BREAKER_OPEN]
    assert "until an admin resets it" in _check(fleet, "fleet_breaker")
    # ... until an admin's reset, after which older attempts no longer count either.
    fleet = fleet_state(config, _target("b"), [stopped, *peers], now=NOW,
                        breaker_reset_at=NOW - timedelta(minutes=10))
    assert _reasons(fleet, state) == []


def test_a_team_pauses_on_its_open_prs_or_its_daily_model_spend():
    config = parse_fleet("teams:\n  docs: {max_open_prs: 2, llm_daily_usd: 1.0}\n", "fleet.yaml")
    peers = [PeerSummary(target_id="a", account="local", team="docs", open_prs=1,
                         attempts=_attempts(0, 2, cost=0.3)),
             PeerSummary(target_id="z", account="local", team="other", open_prs=9, attempts=_attempts(0, 1, cost=50))]
    me = _target("b", team="docs")
    fleet = fleet_state(config, me, peers, now=NOW, breaker_reset_at=None)
    assert fleet.team_open_prs == 1 and fleet.team_spent_usd == pytest.approx(0.6)
    assert _reasons(fleet) == []
    spent = CycleState(now=NOW, attempts=_attempts(0, 1, cost=0.5))
    assert _reasons(fleet, spent) == [ReasonCode.TEAM_BUDGET_EXHAUSTED]
    assert _check(fleet, "team_llm_budget", spent) == (
        "team docs: $1.1000 spent on the model in the last 24 h, budget $1.00/day")
    busy = CycleState(now=NOW, open_prs=[OpenPR(number=3, branch="agent/y/1")])
    assert _reasons(fleet, busy) == [ReasonCode.TEAM_BUDGET_EXHAUSTED]
    # A target of no team, or of a team without limits, has no team checks.
    assert _reasons(fleet_state(config, _target("c"), peers, now=NOW, breaker_reset_at=None), busy) == []


def test_an_unknown_fleet_fails_closed():
    assert _reasons(FleetState(unknown="cannot read the fleet's evidence: OSError")) == [
        ReasonCode.FLEET_STATE_UNKNOWN]


FLEET_KEYS = [*FleetConfig.model_fields, "max_open_prs", "llm_daily_usd", "docs"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structures(FLEET_KEYS), yamlish)
def test_the_fleet_parser_raises_only_user_errors(structure, text):
    """Whatever the file holds, the fleet parser answers with a config or problems naming the file, nothing else."""
    for source in (yaml.safe_dump(structure), yaml.safe_dump({"teams": {"docs": structure}}), text):
        try:
            assert isinstance(parse_fleet(source, "fleet.yaml"), FleetConfig)
        except ValidationFailed as exc:
            assert exc.problems and all(str(p).startswith("fleet.yaml") for p in exc.problems)
