"""The model connection of a target: the Airflow connection ``llm_conn_id``, read in the task process.

Its type is ``pydanticai`` (or ``pydanticai_bedrock`` / ``pydanticai_azure``) from
apache-airflow-providers-common-ai, so the UI shows a proper form and a Test button: host = the API base
URL (an OpenAI-compatible server is ``openai:<model>`` plus its host), password = the API key, extra
``region_name`` for Bedrock. The host goes into the attempt spec; the key only into the worker's
environment. Only the connection fields are read here: the provider's hook imports pydantic-ai, which
task processes do not need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.pricing import split_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LlmConnection:
    base_url: str | None = None
    api_key: str | None = None
    region: str | None = None
    #: Why the connection cannot be used (its host is not a plain http(s) URL); the attempt fails with it.
    problem: str | None = None


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be the API base URL (it goes into the spec, so it must hold no credential)."""
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"its host {host!r} is not an http(s) URL such as https://api.openai.com/v1"
    if parts.username or parts.password or parts.query:
        return "its host must not contain credentials or a query (put the key in the password)"
    return None


def needs_connection(target: TargetConfig) -> bool:
    """Bedrock authenticates with the worker's AWS role; every other provider needs its connection."""
    return split_model(target.llm_model)[0] != "bedrock"


def read_llm_connection(target: TargetConfig) -> LlmConnection | None:
    """The connection's fields, or None when it does not exist (the caller decides whether that is fatal)."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(target.llm_conn_id)
    except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException, or the API server's answer
        log.warning("model connection %s: %s", target.llm_conn_id, type(exc).__name__)
        return None
    extra = conn.extra_dejson if conn.extra else {}
    region = extra.get("region_name") if isinstance(extra.get("region_name"), str) else None
    host = (conn.host or "").strip() or None
    problem = host_problem(host) if host else None
    if problem:
        return LlmConnection(problem=f"the Airflow connection {target.llm_conn_id!r}: {problem}")
    return LlmConnection(base_url=host, api_key=conn.password or None, region=region)
