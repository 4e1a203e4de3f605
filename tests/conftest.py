"""Test isolation: a throw-away AIRFLOW_HOME with its own SQLite metadata DB, never ~/airflow.

The environment is set before anything imports Airflow. The project's own ``airflow.cfg`` is used, so
the tests exercise the configuration the demo runs with.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
_HOME = Path(tempfile.mkdtemp(prefix="leviathan-test-airflow-"))
_TARGETS = _HOME / "targets"
_TARGETS.mkdir()

os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"),
        "LEVIATHAN_HOME": str(ROOT),
        "LEVIATHAN_TARGETS_DIR": str(_TARGETS),
        "LEVIATHAN_STATE_DIR": str(_HOME / "leviathan"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "test-only-jwt-secret-not-used-outside-tests",
        "AIRFLOW__API__SECRET_KEY": "test-only-secret-key",
    }
)
os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the test metadata DB once per session."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return _HOME


@pytest.fixture
def targets_dir() -> Path:
    """The (session-wide) targets folder; cleared for each test."""
    for item in _TARGETS.iterdir():
        item.unlink()
    return _TARGETS
