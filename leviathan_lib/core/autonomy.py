"""The autonomy switches, read the same way by the cycle, Spider and the CLI: admin-only in every path.

The global switch is on only when **both** say so: the Airflow Variable (what people see and what older
tooling sets) and the newest switch change Leviathan recorded (an ``AutonomyChangedRecord`` on the
``leviathan://autonomy/global`` asset, which only Spider's admin actions and ``leviathan stop|resume`` write:
Airflow's REST API stamps ``from_rest_api`` into any event it creates, which no record validates with).
So an ``op`` user who deletes the Variable switches autonomy off (a missing Variable is off: fail closed),
and one who sets it to ``true`` changes nothing but the evidence (the last recorded change still says off).

A target's own switch is its DAG's pause flag. Airflow lets any ``user`` unpause a DAG; a pause an admin
made through Leviathan is carried in the target's ledger, and while it stands the target's cycles stop,
whoever unpaused the DAG outside Leviathan (an admin resumes it in the view or with ``leviathan resume``).
"""

from __future__ import annotations

from datetime import datetime

GLOBAL_SWITCH_VARIABLE = "leviathan_autonomy_enabled"
HOW_TO_SWITCH = "an admin switches it in the Leviathan view or with `leviathan resume --reason ...`"


def switch_state(raw: object, recorded: bool | None = None, *, recorded_by: str | None = None,
                 recorded_at: datetime | None = None) -> tuple[bool, str]:
    """The global switch from the Variable's value (``raw``) and the newest recorded change (``recorded``:
    its ``enabled``, None when there is none); on only when both say on; anything else fails closed."""
    if raw is None:
        return False, f"Variable {GLOBAL_SWITCH_VARIABLE} is not set (off, fail closed): {HOW_TO_SWITCH}"
    value = str(raw).strip().lower()
    if value not in ("true", "false"):
        return False, f"Variable {GLOBAL_SWITCH_VARIABLE} has {raw!r}; expected true or false (treated as off)"
    if value == "false":
        return False, f"Variable {GLOBAL_SWITCH_VARIABLE} = false"
    if recorded is None:
        return False, (f"Variable {GLOBAL_SWITCH_VARIABLE} = true, but no switch-on is on the record "
                       f"(set outside Leviathan; treated as off): {HOW_TO_SWITCH}")
    if not recorded:
        when = f" at {recorded_at.isoformat(timespec='seconds')}" if recorded_at else ""
        return False, (f"Variable {GLOBAL_SWITCH_VARIABLE} = true, but the last recorded change{when} by "
                       f"{recorded_by or 'an admin'} switched it off (changed outside Leviathan; treated as off): "
                       f"{HOW_TO_SWITCH}")
    return True, f"Variable {GLOBAL_SWITCH_VARIABLE} = true, switched on by {recorded_by or 'an admin'}"
