"""The test run's Airflow metadata DB: a PostgreSQL database of its own (default) or SQLite.

``LEVIATHAN_TEST_DB`` picks the backend for the whole run: ``postgresql`` (default; production's
backend) or ``sqlite`` (the embedded demo's). On PostgreSQL every run creates its own database on the
server (``LEVIATHAN_TEST_PG``, default ``postgres@127.0.0.1:5432``, trust auth) and drops it at the end,
so concurrent runs never share state and the server keeps nothing. Imports no Airflow: conftest uses
it before Airflow is imported.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

BACKENDS = ("postgresql", "sqlite")
DEFAULT_SERVER = "postgres@127.0.0.1:5432"
#: The Airflow settings that name the metadata DB.
DB_ENV_KEYS = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC")


class MetadataDBError(Exception):
    """The configured metadata DB cannot be used; the message says what is missing."""


def backend() -> str:
    """The backend ``LEVIATHAN_TEST_DB`` names (default ``postgresql``)."""
    name = os.environ.get("LEVIATHAN_TEST_DB", "postgresql").strip().lower() or "postgresql"
    if name not in BACKENDS:
        raise MetadataDBError(f"LEVIATHAN_TEST_DB={name!r}: expected one of {', '.join(BACKENDS)}")
    return name


@dataclass(frozen=True)
class PostgresDatabase:
    """One throw-away database on the shared server, named for this process plus a random suffix."""

    server: str
    name: str

    @classmethod
    def for_this_run(cls) -> PostgresDatabase:
        server = os.environ.get("LEVIATHAN_TEST_PG", DEFAULT_SERVER)
        return cls(server, f"leviathan_test_{os.getpid()}_{secrets.token_hex(3)}")

    def derived(self, suffix: str) -> PostgresDatabase:
        """Another database of this run, for a test that had a metadata DB of its own on SQLite."""
        return PostgresDatabase(self.server, f"{self.name}_{suffix}")

    def airflow_env(self) -> dict[str, str]:
        """Airflow 3 opens a sync (psycopg2) and an async (asyncpg) engine: both point at this database."""
        return {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{self.server}/{self.name}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+asyncpg://{self.server}/{self.name}",
        }

    def _admin(self):  # -> psycopg2 connection (untyped library)
        try:
            import psycopg2
        except ImportError as exc:
            raise MetadataDBError(
                "psycopg2 is not installed: scripts/bootstrap.sh test installs it (or set LEVIATHAN_TEST_DB=sqlite)"
            ) from exc
        try:
            conn = psycopg2.connect(f"postgresql://{self.server}/postgres", connect_timeout=5)
        except psycopg2.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise MetadataDBError(
                f"PostgreSQL is not reachable as {self.server} ({reason}); start it "
                "(scripts/test.sh does) or run the tests on SQLite with LEVIATHAN_TEST_DB=sqlite"
            ) from exc
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
        return conn

    def create(self) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            conn.close()

    def drop(self) -> None:
        """Drop the database, ending whatever still holds a connection to it (ours only: named by pid)."""
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                    "pg_backend_pid()",
                    (self.name,),
                )
                cur.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            conn.close()
