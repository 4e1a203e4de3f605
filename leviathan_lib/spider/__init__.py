"""Spider: Leviathan's observer on the Airflow API server (health, metrics, events, autonomy switch, UI).

The plugin class only holds a :class:`LazyApp`: Airflow imports plugins in every task process, and the
FastAPI app (with the API server's security helpers and ``prometheus_client``) is only built when the
API server first routes a request to it. May import: ``control`` (every read or change of Airflow
state), ``orchestrator`` (the plugin registers its listeners), ``evidence``, ``core``; of Airflow only
the API server's auth helpers (``spider.auth``) and the plugin base class (``spider.plugin``).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from leviathan_lib.core.names import SPIDER_URL_PREFIX

URL_PREFIX = SPIDER_URL_PREFIX


class LazyApp:
    """An ASGI app that builds ``module:factory()`` on its first request."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._app: Callable[[dict[str, Any], Any, Any], Awaitable[None]] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self._app
        if app is None:
            module, _, factory = self.target.partition(":")
            app = self._app = getattr(importlib.import_module(module), factory)()
        await app(scope, receive, send)
