"""What the webhook receiver needs from the deployment: the secret, its limits, the targets listening.

Read per process and kept :data:`CACHE_SECONDS` (a flood of deliveries must not read the secrets backend
or the targets folder for each one); a changed targets folder is noticed at once (its fingerprint).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from leviathan_lib.core import target_scan
from leviathan_lib.core.config import TargetsDirError
from leviathan_lib.core.webhooks import Change, RepoKey, concerns, repo_key

#: The Airflow connection (or secrets-backend entry) whose password is the GitHub webhook secret.
SECRET_CONN_ID = "leviathan_webhook_github"
CACHE_SECONDS = 10.0
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_RATE_PER_MINUTE = 3000


class SecretMissing(Exception):
    """No webhook secret is configured: the receiver refuses every delivery (503) and says how to set it."""

    HOW = (f"no webhook secret: create the Airflow connection {SECRET_CONN_ID!r} with the secret in its password "
           f"(airflow connections add {SECRET_CONN_ID} --conn-type generic --conn-password '<secret>'), or the "
           "same connection id in the secrets backend; use the same secret in the forge's webhook settings")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    rate_per_minute: int


def limits() -> Limits:
    """``[leviathan] webhook_max_body_bytes`` and ``webhook_rate_per_minute`` (per source address)."""
    from airflow.configuration import conf

    return Limits(
        max_body_bytes=max(1024, conf.getint("leviathan", "webhook_max_body_bytes",
                                             fallback=DEFAULT_MAX_BODY_BYTES)),
        rate_per_minute=max(1, conf.getint("leviathan", "webhook_rate_per_minute", fallback=DEFAULT_RATE_PER_MINUTE)),
    )


class _Cached:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secret: tuple[float, str | None] | None = None
        self.targets: tuple[str, list[tuple[str, RepoKey | None, str]]] | None = None


_cache = _Cached()


def _read_secret() -> str | None:
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        connection = Connection.get_connection_from_secrets(SECRET_CONN_ID)
    except AirflowNotFoundException:
        return None
    return connection.password or None


def secret() -> str:
    """The webhook secret (raises :class:`SecretMissing`; a lookup error propagates, e.g. the DB is down)."""
    now = time.monotonic()
    cached = _cache.secret
    if cached is None or now - cached[0] > CACHE_SECONDS:
        cached = _cache.secret = (now, _read_secret())
    if not cached[1]:
        raise SecretMissing(SecretMissing.HOW)
    return cached[1]


def _listening() -> list[tuple[str, RepoKey | None, str]]:
    """``(target_id, repository key, target branch)`` of every valid ``webhooks: true`` target."""
    from leviathan_lib.orchestrator.targets import targets_location

    try:
        folder = targets_location().path
    except TargetsDirError:  # health names the folder problem; no target can listen
        return []
    print_, _ = target_scan.fingerprint(folder)
    with _cache.lock:
        if _cache.targets is not None and _cache.targets[0] == print_ and print_:
            return _cache.targets[1]
    found = []
    for files in target_scan.by_target(target_scan.scan(folder)).values():
        target = files[0].target if len(files) == 1 else None
        if target is not None and target.webhooks:
            url = target.repo_location(Path(files[0].path))
            found.append((target.target_id, repo_key(url), target.target_branch))
    with _cache.lock:
        _cache.targets = (print_, found)
    return found


def webhook_targets() -> set[str]:
    """Every target listening for deliveries."""
    return {target_id for target_id, _, _ in _listening()}


def targets_for(change: Change) -> tuple[str, ...]:
    """The ``webhooks: true`` targets a change concerns (sorted)."""
    return tuple(sorted(tid for tid, key, branch in _listening() if concerns(change, key, branch)))


def health_component() -> dict[str, object] | None:
    """``/leviathan/health``'s ``webhooks`` part: whether deliveries can be verified (None: no target listens)."""
    from datetime import UTC, datetime, timedelta

    from leviathan_lib.control.webhooks import ignored_counts

    listening = sorted(webhook_targets())
    if not listening:
        return None
    part: dict[str, object] = {"status": "healthy", "targets": listening}
    try:
        secret()
    except SecretMissing as exc:
        part.update(status="degraded", reason=str(exc))
    part["deliveries_last_hour"] = ignored_counts(datetime.now(UTC) - timedelta(hours=1))
    return part


def receiver_url() -> str:
    """The receiver on this deployment's API server: ``[api] base_url`` + ``/leviathan/webhooks/github``."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="").strip() or "http://localhost:8080"
    return base.rstrip("/") + "/leviathan/webhooks/github"
