"""Airflow's public REST API, for the operator commands that change Airflow's own state (``leviathan stop``).

Pausing DAGs and failing task instances go through the API server, so Airflow's permission checks, audit log
and listeners see them, exactly as when an operator clicks in the UI; nothing writes task state through the ORM.
The Airflow connection (default ``leviathan_airflow_api``) holds the API server's address and an Airflow user
allowed to edit DAGs and task instances (role ``User``, ``Op`` or ``Admin``); the token comes from ``/auth/token``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from leviathan_lib.core.secrets_scan import redact_text

DEFAULT_CONN_ID = "leviathan_airflow_api"
#: The API server's default ``[api] maximum_page_limit``: a larger limit is silently cut to it.
PAGE = 100
#: At most this many pages per listing (20,000 rows): a fleet is far smaller, and the loop is bounded.
MAX_PAGES = 200
#: Which Airflow roles may pause DAGs and mark task instances (SimpleAuthManager's and FAB's names).
ROLES = "role User, Op or Admin"
HOW_TO_CONFIGURE = (
    "add an Airflow connection {conn_id!r} with the API server's URL as host and an Airflow user that may edit "
    f"DAGs and task instances ({ROLES}), e.g. AIRFLOW_CONN_{{env}}='{{{{\"conn_type\": \"http\", "
    "\"host\": \"https://airflow.example.com\", \"login\": \"oncall\", \"password\": \"...\"}}'")


class AirflowApiUnavailable(Exception):
    """The API server cannot be used: no connection, unreachable, refused credentials or permission."""


class AirflowApiHook:
    """One authenticated client of ``/api/v2`` (a hook in Airflow's sense: the connection holds the
    credentials). Listings are paged and bounded; every failure is an :class:`AirflowApiUnavailable` that
    says which of the connection, the network, the user or the permission is wrong."""

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, timeout: float = 30.0):
        self.conn_id = conn_id
        self.timeout = timeout
        self._client: httpx.Client | None = None

    def _how(self) -> str:
        return HOW_TO_CONFIGURE.format(conn_id=self.conn_id, env=self.conn_id.upper())

    def _endpoint_and_login(self) -> tuple[str, str, str]:
        """The API server's base URL, and the login and password of the connection's user."""
        # Not airflow.sdk's BaseHook: outside a task it reads only the environment, while an operator's
        # connection may be in the metadata DB or a secrets backend, as for the ``airflow`` CLI.
        from airflow.models.connection import Connection

        try:
            conn = Connection.get_connection_from_secrets(self.conn_id)
        except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException or a secrets backend's failure
            raise AirflowApiUnavailable(f"the Airflow connection {self.conn_id!r} is not available "
                                        f"({type(exc).__name__}): {self._how()}") from None
        host = (conn.host or "").strip().rstrip("/")
        if not host:
            raise AirflowApiUnavailable(f"the Airflow connection {self.conn_id!r} has no host: {self._how()}")
        if "://" not in host:
            scheme = "https" if (conn.conn_type or "").lower() == "https" else "http"
            host = f"{scheme}://{host}"
        if conn.port and host.count(":") < 2:
            host = f"{host}:{conn.port}"
        if not conn.login or not conn.password:
            raise AirflowApiUnavailable(f"the Airflow connection {self.conn_id!r} needs a login and a password: "
                                        f"{self._how()}")
        return host, conn.login, conn.password

    def client(self) -> httpx.Client:
        """The authenticated client (one token per command)."""
        if self._client is None:
            base, login, password = self._endpoint_and_login()
            try:
                answer = httpx.post(f"{base}/auth/token", json={"username": login, "password": password},
                                    timeout=self.timeout)
            except httpx.HTTPError as exc:
                raise AirflowApiUnavailable(f"the Airflow API server at {redact_text(base)} is unreachable "
                                            f"({type(exc).__name__})") from None
            if answer.status_code in (401, 403):
                raise AirflowApiUnavailable(f"the Airflow API server refused the login {login!r} of connection "
                                            f"{self.conn_id!r} ({answer.status_code})")
            token = answer.json().get("access_token") if answer.status_code in (200, 201) else None
            if not isinstance(token, str):
                raise AirflowApiUnavailable(f"the Airflow API server at {redact_text(base)} gave no token "
                                            f"({answer.status_code}) on /auth/token")
            self._client = httpx.Client(base_url=f"{base}/api/v2", timeout=self.timeout,
                                        headers={"Authorization": f"Bearer {token}"})
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.client().request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AirflowApiUnavailable(f"{method} {path}: the API server did not answer "
                                        f"({type(exc).__name__})") from None
        if answer.status_code == 403:
            raise AirflowApiUnavailable(f"{method} {path}: the user of connection {self.conn_id!r} may not do "
                                        f"this (403); it needs a user that may edit DAGs and task instances ({ROLES})")
        if answer.status_code >= 400:
            raise AirflowApiUnavailable(f"{method} {path}: {answer.status_code} {redact_text(answer.text[:300])}")
        return answer.json()

    def _pages(self, path: str, key: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for page in range(MAX_PAGES):
            rows = self._call("GET", path, params={**params, "limit": PAGE, "offset": page * PAGE}).get(key) or []
            yield from rows
            if len(rows) < PAGE:
                return
        raise AirflowApiUnavailable(f"GET {path}: more than {MAX_PAGES * PAGE} rows")

    def dag_ids(self, prefix: str, *, paused: bool) -> list[str]:
        """DAGs whose id starts with ``prefix`` (stale ones too: a removed target's DAG can still run)."""
        rows = self._pages("/dags", "dags", {"dag_id_prefix_pattern": prefix, "paused": paused,
                                             "exclude_stale": False})
        return sorted(d for row in rows if isinstance(d := row.get("dag_id"), str) and d.startswith(prefix))

    def pause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{quote(dag_id, safe='')}", params={"update_mask": "is_paused"},
                   json={"is_paused": True})

    def task_instances(self, prefix: str, states: tuple[str, ...], task_id: str | None = None) -> list[str]:
        """``dag_id/run_id/task_id`` of the task instances in ``states`` of DAGs starting with ``prefix``."""
        params: dict[str, Any] = {"dag_id_prefix_pattern": prefix, "state": list(states)}
        if task_id:
            params["task_id"] = task_id
        rows = self._pages("/dags/~/dagRuns/~/taskInstances", "task_instances", params)
        return sorted({f"{row['dag_id']}/{row['dag_run_id']}/{row['task_id']}" for row in rows
                       if str(row.get("dag_id", "")).startswith(prefix)})

    def dag_runs(self, prefix: str, states: tuple[str, ...]) -> list[str]:
        """``dag_id/run_id`` of the runs in ``states`` of DAGs starting with ``prefix``."""
        rows = self._pages("/dags/~/dagRuns", "dag_runs", {"state": list(states)})
        return sorted({f"{row['dag_id']}/{row['dag_run_id']}" for row in rows
                       if str(row.get("dag_id", "")).startswith(prefix)})

    def fail(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Mark a task instance failed, as the UI does; Airflow then ends a running one."""
        path = "/".join(quote(part, safe="") for part in (dag_id, "dagRuns", run_id, "taskInstances", task_id))
        self._call("PATCH", f"/dags/{path}", json={"new_state": "failed"})
