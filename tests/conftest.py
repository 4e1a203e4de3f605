"""Test isolation: a throw-away AIRFLOW_HOME and a metadata DB of the run's own, never ~/airflow.

The metadata DB is PostgreSQL by default (a database created for this run and dropped at its end, see
tests/metadata_db.py); ``LEVIATHAN_TEST_DB=sqlite`` runs the whole suite on SQLite under AIRFLOW_HOME
instead, and the tests marked ``sqlite_subset`` also run on SQLite in a PostgreSQL run
(tests/e2e/test_sqlite_subset.py). The environment is set before anything imports Airflow, so in-process
Airflow and every Airflow subprocess a test starts with ``os.environ`` use the same database. The
project's own ``airflow.cfg`` is used, so the tests exercise the configuration the demo runs with.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.metadata_db import DB_ENV_KEYS, MetadataDBError, PostgresDatabase, backend

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
        "AIRFLOW__API_AUTH__JWT_SECRET": "test-only-jwt-secret-not-used-outside-tests-64-bytes-long-hs-512",
        "AIRFLOW__API__SECRET_KEY": "test-only-secret-key",
    }
)
for _key in DB_ENV_KEYS:
    os.environ.pop(_key, None)  # SQLite: airflow.cfg's file under AIRFLOW_HOME

try:
    BACKEND, _BACKEND_ERROR = backend(), ""
except MetadataDBError as _exc:
    BACKEND, _BACKEND_ERROR = "", str(_exc)  # reported by pytest_configure as a usage error
_DATABASE = PostgresDatabase.for_this_run() if BACKEND == "postgresql" else None
if _DATABASE is not None:
    os.environ.update(_DATABASE.airflow_env())
_EXTRA: list[PostgresDatabase] = []  # own_metadata_db's databases, dropped with the run's


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Create the run's database; a SIGTERM (e.g. ``timeout``) unwinds like Ctrl-C so it is dropped too."""
    if _BACKEND_ERROR:
        raise pytest.UsageError(_BACKEND_ERROR)
    if _DATABASE is None:
        return
    try:
        _DATABASE.create()
    except MetadataDBError as exc:
        raise pytest.UsageError(str(exc)) from None
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Drop the run's database whatever the outcome (pytest calls this after failures and Ctrl-C too)."""
    for database in [*_EXTRA, *([_DATABASE] if _DATABASE else [])]:
        try:
            database.drop()
        except MetadataDBError as exc:
            print(f"warning: could not drop the test database {database.name}: {exc}", file=sys.stderr)


def pytest_report_header(config: pytest.Config) -> str:
    where = f"PostgreSQL database {_DATABASE.name}" if _DATABASE else f"SQLite under {_HOME}"
    return f"leviathan metadata DB: {where} (LEVIATHAN_TEST_DB={BACKEND})"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the test metadata DB once per session."""
    migrated = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, env=os.environ.copy()
    )
    assert migrated.returncode == 0, f"airflow db migrate failed:\n{migrated.stdout[-2000:]}{migrated.stderr[-3000:]}"
    from tests.airflow_helpers import set_switch

    set_switch(True)  # a missing switch is off (fail closed): the session runs with it switched on
    return _HOME


@pytest.fixture
def own_metadata_db() -> Iterator[dict[str, str]]:
    """A fresh, empty metadata DB for a test that runs a whole Airflow stack of its own (its env settings).

    On SQLite that is the stack's own AIRFLOW_HOME file (nothing to set); on PostgreSQL another database
    of this run, dropped after the test, so the stack's DAGs never reach the other tests' scheduler.
    """
    if _DATABASE is None:
        yield {}
        return
    database = _DATABASE.derived(f"own{len(_EXTRA)}")
    _EXTRA.append(database)
    database.create()
    yield database.airflow_env()
    database.drop()


@pytest.fixture
def targets_dir() -> Path:
    """The (session-wide) targets folder; cleared for each test."""
    for item in _TARGETS.iterdir():
        item.unlink()
    return _TARGETS
