"""The egress proxy of one attempt: recipe steps reach only the target's ``sandbox_egress`` destinations,
and every connection they ask for is recorded, allowed or refused, with its bytes.

The worker starts it for a recipe attempt whose spec lists ``egress`` rules and stops it when the recipe
ends; without rules there is no proxy and the steps are offline. An HTTP proxy on the standard library,
one thread per connection:

* ``CONNECT host:port`` opens a tunnel (HTTPS, or any TCP protocol); its bytes are relayed unread.
* A plain-HTTP request in absolute form (``GET http://host:port/path``, what a client sends an HTTP
  proxy) is forwarded with ``Connection: close``: many local package indexes are plain http
  (``pip install --index-url http://127.0.0.1:8000/simple``).

Everything else gets an error answer whose status line and body name the destination and the rule, so
the step's own error output says why (``403 Leviathan egress refused pypi.org:443 (not in
sandbox_egress)``): an origin-form or ``https://`` absolute request (400), a destination outside the
rules (403), one that cannot be resolved or connected to (502). The proxy resolves names itself and
connects only to an address it checked (:func:`leviathan_lib.core.egress.name_address_refused`).

Bounds (:class:`EgressLimits`): connections per attempt, connections at once, bytes per attempt, time
to send the request, to connect, and without a byte either way. The attempt's timeout bounds the rest.

Where it listens: for the bubblewrap sandbox, on a Unix socket in a private directory the sandbox gets
read-only, where :mod:`leviathan_lib.worker.egress_shim` relays the sandbox's own ``127.0.0.1:3128`` to
it (the sandbox's network namespace has nothing else that leads out); in a pod, or unsandboxed, on an
ephemeral port of the worker's ``127.0.0.1``, where nothing stops a step from bypassing it (see
docs/security.md).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from leviathan_lib.core.egress import (
    MAX_RECORDED,
    EgressCode,
    EgressConnection,
    EgressReport,
    EgressRule,
    check_host,
    is_address,
    name_address_refused,
)
from leviathan_lib.worker.egress_shim import SANDBOX_PROXY_PORT, pump

#: The proxy variables a step gets; standard tools (pip, curl, git, Python's urllib, npm) honour them.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
MAX_HEAD_BYTES = 16384
#: Unix socket paths hold at most 107 bytes: room for ``/egress-XXXXXXXX/proxy.sock``.
_MAX_SOCKET_PARENT = 80
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"te", b"upgrade"}
_UNSAFE_HOST = re.compile(r"[^A-Za-z0-9.:\[\]_-]")
_STATUS = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}

#: ``(host, port)`` → the addresses to try, as strings; :func:`system_resolve` unless a test injects one.
Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class EgressLimits:
    """What one attempt's proxy allows at most; beyond it connections are refused or cut, and recorded."""

    max_connections: int = 1000
    max_concurrent: int = 32
    max_bytes: int = 1 << 30
    head_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 10.0
    idle_timeout_seconds: float = 60.0


def system_resolve(host: str, port: int) -> list[str]:
    """The TCP addresses of ``host`` (the machine's resolver, bounded by its own timeouts)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def proxy_env(url: str) -> dict[str, str]:
    """The variables pointing a step's tools at the proxy at ``url``."""
    return dict.fromkeys(PROXY_VARIABLES, url)


class _Refused(Exception):
    """The connection is answered with ``status`` and not relayed; ``code`` is its evidence code."""

    def __init__(self, code: EgressCode, status: int, detail: str, *, allowed: bool = False) -> None:
        super().__init__(detail)
        self.code, self.status, self.detail, self.allowed = code, status, detail, allowed


@dataclass
class _Request:
    method: str
    host: str
    port: int
    #: What goes upstream before the relay: the rewritten head (plain HTTP) and what followed it.
    upstream_head: bytes = b""


def _evidence_host(host: str) -> str:
    return (_UNSAFE_HOST.sub("", host)[:253]) or "?"


