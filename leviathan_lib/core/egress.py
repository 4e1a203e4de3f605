"""Network egress of recipe steps (``sandbox_egress``): which destinations a target allows, and what the
attempt's egress proxy recorded.

A rule is one ``host`` and one TCP ``port``. ``host`` is an IP address, taken as written (``127.0.0.1``
is the worker's own machine: allow it only for a service meant for untrusted code, such as a local package
index), or a host name, which the proxy resolves itself and which never reaches a loopback, link-local
(cloud metadata), unspecified or multicast address, whatever DNS answers. There are no wildcards: list
each host (``pypi.org`` and ``files.pythonhosted.org``). Pure: validation and address classes only.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

#: Rules a target may list, and connections one attempt's evidence keeps (the rest are counted).
MAX_RULES = 32
MAX_RECORDED = 100
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
#: Bound of a recorded string: the proxy writes at most 300 characters, the rest is room for the
#: ``[REDACTED:<rule>]`` markers the orchestrator's redaction may put in (``cycle.untrusted``).
_Text = Annotated[str, StringConstraints(max_length=1000)]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: How one proxied connection ended (stable codes). ``ok``: relayed until a side closed; refusals:
#: ``not_allowlisted``, ``address_refused`` (a name resolved only to addresses a name may not reach),
#: ``resolve_failed``, ``bad_request`` (not a proxy request, or an invalid destination),
#: ``connection_limit``, ``concurrency_limit``; after an allowed start: ``connect_failed``, ``byte_limit``,
#: ``idle_timeout``, ``stopped`` (the attempt ended first).
EgressCode = Literal[
    "ok", "not_allowlisted", "address_refused", "resolve_failed", "bad_request", "connection_limit",
    "concurrency_limit", "connect_failed", "byte_limit", "idle_timeout", "stopped",
]


def _address_problem(ip: IpAddress) -> str | None:
    """Why a rule may not name ``ip`` (addresses no target has a reason to reach), or None."""
    if ip.is_unspecified or ip.is_multicast:
        return "an unspecified or multicast address is not a destination"
    if ip.is_link_local:
        return "link-local addresses (cloud metadata services) are never allowed"
    return None


def check_host(value: str) -> str:
    """``value`` as a rule's host in canonical form (lower case, compressed IPv6); ValueError why not."""
    if "*" in value:
        raise ValueError("wildcards are not supported: list each host (e.g. pypi.org and files.pythonhosted.org)")
    if value.startswith("[") and value.endswith("]"):
        raise ValueError("write an IPv6 address without brackets")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        ip = None
    if ip is not None:
        problem = _address_problem(ip)
        if problem:
            raise ValueError(problem)
        return str(ip)
    host = value.lower()
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(f"not a host name or IP address: {value[:80]!r}")
    if host == "localhost" or host.endswith(".localhost"):
        raise ValueError("a name never reaches the loopback: write 127.0.0.1 to mean the worker's own machine")
    return host


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def name_address_refused(ip: IpAddress) -> bool:
    """True when a host *name* resolved to ``ip`` must not be connected to (DNS rebinding onto the worker's
    machine or the cloud metadata service); IPv4-mapped IPv6 addresses are judged as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast


class EgressRule(BaseModel):
    """One allowed destination of recipe steps: ``host`` (a name or an IP address) and a TCP ``port``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    host: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)]

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @property
    def label(self) -> str:
        """``host:port`` (``[v6]:port``), as messages and evidence write it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def unique_rules(rules: list[EgressRule]) -> list[EgressRule]:
    """``rules`` unchanged; ValueError naming a rule listed twice (a copy-paste slip hiding another one)."""
    seen: set[EgressRule] = set()
    for rule in rules:
        if rule in seen:
            raise ValueError(f"{rule.label} is listed twice")
        seen.add(rule)
    return rules


class EgressConnection(BaseModel):
    """One connection a recipe step asked the egress proxy for, allowed or not, with its bytes."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    #: ``CONNECT`` (a tunnel, e.g. HTTPS) or the method of a plain-HTTP request (``GET`` ...).
    method: _Text
    #: The destination as requested (only host-name characters are kept; ``?`` if unreadable).
    host: _Text
    port: Annotated[int, Field(ge=0, le=65535)]
    allowed: bool
    code: EgressCode
    #: The address connected to (None when no connection was made).
    address: _Text | None = None
    #: Bytes from the step to the destination, and back (the proxy's own answers not counted).
    bytes_up: Annotated[int, Field(ge=0)] = 0
    bytes_down: Annotated[int, Field(ge=0)] = 0
    duration_seconds: Annotated[float, Field(ge=0)] = 0.0
    detail: _Text = ""


class EgressReport(BaseModel):
    """What the egress proxy of one attempt saw: its rules, the first :data:`MAX_RECORDED` connections
    and totals over all of them."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    rules: Annotated[list[_Text], Field(max_length=MAX_RULES)]
    connections: Annotated[list[EgressConnection], Field(max_length=MAX_RECORDED)]
    #: Connections beyond :data:`MAX_RECORDED`, counted in the totals but not listed.
    omitted: Annotated[int, Field(ge=0)] = 0
    total: Annotated[int, Field(ge=0)] = 0
    refused: Annotated[int, Field(ge=0)] = 0
    bytes_up: Annotated[int, Field(ge=0)] = 0
    bytes_down: Annotated[int, Field(ge=0)] = 0
