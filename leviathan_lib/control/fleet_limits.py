"""The fleet limits as Spider, the metrics and the CLI see them: per forge account, per team, the fleet breaker.

Read from the same evidence the fleet overview reads (each target's newest records) and folded by the same
functions the cycle uses (:mod:`leviathan_lib.cycle.fleet`, :mod:`leviathan_lib.core.fleet`), so the
view's numbers are the ones the next decision judges.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from leviathan_lib.core.errors import LeviathanError
from leviathan_lib.core.fleet import (
    BREAKER_WINDOW,
    FleetConfig,
    FleetState,
    PeerSummary,
    breaker_count,
    breaker_stop,
    last_hour,
    load_fleet,
    next_pr_after,
)
from leviathan_lib.cycle.fleet import peer_summary, read_fleet
from leviathan_lib.evidence.records import FleetBreakerResetRecord

if TYPE_CHECKING:
    from leviathan_lib.control.fleet import TargetEvidence
    from leviathan_lib.core.config import TargetConfig


class AccountUsage(BaseModel):
    """One forge account's PRs against its fleet limits (None: no such limit)."""

    account: str
    targets: int
    open_prs: int
    prs_last_hour: int
    max_open_prs: int | None = None
    max_prs_per_hour: int | None = None
    #: When the hourly limit frees a slot (None: it is not reached).
    next_pr_after: datetime | None = None


class TeamUsage(BaseModel):
    """One team's open PRs and model spend of the last 24 h against its limits."""

    team: str
    targets: int
    open_prs: int
    spent_usd: float
    max_open_prs: int | None = None
    llm_daily_usd: float | None = None
    exhausted: bool = False


class FleetSummary(BaseModel):
    """The fleet page's numbers; ``problem``: the fleet file cannot be read (every cycle stops on it)."""

    problem: str | None = None
    breaker_open: bool = False
    breaker_attempts: int = 0
    breaker_failures: int = 0
    breaker_detail: str = ""
    breaker_reset: FleetBreakerResetRecord | None = None
    accounts: list[AccountUsage] = Field(default_factory=list)
    teams: list[TeamUsage] = Field(default_factory=list)


def fleet_config() -> FleetConfig | str:
    """The fleet file beside the target files, or why it cannot be read."""
    from leviathan_lib.orchestrator.targets import targets_location

    try:
        location = targets_location()
        location.check()
        return load_fleet(location.path)
    except LeviathanError as exc:
        return "the fleet file or the targets folder cannot be read: " + "; ".join(str(exc).splitlines())


def _accounts(config: FleetConfig, peers: list[PeerSummary], now: datetime) -> list[AccountUsage]:
    out = []
    for account in sorted({p.account for p in peers if p.account}):
        mine = [p for p in peers if p.account == account]
        recent = last_hour([at for p in mine for at in p.prs_opened_at], now)
        limit = config.fleet_max_prs_per_hour
        after = next_pr_after(recent, limit) if limit else None
        out.append(AccountUsage(account=account, targets=len(mine), open_prs=sum(p.open_prs for p in mine),
                                prs_last_hour=len(recent), max_open_prs=config.fleet_max_open_prs,
                                max_prs_per_hour=limit, next_pr_after=after))
    return out


def _teams(config: FleetConfig, peers: list[PeerSummary], now: datetime) -> list[TeamUsage]:
    out = []
    for team in sorted({p.team for p in peers if p.team} | set(config.teams)):
        mine = [p for p in peers if p.team == team]
        limits = config.teams.get(team)
        open_prs = sum(p.open_prs for p in mine)
        spent = sum(a.cost_usd for p in mine for a in p.attempts if a.finished_at > now - BREAKER_WINDOW)
        cap_prs = limits.max_open_prs if limits else None
        cap_usd = limits.llm_daily_usd if limits else None
        out.append(TeamUsage(team=team, targets=len(mine), open_prs=open_prs, spent_usd=spent, max_open_prs=cap_prs,
                             llm_daily_usd=cap_usd,
                             exhausted=(cap_prs is not None and open_prs >= cap_prs)
                             or (cap_usd is not None and spent >= cap_usd)))
    return out


def summary(evidence: dict[str, TargetEvidence], valid: dict[str, TargetConfig],
            now: datetime | None = None) -> FleetSummary:
    """The fleet limits' numbers from every target's newest evidence (``valid``: the usable target files)."""
    from leviathan_lib.control.breaker import fleet_breaker_reset

    now = now or datetime.now(UTC)
    config = fleet_config()
    if isinstance(config, str):
        return FleetSummary(problem=config, breaker_open=True, breaker_detail=config)
    reset = fleet_breaker_reset()
    reset_at = reset.reset_at if reset else None
    peers = [peer_summary(tid, valid.get(tid), e.history, e.ledger) for tid, e in sorted(evidence.items())]
    breaker = breaker_count(config, [a for p in peers for a in p.attempts], now=now, reset_at=reset_at,
                            stopped_at=breaker_stop(peers, reset_at))
    return FleetSummary(breaker_open=breaker.open, breaker_attempts=breaker.attempts, breaker_failures=breaker.failures,
                        breaker_detail=breaker.detail, breaker_reset=reset, accounts=_accounts(config, peers, now),
                        teams=_teams(config, peers, now))


def fleet_for(target: TargetConfig, now: datetime) -> FleetState:
    """The fleet state the next cycle of ``target`` decides on, from the metadata DB (the view, ``leviathan plan``)."""
    from leviathan_lib.control.breaker import fleet_breaker_reset
    from leviathan_lib.control.fleet import read_evidence, target_files
    from leviathan_lib.core import target_scan

    entries, problem = target_files()
    if problem:
        return FleetState(unknown=problem)
    targets = {tid: files[0].target if len(files) == 1 else None
               for tid, files in target_scan.by_target(entries).items()}
    targets[target.target_id] = target
    try:
        found = read_evidence(set(targets))
    except Exception as exc:  # noqa: BLE001 — the fleet's evidence cannot be read: unknown, fails closed
        return FleetState(unknown=f"cannot read the fleet's evidence: {type(exc).__name__}")

    def reset_at() -> datetime | None:
        record = fleet_breaker_reset()
        return record.reset_at if record else None

    return read_fleet(target, targets, config=fleet_config(), evidence_of=lambda tid: (found[tid].history,
                                                                                        found[tid].ledger),
                      reset_at=reset_at, now=now)
