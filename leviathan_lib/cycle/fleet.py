"""The fleet state one decision gets: every other target's newest evidence, summed per account and team.

The DAG's ``plan`` reads the evidence through its task's asset-event API and Spider through the metadata DB;
both fold it here, with the same window the target's own cycle reads (:func:`~leviathan_lib.cycle.history.
history_window`), so they agree. Anything that cannot be read makes the state ``unknown``: the decision then
stops with ``fleet_state_unknown`` (fails closed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.fleet import FleetConfig, FleetState, PeerSummary, account_of, fleet_state
from leviathan_lib.core.guardrails import ReasonCode
from leviathan_lib.cycle.decision import guardrail_inputs
from leviathan_lib.cycle.history import EventSource, history_window
from leviathan_lib.evidence.records import History, Ledger

#: Targets read for one fleet state at most: beyond it the state is unknown (fails closed), never partial.
MAX_FLEET_TARGETS = 5000


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def peer_summary(target_id: str, target: TargetConfig | None, history: History, ledger: Ledger) -> PeerSummary:
    """What one target's evidence counts toward the fleet limits (a broken target file: no account or team,
    but its attempts and its stop still count for the breaker)."""
    attempts, _ = guardrail_inputs(ledger)
    held = {h.branch for h in ledger.held_branches} - {pr.branch for pr in ledger.open_prs}
    newest = next((c for c in reversed(history.cycles) if not c.replay), None)
    stopped = newest is not None and ReasonCode.FLEET_BREAKER_OPEN in newest.reasons
    return PeerSummary(target_id=target_id, account=account_of(target) if target else "",
                       team=target.team if target else None, open_prs=len(ledger.open_prs) + len(held),
                       prs_opened_at=[_aware(at) for at in ledger.prs_opened_at], attempts=attempts,
                       breaker_stop_at=_aware(newest.recorded_at) if stopped and newest else None)


def newest_evidence(events: EventSource) -> tuple[History, Ledger]:
    """A target's newest records and ledger, read as its own cycle reads them."""
    window = history_window(events, run_id="", as_of=None)
    return window.history, window.ledger


def read_fleet(me: TargetConfig, targets: dict[str, TargetConfig | None], *, config: FleetConfig | str,
               evidence_of: Callable[[str], tuple[History, Ledger]], reset_at: Callable[[], datetime | None],
               now: datetime) -> FleetState:
    """The fleet state for ``me`` from each target's newest evidence (``evidence_of``), ``targets`` by id (None:
    a broken file); ``config`` is the fleet file, or why it cannot be read. Never raises: what fails makes it
    unknown."""
    if isinstance(config, str):
        return FleetState(unknown=config)
    if len(targets) > MAX_FLEET_TARGETS:
        return FleetState(unknown=f"{len(targets)} targets, more than the {MAX_FLEET_TARGETS} one read covers")
    try:
        peers = []
        for tid in sorted(targets):
            peers.append(peer_summary(tid, targets[tid], *evidence_of(tid)))
        reset = reset_at()
    except Exception as exc:  # noqa: BLE001 — any failure to read the fleet fails closed, with its type
        return FleetState(unknown=f"cannot read the fleet's evidence: {type(exc).__name__}: {exc}"[:300])
    return fleet_state(config, me, peers, now=now, breaker_reset_at=_aware(reset) if reset else None)
