"""A PostgreSQL server of the benchmark's own: initdb into a temporary folder, on a free loopback port.

The soak restarts its database on purpose; doing that to the machine's shared server would hit every
other user of it. The cluster runs as the ``postgres`` system user when started as root (initdb refuses
root), listens only on 127.0.0.1 and is deleted with its folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from bench.common import family_cpu_seconds


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found[-1] if found else shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found: install PostgreSQL (Debian package postgresql), "
                           "scripts/postgres.sh does")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivatePostgres:
    """initdb + pg_ctl on ``base``; ``url(db)`` for SQLAlchemy; ``restart()`` for the chaos step."""

    def __init__(self, *, max_connections: int = 300):
        # A folder of its own: the caller's temporary folder is private to root, and initdb runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="leviathan-bench-pg-"))
        self.data, self.port = self.root / "pgdata", free_port()
        self.max_connections = max_connections
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres")

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=timeout)

    def start(self) -> PrivatePostgres:
        if not (self.data / "PG_VERSION").exists():
            self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c max_connections={self.max_connections} "
                f"-c unix_socket_directories={self.data} -c fsync=off")
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.data / "server.log"),
                  "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        """A fast restart: open connections are cut, as in a failover or a crash-restart."""
        # -l again: without it the server writes to pg_ctl's stdout and holds our pipe open.
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"), "-m", "fast", "-w",
                  "-t", "60", "restart")

    def cpu_seconds(self) -> float:
        """CPU of the server and its backends so far (the database's share of a fleet's cost)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        return family_cpu_seconds(pid)

    def create_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def connect(self, name: str):  # -> psycopg2 connection (untyped library)
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=name, connect_timeout=10)

    def airflow_env(self, name: str) -> dict[str, str]:
        server = f"postgres@127.0.0.1:{self.port}/{name}"
        return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{server}",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+asyncpg://{server}"}
