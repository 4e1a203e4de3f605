"""The deployment's caps, read in the task process through the Task SDK's configuration."""

from __future__ import annotations

import pytest

from leviathan_lib.core.limits import AttemptLimits
from leviathan_lib.orchestrator.caps import attempt_caps


def test_the_caps_come_from_the_leviathan_section_and_a_bad_one_names_its_option(monkeypatch):
    monkeypatch.setenv("AIRFLOW__LEVIATHAN__MAX_ATTEMPT_MEMORY_MB", "512")
    caps = attempt_caps()
    assert caps.memory_mb == 512 and caps.processes == AttemptLimits().processes
    monkeypatch.setenv("AIRFLOW__LEVIATHAN__MAX_ATTEMPT_CPU_SECONDS", "lots")
    with pytest.raises(ValueError, match="max_attempt_cpu_seconds = 'lots': not a whole number"):
        attempt_caps()
