"""SQLite stays covered in a PostgreSQL run: the ``sqlite_subset`` tests run again, on SQLite, in a child pytest.

The embedded demo runs on SQLite whatever the suite's backend, so tests/e2e/test_scheduler.py (the demo
through the real scheduler) covers SQLite in every run; this adds a full ``dag.test()`` cycle.
``LEVIATHAN_TEST_DB=sqlite`` runs the whole suite on SQLite instead (and this test has nothing to add).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.metadata_db import DB_ENV_KEYS, backend

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.scheduler,  # slow: a child pytest, its own `airflow db migrate` and a cycle
    pytest.mark.skipif(backend() == "sqlite", reason="the whole run is on SQLite already"),
]


def test_the_sqlite_subset_passes_on_sqlite():
    env = {k: v for k, v in os.environ.items() if k not in DB_ENV_KEYS and not k.startswith("PYTEST_")}
    env["LEVIATHAN_TEST_DB"] = "sqlite"
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "sqlite_subset", "tests"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    out = child.stdout + child.stderr
    assert child.returncode == 0, out[-4000:]
    assert "leviathan metadata DB: SQLite" in out
    summary = out.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, out[-2000:]
