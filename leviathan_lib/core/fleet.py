"""Fleet-wide limits: what bounds all targets together, beside each target's own limits.

GitHub's secondary rate limits and the reviewers' attention are per account, not per target, and a bad
model release fails on every target at once. The fleet file (``fleet.yaml`` in the targets folder) sets
limits per forge account, per team, and the fleet breaker; :class:`FleetState` is what the guardrails
get from the evidence of every target (gathered by :mod:`leviathan_lib.cycle.fleet`), and
:func:`fleet_checks` judges it. Pure: no I/O but reading the one file.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.guardrails import FAILED_OUTCOMES, AttemptRecord, Check, CycleState, ReasonCode
from leviathan_lib.core.names import AGENT_BRANCH_PREFIX, FLEET_FILE_NAMES
from leviathan_lib.core.yamlsrc import did_you_mean, field_name, line_finder, load_yaml

#: The largest fleet file read (a few teams fit in a few kilobytes).
MAX_FLEET_FILE_BYTES = 64 * 1024
#: The fleet breaker's window: attempts finished within it count.
BREAKER_WINDOW = timedelta(hours=24)
#: GitHub's default connection, the account of a ``forge: github`` target without ``forge_conn_id``.
GITHUB_DEFAULT_CONN = "github_default"

TeamName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class TeamLimits(BaseModel):
    """One team's limits over all of its targets (None: no such limit)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    max_open_prs: Annotated[int, Field(ge=0)] | None = None
    llm_daily_usd: Annotated[float, Field(gt=0, strict=False, allow_inf_nan=False)] | None = None


class FleetConfig(BaseModel):
    """The validated fleet file; every limit is optional but the breaker, which is always on."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    #: Open Leviathan PRs (and branches awaiting CI) of all targets of one forge account.
    fleet_max_open_prs: Annotated[int, Field(ge=0)] | None = None
    #: PRs all targets of one forge account may open in any hour.
    fleet_max_prs_per_hour: Annotated[int, Field(ge=1)] | None = None
    #: The fleet breaker opens when more than this share of the attempts of the last 24 h failed ...
    fleet_breaker_failure_rate: Annotated[float, Field(gt=0, le=1, strict=False, allow_inf_nan=False)] = 0.30
    #: ... and at least this many attempts finished in them.
    fleet_breaker_min_attempts: Annotated[int, Field(ge=1)] = 10
    teams: dict[TeamName, TeamLimits] = Field(default_factory=dict)


def _message(err: dict[str, object]) -> str:
    if err["type"] == "extra_forbidden":
        loc = err["loc"]
        assert isinstance(loc, tuple)
        known = TeamLimits.model_fields if len(loc) == 3 and loc[0] == "teams" else FleetConfig.model_fields
        return "unknown key" + (did_you_mean(str(loc[-1]), known) or " (see docs/configuration.md, the fleet file)")
    message = str(err["msg"]).removeprefix("Value error, ")
    if str(err["type"]).endswith("_type"):
        message += f" (got {type(err['input']).__name__} {err['input']!r})"
    return message


def parse_fleet(text: str, source: str) -> FleetConfig:
    """The fleet file's settings; ValidationFailed naming file, line, field and what was expected."""
    data = load_yaml(text, source)
    if data is None:
        return FleetConfig()
    if not isinstance(data, dict):
        raise ValidationFailed([Problem(source, "", "expected a mapping of fleet settings")])
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as exc:
        lines = line_finder(text)
        raise ValidationFailed([Problem(source, field_name(e["loc"]), _message(dict(e)), lines(e["loc"]))
                                for e in exc.errors()]) from None


def fleet_file(directory: Path) -> Path | None:
    """The fleet file of the targets folder ``directory``, if there is one."""
    found = [directory / name for name in FLEET_FILE_NAMES if (directory / name).is_file()]
    if len(found) > 1:
        raise ValidationFailed([Problem(str(found[1]), "", f"a second fleet file beside {found[0].name}: keep one")])
    return found[0] if found else None


def load_fleet(directory: Path) -> FleetConfig:
    """The fleet settings of the targets folder (the defaults without a fleet file)."""
    path = fleet_file(directory)
    if path is None:
        return FleetConfig()
    try:
        if path.stat().st_size > MAX_FLEET_FILE_BYTES:
            raise ValidationFailed([Problem(str(path), "", f"larger than the {MAX_FLEET_FILE_BYTES}-byte limit")])
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed([Problem(str(path), "", f"cannot read file: {exc}")]) from None
    return parse_fleet(text, str(path))


def account_of(target: TargetConfig) -> str:
    """The forge account a target's PRs count against: its GitHub connection; one account for the local forge."""
    if target.forge == "github":
        return f"github:{target.forge_conn_id or GITHUB_DEFAULT_CONN}"
    return target.forge


