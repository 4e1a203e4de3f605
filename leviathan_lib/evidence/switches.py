"""The global switch from its recorded changes: the newest one made through Leviathan counts, nothing else.

Pure, for every reader: the cycle (its inlet events), Spider and the CLI (the metadata DB).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from leviathan_lib.core.autonomy import switch_state
from leviathan_lib.evidence.records import AutonomyChangedRecord, FleetBreakerResetRecord

log = logging.getLogger(__name__)

#: Newest switch events read to find the newest global change, then a wider read (none found: off).
NEWEST_SWITCH_EVENTS = (16, 500)
#: Newest events of the fleet breaker asset read for its newest reset (only resets are recorded there).
NEWEST_FLEET_RESETS = 16


def recorded_global(extras: list[Any]) -> AutonomyChangedRecord | None:
    """The newest global change made through Leviathan among switch events (newest first); forged ones (the
    REST API's marker, or anything that does not validate) and outside changes never count."""
    for extra in extras:
        if not isinstance(extra, dict) or extra.get("kind") != "autonomy_changed" or extra.get("target_id"):
            continue
        try:
            record = AutonomyChangedRecord.model_validate(extra)
        except ValueError:
            log.warning("a switch event that is no Leviathan record was ignored (made through the REST API?)")
            continue
        if not record.outside:
            return record
    return None


def global_state(variable: object, newest_extras: Iterable[list[Any]]) -> tuple[bool, str]:
    """The global switch from the Variable and the switch events (each read newest first, each wider than
    the one before; consumed lazily, so a wider read happens only when a narrower one found nothing)."""
    record = None
    for extras in newest_extras:
        record = recorded_global(extras)
        if record is not None:
            break
    return switch_state(variable, None if record is None else record.enabled,
                        recorded_by=record.by if record else None, recorded_at=record.changed_at if record else None)


def newest_fleet_reset(newest_extras: list[Any]) -> FleetBreakerResetRecord | None:
    """The newest fleet breaker reset among the fleet breaker asset's newest events (newest first); anything
    that does not validate (the REST API's marker) never counts."""
    for extra in newest_extras:
        if isinstance(extra, dict) and extra.get("kind") == "fleet_breaker_reset":
            try:
                return FleetBreakerResetRecord.model_validate(extra)
            except ValueError:
                log.warning("a fleet breaker reset that is no Leviathan record was ignored (the REST API?)")
    return None