def _read_head(client: socket.socket, timeout: float) -> tuple[bytes, bytes]:
    """The request head (up to the blank line) and whatever followed it; :class:`_Refused` if there is none."""
    client.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD_BYTES or time.monotonic() > deadline:
            raise _Refused("bad_request", 400, f"no request head within {MAX_HEAD_BYTES} bytes and {timeout:g}s")
        try:
            chunk = client.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            raise _Refused("bad_request", 400, "the connection closed before a request")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _split_port(authority: str, default: int | None) -> tuple[str, int]:
    host, port = authority, default
    if authority.startswith("["):
        host, _, tail = authority[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else (default if not tail else None)
    elif authority.count(":") == 1:
        host, _, text = authority.partition(":")
        port = int(text) if text.isdigit() else None
    if port is None or not 1 <= port <= 65535 or not host:
        raise ValueError(f"no valid host:port in {authority[:80]!r}")
    return host, port


def _parse(head: bytes, rest: bytes) -> _Request:
    """The destination of a proxy request, and for plain HTTP the head to send upstream."""
    request_line, *headers = head.split(b"\r\n")
    parts = request_line.decode("latin-1").split(" ")
    if len(parts) != 3 or not re.fullmatch(r"[A-Z]{1,16}", parts[0]) or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise _Refused("bad_request", 400, "not an HTTP/1 proxy request")
    method, target, version = parts
    try:
        if method == "CONNECT":
            host, port = _split_port(target, None)
            return _Request(method, host, port, rest)
        url = urlsplit(target)
        if url.scheme != "http" or url.username or url.password:
            raise _Refused("bad_request", 400, "only CONNECT and absolute http:// requests without credentials "
                           "are proxied (an https:// URL goes through CONNECT)")  # fmt: skip
        host, port = _split_port(url.netloc, 80)
    except ValueError as exc:
        raise _Refused("bad_request", 400, str(exc)) from None
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    # Host is the checked destination's, never the client's: a shared front (a CDN) must not be asked for
    # another site than the one allowed.
    kept = [h for h in headers if h.split(b":", 1)[0].strip().lower() not in _HOP_BY_HOP | {b"host"}]
    lines = [f"{method} {path} {version}".encode("latin-1"), b"Host: " + url.netloc.encode("latin-1"), *kept,
             b"Connection: close"]
    return _Request(method, host, port, b"\r\n".join(lines) + b"\r\n\r\n" + rest)


def _answer(status: int, message: str) -> bytes:
    body = f"leviathan egress proxy: {message}\n".encode()
    reason = f"{_STATUS[status]} by Leviathan egress: {message}"[:200].replace("\r", " ").replace("\n", " ")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nX-Leviathan-Egress: refused\r\n\r\n"
            ).encode("latin-1", "replace") + body  # fmt: skip


