"""What a target's ``limits`` become on this deployment: its values within the caps of airflow.cfg."""

from __future__ import annotations

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import Problem
from leviathan_lib.core.limits import resolve_limits
from leviathan_lib.orchestrator.caps import attempt_caps


def limit_warnings(target: TargetConfig, source: str) -> list[Problem]:
    """One warning per limit the target asks above the deployment's cap (the cap applies)."""
    try:
        caps = attempt_caps()
    except ValueError as exc:
        return [Problem(source, "limits", f"cannot check against the deployment's caps: {exc}")]
    return resolve_limits(target.limits, caps, source)[1]
