"""The sandbox's end of the egress proxy: ``python3 -I -S egress_shim.py SOCKET PORT -- PROGRAM ARGS...``.

A bubblewrap sandbox has a network namespace of its own whose only interface is its loopback, so no
TCP connection leaves it. When the target allows egress, the worker binds the proxy's Unix socket
read-only into the sandbox and runs each step under this shim: it listens on the sandbox's own
``127.0.0.1:PORT``, relays every connection made there to the proxy, and runs the step as its child
(the step's exit status is the shim's). The step finds it through ``HTTP_PROXY``/``HTTPS_PROXY``.

The shim runs next to untrusted code and is no security boundary: the proxy, outside the sandbox,
decides and records. Standard library only, and it imports nothing of Leviathan: it is bound into the
sandbox as this one file. The proxy (:mod:`leviathan_lib.worker.egress`) reuses :func:`pump`.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

#: The port of the sandbox's loopback where steps find the proxy (the namespace is private: no clash).
SANDBOX_PROXY_PORT = 3128
#: Connections the shim relays at once; more are closed at once (the proxy bounds them anyway).
MAX_RELAYS = 64
#: A relay idle this long ends (the proxy's own idle bound is shorter).
IDLE_SECONDS = 600.0
_CHUNK = 65536


def pump(
    client: socket.socket, upstream: socket.socket, *, idle_seconds: float,
    take: Callable[[int], bool] | None = None, stop: threading.Event | None = None,
) -> tuple[int, int, str]:
    """Relay bytes both ways until both sides closed; ``(bytes up, bytes down, why it ended)``.

    Why: ``ok``, ``idle_timeout`` (no byte either way for ``idle_seconds``), ``byte_limit`` (``take``
    refused a chunk) or ``stopped`` (``stop`` was set). A side that closes is half-closed on the other.
    """
    counts = {client: 0, upstream: 0}
    for sock in (client, upstream):
        sock.settimeout(idle_seconds)
    selector = selectors.DefaultSelector()
    selector.register(client, selectors.EVENT_READ, upstream)
    selector.register(upstream, selectors.EVENT_READ, client)
    last, why = time.monotonic(), None
    try:
        while selector.get_map() and why is None:
            if stop is not None and stop.is_set():
                why = "stopped"
                break
            events = selector.select(timeout=min(1.0, idle_seconds))
            now = time.monotonic()
            if not events and now - last >= idle_seconds:
                why = "idle_timeout"
            last = now if events else last
            for key, _ in events:
                why = why or _move(key, selector, counts, take)
    finally:
        selector.close()
    return counts[client], counts[upstream], why or "ok"


def _move(
    key: selectors.SelectorKey, selector: selectors.BaseSelector, counts: dict[socket.socket, int],
    take: Callable[[int], bool] | None,
) -> str | None:
    """Move one chunk from ``key``'s socket to its peer; why the relay must end, or None to go on."""
    source, target = key.fileobj, key.data
    assert isinstance(source, socket.socket)
    try:
        data = source.recv(_CHUNK)
    except OSError:
        data = b""
    if not data:
        selector.unregister(source)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
        return None
    if take is not None and not take(len(data)):
        return "byte_limit"
    try:
        target.sendall(data)
    except TimeoutError:
        return "idle_timeout"
    except OSError:  # the peer is gone: nothing more can be moved
        return "ok"
    counts[source] += len(data)
    return None


def _relay(client: socket.socket, path: str, slots: threading.BoundedSemaphore) -> None:
    try:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            upstream.connect(path)
            pump(client, upstream, idle_seconds=IDLE_SECONDS)
    except OSError:
        pass
    finally:
        slots.release()


def _serve(server: socket.socket, path: str) -> None:
    slots = threading.BoundedSemaphore(MAX_RELAYS)
    while True:
        client, _ = server.accept()
        if not slots.acquire(blocking=False):
            client.close()
            continue
        threading.Thread(target=_relay, args=(client, path, slots), daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: egress_shim.py SOCKET PORT -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    path, port, command = argv[0], int(argv[1]), argv[3:]
    server = socket.create_server(("127.0.0.1", port))  # before the step starts: no race
    threading.Thread(target=_serve, args=(server, path), daemon=True).start()
    try:
        proc = subprocess.Popen(command)
    except OSError as exc:
        print(f"could not start {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    code = proc.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