class EgressProxy:
    """One attempt's egress proxy; :meth:`start_unix` or :meth:`start_tcp`, then :meth:`stop` for the report."""

    def __init__(self, rules: Sequence[EgressRule], *, limits: EgressLimits | None = None,
                 resolve: Resolver = system_resolve) -> None:
        self.rules = tuple(rules)
        self.limits = limits or EgressLimits()
        self._resolve = resolve
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._socket_dir: Path | None = None
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._accepted = self._active = self._bytes = 0
        #: By arrival (the accept order), so that the record keeps the first connections whatever order they end in.
        self._recorded: dict[int, EgressConnection] = {}
        self._totals = {"total": 0, "refused": 0, "omitted": 0, "bytes_up": 0, "bytes_down": 0}
        #: What steps set as their proxy URL (for the sandbox: the shim's port on its own loopback).
        self.step_url = ""
        #: The Unix socket of :meth:`start_unix` (bind its parent directory into the sandbox).
        self.socket_path: Path | None = None

    def start_unix(self, parent: Path) -> Path:
        """Listen on a Unix socket in a fresh private directory under ``parent`` (the attempt's workspace, so
        a killed worker leaves nothing behind; the temp folder when ``parent`` is too long a path for a
        socket); steps reach it through the sandbox's shim."""
        under = parent if len(str(parent)) <= _MAX_SOCKET_PARENT else None
        self._socket_dir = Path(tempfile.mkdtemp(prefix="egress-", dir=under))
        self.socket_path = self._socket_dir / "proxy.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        self.socket_path.chmod(0o600)
        self._listen(listener, f"http://127.0.0.1:{SANDBOX_PROXY_PORT}")
        return self.socket_path

    def start_tcp(self) -> str:
        """Listen on an ephemeral port of 127.0.0.1 (pod or unsandboxed steps); the proxy URL."""
        listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listen(listener, f"http://127.0.0.1:{listener.getsockname()[1]}")
        return self.step_url

    def _listen(self, listener: socket.socket, url: str) -> None:
        listener.listen(64)
        listener.settimeout(0.2)  # the accept loop notices stop() within this
        self._listener, self.step_url = listener, url
        thread = threading.Thread(target=self._accept_loop, name="leviathan-egress", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, grace_seconds: float = 5.0) -> EgressReport:
        """Refuse new connections, end the open ones (recorded ``stopped``) and report everything."""
        self._stop.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + grace_seconds
        if self._threads:  # the accept loop first: once it has ended, no handler is added
            self._threads[0].join(grace_seconds)
        for thread in self._threads[1:]:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        with self._lock:
            recorded = [self._recorded[n] for n in sorted(self._recorded)]
            return EgressReport(rules=[r.label for r in self.rules], connections=recorded, **self._totals)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._accepted += 1
                over: EgressCode | None = ("connection_limit" if self._accepted > self.limits.max_connections
                        else "concurrency_limit" if self._active >= self.limits.max_concurrent else None)
                self._active += over is None
                arrival = self._accepted
            if over is not None:
                self._refuse_at_once(client, over, arrival)
                continue
            thread = threading.Thread(target=self._handle, args=(client, arrival), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _refuse_at_once(self, client: socket.socket, code: EgressCode, arrival: int) -> None:
        """Refuse in the accept loop, past a limit: no thread is spent, the request is read only if it is
        already there (for the record, and so that closing does not reset the answer away)."""
        limit = self.limits.max_connections if code == "connection_limit" else self.limits.max_concurrent
        what = "connections per attempt" if code == "connection_limit" else "connections at once"
        detail = f"refused: at most {limit} {what}"
        request = None
        with client:
            with contextlib.suppress(OSError, _Refused):
                request = _parse(*_read_head(client, 0.2))
            with contextlib.suppress(OSError):
                client.sendall(_answer(403, detail))
        self._record(EgressConnection(
            method=request.method if request else "?", host=_evidence_host(request.host) if request else "?",
            port=request.port if request else 0, allowed=False, code=code, detail=detail,
        ), arrival)  # fmt: skip

    def _take(self, count: int) -> bool:
        with self._lock:
            self._bytes += count
            return self._bytes <= self.limits.max_bytes

    def _record(self, conn: EgressConnection, arrival: int) -> None:
        with self._lock:
            totals = self._totals
            totals["total"] += 1
            totals["refused"] += not conn.allowed
            totals["bytes_up"] += conn.bytes_up
            totals["bytes_down"] += conn.bytes_down
            if arrival <= MAX_RECORDED:
                self._recorded[arrival] = conn
            else:
                totals["omitted"] += 1

    def _handle(self, client: socket.socket, arrival: int) -> None:
        started = time.monotonic()
        request: _Request | None = None
        with self._lock:
            self._open.add(client)
        try:
            with client:
                try:
                    head, rest = _read_head(client, self.limits.head_timeout_seconds)
                    request = _parse(head, rest)
                    self._relay(client, request, started, arrival)
                except _Refused as exc:
                    self._refused(client, request, exc, started, arrival)
        finally:
            with self._lock:
                self._open.discard(client)
                self._active -= 1

    def _refused(self, client: socket.socket, request: _Request | None, exc: _Refused, started: float,
                 arrival: int) -> None:
        with contextlib.suppress(OSError):
            client.sendall(_answer(exc.status, exc.detail))
        method, host, port = (request.method, request.host, request.port) if request else ("?", "?", 0)
        code: EgressCode = "stopped" if self._stop.is_set() and request is None else exc.code
        self._record(EgressConnection(
            method=method, host=_evidence_host(host), port=port, allowed=exc.allowed, code=code,
            detail=exc.detail[:300], duration_seconds=round(time.monotonic() - started, 3),
        ), arrival)  # fmt: skip

    def _destination(self, request: _Request) -> list[str]:
        """The checked addresses to connect to for ``request``; :class:`_Refused` when there are none."""
        where = f"{request.method} {_evidence_host(request.host)}:{request.port}"
        try:
            rule = EgressRule(host=check_host(request.host), port=request.port)
        except ValueError as exc:
            raise _Refused("bad_request", 403, f"refused {where}: {exc}") from None
        if rule not in self.rules:
            allowed = ", ".join(r.label for r in self.rules)
            raise _Refused("not_allowlisted", 403,
                           f"refused {where}: not in this target's sandbox_egress (allowed: {allowed})")
        if is_address(rule.host):
            return [rule.host]
        try:
            addresses = self._resolve(rule.host, rule.port)
        except OSError as exc:
            raise _Refused("resolve_failed", 502, f"cannot resolve {rule.host}: {exc}", allowed=True) from None
        usable = [a for a in addresses if not name_address_refused(ipaddress.ip_address(a))]
        if not usable:
            raise _Refused("address_refused", 403, f"refused {where}: {rule.host} resolves only to "
                           f"{', '.join(addresses[:4])}, which a host name may not reach (loopback, link-local)")
        return usable[:4]

    def _connect(self, request: _Request, addresses: list[str]) -> socket.socket:
        problems = []
        for address in addresses:
            try:
                return socket.create_connection((address, request.port),
                                                timeout=self.limits.connect_timeout_seconds)
            except OSError as exc:
                problems.append(f"{address}: {exc.strerror or exc}")
        raise _Refused("connect_failed", 502, f"cannot connect to {request.host}:{request.port} "
                       f"({'; '.join(problems)})", allowed=True)  # fmt: skip

    def _relay(self, client: socket.socket, request: _Request, started: float, arrival: int) -> None:
        upstream = self._connect(request, self._destination(request))
        address, first = upstream.getpeername()[0], request.upstream_head
        up = down = 0
        code = "byte_limit"
        with upstream:
            try:
                if request.method == "CONNECT":
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if self._take(len(first)):
                    upstream.sendall(first)
                    up, down, code = pump(client, upstream, idle_seconds=self.limits.idle_timeout_seconds,
                                          take=self._take, stop=self._stop)  # fmt: skip
                    up += len(first)
            except OSError:  # either side went away before the relay started
                code = "ok"
        self._record(EgressConnection(
            method=request.method, host=_evidence_host(request.host), port=request.port, allowed=True,
            code=code,  # type: ignore[arg-type]  # pump's reasons are EgressCodes
            address=address, bytes_up=up, bytes_down=down, duration_seconds=round(time.monotonic() - started, 3),
        ), arrival)  # fmt: skip
