"""The global autonomy switch: one Airflow Variable, read the same way by the cycle and by Spider."""

from __future__ import annotations

GLOBAL_SWITCH_VARIABLE = "leviathan_autonomy_enabled"


def switch_state(raw: object) -> tuple[bool, str]:
    """Interpret the Variable's value: missing means on; anything but true/false fails closed (off)."""
    if raw is None:
        return True, "not set (default on)"
    value = str(raw).strip().lower()
    if value in ("true", "false"):
        return value == "true", f"Variable {GLOBAL_SWITCH_VARIABLE} = {value}"
    return False, f"Variable {GLOBAL_SWITCH_VARIABLE} has {raw!r}; expected true or false (treated as off)"