class PeerSummary(BaseModel):
    """What one target's newest evidence says, as the fleet limits count it."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    target_id: str
    account: str
    team: str | None = None
    #: Open Leviathan PRs and branches awaiting CI.
    open_prs: Annotated[int, Field(ge=0)] = 0
    prs_opened_at: list[AwareDatetime] = Field(default_factory=list)
    attempts: list[AttemptRecord] = Field(default_factory=list)
    #: The newest cycle stopped for an open fleet breaker, at this time (the breaker stays open until reset).
    breaker_stop_at: AwareDatetime | None = None


class FleetState(BaseModel):
    """The fleet as one target's decision sees it: every OTHER target's evidence, summed (its own counts come
    from its :class:`~leviathan_lib.core.guardrails.CycleState`), or why it could not be read (``unknown``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    unknown: str | None = None
    config: FleetConfig = Field(default_factory=FleetConfig)
    account: str = "local"
    team: str | None = None
    #: Of the other targets of ``account``: open PRs, when they opened PRs lately.
    account_open_prs: Annotated[int, Field(ge=0)] = 0
    account_prs_opened_at: list[AwareDatetime] = Field(default_factory=list)
    #: Of the other targets of ``team``: open PRs, model spend of the last 24 h.
    team_open_prs: Annotated[int, Field(ge=0)] = 0
    team_spent_usd: Annotated[float, Field(ge=0, strict=False)] = 0.0
    #: Attempts of every other target (the breaker counts the whole fleet, whatever the account).
    attempts: list[AttemptRecord] = Field(default_factory=list)
    breaker_reset_at: AwareDatetime | None = None
    #: The newest stop for an open fleet breaker after the last reset, of any target.
    breaker_stop_at: AwareDatetime | None = None


def breaker_stop(peers: list[PeerSummary], reset_at: datetime | None) -> datetime | None:
    """The newest stop of any target for an open fleet breaker after the last reset (it keeps the breaker open)."""
    stops = [p.breaker_stop_at for p in peers
             if p.breaker_stop_at is not None and (reset_at is None or p.breaker_stop_at > reset_at)]
    return max(stops, default=None)


def fleet_state(config: FleetConfig, me: TargetConfig, peers: list[PeerSummary], *, now: datetime,
                breaker_reset_at: datetime | None) -> FleetState:
    """The fleet state for ``me`` from every target's summary (``me``'s own counts only its stop: the rest come
    from its cycle state)."""
    account = account_of(me)
    same = [p for p in peers if p.account == account and p.target_id != me.target_id]
    others = [p for p in peers if p.target_id != me.target_id]
    team = [p for p in others if me.team is not None and p.team == me.team]
    since = now - BREAKER_WINDOW
    return FleetState(
        config=config, account=account, team=me.team,
        account_open_prs=sum(p.open_prs for p in same),
        account_prs_opened_at=last_hour([at for p in same for at in p.prs_opened_at], now),
        team_open_prs=sum(p.open_prs for p in team),
        team_spent_usd=sum(a.cost_usd for p in team for a in p.attempts if a.finished_at > since),
        attempts=[a for p in others for a in p.attempts if a.finished_at > since],
        breaker_reset_at=breaker_reset_at, breaker_stop_at=breaker_stop(peers, breaker_reset_at),
    )


class BreakerCount(BaseModel):
    """The fleet breaker's measure: attempts and failures in its window, and whether it is open."""

    attempts: int
    failures: int
    open: bool
    detail: str


def breaker_count(config: FleetConfig, attempts: list[AttemptRecord], *, now: datetime,
                  reset_at: datetime | None, stopped_at: datetime | None) -> BreakerCount:
    """Open when more than ``fleet_breaker_failure_rate`` of at least ``fleet_breaker_min_attempts`` attempts of
    the last 24 h (after the last reset) failed, or while a target's stop for it since the reset stands."""
    since = max(now - BREAKER_WINDOW, reset_at) if reset_at is not None else now - BREAKER_WINDOW
    window = [a for a in attempts if since < a.finished_at <= now]
    failures = sum(1 for a in window if a.outcome in FAILED_OUTCOMES)
    rate = failures / len(window) if window else 0.0
    tripped = len(window) >= config.fleet_breaker_min_attempts and rate > config.fleet_breaker_failure_rate
    after = f" since the reset at {reset_at.isoformat(timespec='seconds')}" if reset_at else ""
    detail = (f"{failures} of {len(window)} attempt(s) of the fleet failed in the last 24 h{after} "
              f"(trips above {config.fleet_breaker_failure_rate:.0%} of at least "
              f"{config.fleet_breaker_min_attempts})")
    if not tripped and stopped_at is not None:
        detail += f"; open since {stopped_at.isoformat(timespec='seconds')} until an admin resets it"
    return BreakerCount(attempts=len(window), failures=failures, open=tripped or stopped_at is not None,
                        detail=detail)


def last_hour(opened: list[datetime], now: datetime) -> list[datetime]:
    """The PR openings of the hour before ``now``, oldest first."""
    return sorted(at for at in opened if now - timedelta(hours=1) < at <= now)


def next_pr_after(recent: list[datetime], limit: int) -> datetime | None:
    """When the hourly limit frees a slot for ``recent`` (:func:`last_hour`); None while under it."""
    return recent[len(recent) - limit] + timedelta(hours=1) if len(recent) >= limit else None


def _hourly(limit: int, opened: list[datetime], now: datetime) -> Check:
    recent = last_hour(opened, now)
    detail = f"{len(recent)} PR(s) opened by the account in the last hour, limit {limit}"
    free = next_pr_after(recent, limit)
    if free is not None:
        detail += f"; next PR after {free.strftime('%H:%M')} UTC"
    return Check(name="fleet_prs_per_hour", passed=free is None, detail=detail)


def _team_checks(fleet: FleetState, own_open: int, own_spent: float) -> list[tuple[Check, ReasonCode | None]]:
    limits = fleet.config.teams.get(fleet.team) if fleet.team else None
    if limits is None:
        return []
    out: list[tuple[Check, ReasonCode | None]] = []
    if limits.max_open_prs is not None:
        total = fleet.team_open_prs + own_open
        ok = total < limits.max_open_prs
        out.append((Check(name="team_open_prs", passed=ok, detail=f"team {fleet.team}: {total} open PR(s), "
                          f"limit {limits.max_open_prs}"), None if ok else ReasonCode.TEAM_BUDGET_EXHAUSTED))
    if limits.llm_daily_usd is not None:
        spent = fleet.team_spent_usd + own_spent
        ok = spent < limits.llm_daily_usd
        out.append((Check(name="team_llm_budget", passed=ok, detail=f"team {fleet.team}: ${spent:.4f} spent on the "
                          f"model in the last 24 h, budget ${limits.llm_daily_usd:.2f}/day"),
                    None if ok else ReasonCode.TEAM_BUDGET_EXHAUSTED))
    return out


def own_open_prs(state: CycleState) -> int:
    """This target's open agent/ PRs and branches awaiting CI, as the open-PR limit counts them."""
    branches = {pr.branch for pr in state.open_prs or [] if pr.branch.startswith(AGENT_BRANCH_PREFIX)}
    return len(branches | {b.branch for b in state.held_branches})


#: The check of the fleet state itself: failed when it is unknown, or passed when an idle cycle did not read it.
FLEET_STATE_CHECK = "fleet_state"


def fleet_checks(fleet: FleetState, state: CycleState, now: datetime) -> list[tuple[Check, ReasonCode | None]]:
    """The fleet's checks for one decision and the reason of each that failed (fails closed when unknown)."""
    if fleet.unknown is not None:
        return [(Check(name=FLEET_STATE_CHECK, passed=False, detail=f"unknown: {fleet.unknown}"),
                 ReasonCode.FLEET_STATE_UNKNOWN)]
    config = fleet.config
    out: list[tuple[Check, ReasonCode | None]] = []
    breaker = breaker_count(config, [*fleet.attempts, *state.attempts], now=now, reset_at=fleet.breaker_reset_at,
                            stopped_at=fleet.breaker_stop_at)
    out.append((Check(name="fleet_breaker", passed=not breaker.open, detail=breaker.detail),
                ReasonCode.FLEET_BREAKER_OPEN if breaker.open else None))
    own = own_open_prs(state)
    if config.fleet_max_open_prs is not None:
        total = fleet.account_open_prs + own
        ok = total < config.fleet_max_open_prs
        out.append((Check(name="fleet_open_prs", passed=ok, detail=f"{total} open PR(s) on account {fleet.account} "
                          f"({own} of this target), limit {config.fleet_max_open_prs}"),
                    None if ok else ReasonCode.FLEET_OPEN_PRS_LIMIT))
    if config.fleet_max_prs_per_hour is not None:
        check = _hourly(config.fleet_max_prs_per_hour, [*fleet.account_prs_opened_at, *state.prs_opened_at], now)
        out.append((check, None if check.passed else ReasonCode.FLEET_PR_HOURLY_LIMIT))
    spent = sum(a.cost_usd for a in state.attempts if a.finished_at > now - BREAKER_WINDOW)
    return out + _team_checks(fleet, own, spent)
