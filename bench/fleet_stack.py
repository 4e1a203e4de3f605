"""The production-shaped stack for the fleet benchmarks: PostgreSQL of our own + LocalExecutor + real Airflow.

api-server, scheduler and dag-processor run as in production (separate processes, the real scheduler
loop), on a private PostgreSQL cluster (bench/pg.py), with the settings docs/performance.md recommends for a
fleet. ``restart(component)`` stops one process and starts it again (the soak's chaos); every number the
benchmarks report comes from the API server (server timestamps) or from the database.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, family_cpu_seconds
from bench.pg import PrivatePostgres, free_port

#: The fleet settings measured here (docs/performance.md, "Production settings").
FLEET_SETTINGS = {
    "AIRFLOW__CORE__PARALLELISM": "16",
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
    "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "1",
    "AIRFLOW__SCHEDULER__MAX_DAGRUNS_TO_CREATE_PER_LOOP": "100",
    "AIRFLOW__SCHEDULER__MAX_DAGRUNS_PER_LOOP_TO_SCHEDULE": "100",
    "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "128",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "5",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
    "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
    "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
}
COMPONENTS = ("api-server", "scheduler", "dag-processor")
TERMINAL = ("success", "failed")


def iso_ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class FleetStack:
    """Context manager: a private PostgreSQL, ``airflow db migrate``, the three components, an API login."""

    def __init__(self, base: Path, *, extra_env: dict[str, str] | None = None):
        from leviathan_lib.demo.runner import Api

        self.base = base
        self.dags, self.targets, self.logs = base / "dags", base / "targets", base / "logs"
        for folder in (self.dags, self.targets, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "dags" / "leviathan_targets.py", self.dags / "leviathan_targets.py")
        self.pg = PrivatePostgres()
        self.db = "airflow"
        self.port = free_port()
        url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEVIATHAN"))}
        env.update(
            AIRFLOW_HOME=str(base / "airflow"), AIRFLOW_CONFIG=str(ROOT / "airflow.cfg"),
            LEVIATHAN_HOME=str(ROOT), LEVIATHAN_TARGETS_DIR=str(self.targets),
            LEVIATHAN_STATE_DIR=str(base / "state"),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags), AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__BASE_URL=url, AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{url}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32), AIRFLOW__API__SECRET_KEY=secrets.token_hex(16),
            PATH=f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        env.update({**FLEET_SETTINGS, **(extra_env or {})})  # the caller's settings win
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.api = Api(url)
        self.restarts: dict[str, int] = dict.fromkeys(COMPONENTS, 0)

    def __enter__(self) -> FleetStack:
        self.pg.start()
        try:
            self.pg.create_database(self.db)
            self.env.update(self.pg.airflow_env(self.db))
            subprocess.run([PYTHON, "-m", "airflow", "db", "migrate"], env=self.env, check=True,
                           capture_output=True, timeout=600)
            for name in COMPONENTS:
                self._start(name)
            self._login()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for name in list(self.procs):
            self._stop(name)
        self.pg.stop()

    def _start(self, name: str) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", name], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def _stop(self, name: str, timeout: float = 60) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def restart(self, name: str) -> None:
        """Stop a component the way a deploy or the kubelet does (SIGTERM, then SIGKILL) and start it again."""
        self._stop(name)
        self._start(name)
        self.restarts[name] += 1

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}; see {self.logs / (name + '.log')}")

    def _login(self) -> None:
        import json

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            self.check()
            try:
                self.api.call("GET", "/api/v2/monitor/health")
                passwords = self.base / "airflow" / "simple_auth_manager_passwords.json.generated"
                self.api.login("admin", json.loads(passwords.read_text())["admin"])
                return
            except (OSError, ValueError, KeyError):
                time.sleep(2)
        raise RuntimeError("the API server did not answer within 240 s")

    def call(self, method: str, path: str, body: Any = None, *, attempts: int = 30) -> Any:
        """An API call that rides out the API server's or the database's restarts (bounded)."""
        last: Exception | None = None
        for _ in range(attempts):
            try:
                return self.api.call(method, path, body, timeout=30)
            except OSError as exc:  # URLError, HTTPError 5xx/401 after a restart, connection refused
                last = exc
                if getattr(exc, "code", None) == 401:
                    self._login()
                time.sleep(2)
        raise RuntimeError(f"{method} {path} kept failing: {last}")

    def wait_dags(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            total = self.call("GET", "/api/v2/dags?limit=1&dag_id_pattern=leviathan__%25")["total_entries"]
            if total >= count:
                return
            time.sleep(5)
        raise RuntimeError(f"fewer than {count} DAGs parsed after {timeout:.0f} s")

    def unpause_all(self) -> None:
        self.call("PATCH", "/api/v2/dags?dag_id_pattern=leviathan__%25", {"is_paused": False})

    def all_runs(self) -> list[dict[str, Any]]:
        """Every DAG run of every Leviathan DAG (paged; bounded by the run count)."""
        out: list[dict[str, Any]] = []
        for _ in range(1000):
            page = self.call("GET", f"/api/v2/dags/~/dagRuns?limit=100&offset={len(out)}&order_by=id")
            out += page["dag_runs"]
            if not page["dag_runs"] or len(out) >= page["total_entries"]:
                break
        return [r for r in out if r["dag_id"].startswith("leviathan__")]

    def cpu_seconds(self) -> float:
        """CPU used so far by every process of the stack, reaped children included (psutil)."""
        return sum(family_cpu_seconds(proc.pid) for proc in self.procs.values())
