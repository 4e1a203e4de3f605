"""A real ``airflow api-server`` on a free 127.0.0.1 port (simple auth manager), for Spider and browser tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

#: SimpleAuthManager users ``name:role``; their generated passwords are read from AIRFLOW_HOME.
USERS = "admin:admin,viewer:viewer,op:op,user:user"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiServer:
    def __init__(self, home: Path, extra_env: dict[str, str] | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.env = {**os.environ, "AIRFLOW__API__PORT": str(self.port), "AIRFLOW__API__BASE_URL": self.base,
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS, **(extra_env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = home / f"api-server-{self.port}.log"

    def start(self, timeout: float = 120) -> ApiServer:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--port", str(self.port)],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"api-server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"api-server did not answer in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def password(self, user: str) -> str:
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        return passwords[user]

    def token(self, user: str) -> str:
        response = httpx.post(f"{self.base}/auth/token", json={"username": user, "password": self.password(user)},
                              timeout=10)
        response.raise_for_status()
        return response.json()["access_token"]

    def client(self, user: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return httpx.Client(base_url=f"{self.base}/leviathan", headers=headers, timeout=30)
