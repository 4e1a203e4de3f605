"""The deployment's caps on an attempt's resource limits, as Airflow's configuration says (the pure rules:
``core.limits``): airflow.cfg ``[leviathan] max_attempt_processes``, ``max_attempt_memory_mb``,
``max_attempt_cpu_seconds``, ``max_attempt_disk_mb``, ``max_attempt_open_files`` (or their
``AIRFLOW__LEVIATHAN__*`` variables); an unset option is the default of :class:`AttemptLimits`."""

from __future__ import annotations

from leviathan_lib.core.limits import CAP_OPTIONS, AttemptLimits, caps_from


def attempt_caps() -> AttemptLimits:
    """The caps; ValueError naming the option when one is not a valid number."""
    from airflow.sdk.configuration import conf

    return caps_from({option: conf.get("leviathan", option, fallback="") or "" for option in CAP_OPTIONS})
