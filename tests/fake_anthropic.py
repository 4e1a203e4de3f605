"""A loopback fake of the Anthropic Messages API that replays a scripted conversation.

Each POST to ``/v1/messages`` takes the next scripted turn (the last one repeats when ``repeat_last``,
which models a model that loops forever). A turn is a list of content blocks, an :class:`ApiError`
(optionally with ``Retry-After``), :class:`Garbage` (a 200 that is not JSON) or :class:`Slow` (a hang).
:mod:`tests.fake_openai` serves the same scripts as the OpenAI Chat Completions API. Requests (and the
API key each one carried, from ``x-api-key`` or a bearer token) are recorded so tests can check what the
worker sent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)


def tool(name: str, tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{next(_ids):04d}", "name": name, "input": tool_input}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


@dataclass
class Turn:
    blocks: list[dict[str, Any]]
    input_tokens: int = 100
    output_tokens: int = 50


@dataclass
class ApiError:
    status: int
    message: str
    #: Sent as ``Retry-After`` (seconds) when set: a 429 that says how long to wait.
    retry_after: float | None = None


@dataclass
class Garbage:
    """A 200 answer that is not the API's JSON at all."""

    body: bytes = b"<html>502 Bad Gateway, but with a 200</html>"


@dataclass
class Slow:
    """Answer only after ``seconds``: a model that hangs."""

    seconds: float


@dataclass
class FakeAnthropic:
    script: list[Turn | ApiError | Garbage | Slow]
    repeat_last: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    api_keys: list[str | None] = field(default_factory=list)

    path = "/v1/messages"

    def next_turn(self, body: dict[str, Any], api_key: str | None) -> Turn | ApiError | Garbage | Slow:
        self.requests.append(body)
        self.api_keys.append(api_key)
        index = len(self.requests) - 1
        if index >= len(self.script):
            if not self.repeat_last:
                return ApiError(500, "script exhausted")
            index = len(self.script) - 1
        return self.script[index]

    def error_body(self, error: ApiError) -> dict[str, Any]:
        kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
            error.status, "api_error" if error.status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}}

    def answer(self, turn: Turn, body: dict[str, Any], index: int) -> dict[str, Any]:
        # Fresh tool ids per answer, as a real model gives, so a repeated turn is still a valid conversation.
        blocks = [{**b, "id": f"toolu_{next(_ids):04d}"} if b["type"] == "tool_use" else b for b in turn.blocks]
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        return {
            "id": f"msg_{index:04d}", "type": "message", "role": "assistant", "model": body.get("model"),
            "content": blocks, "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens},
        }  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        fake = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        headers: dict[str, str] = {}
        if self.path.rstrip("/") != fake.path:
            status, data = 404, json.dumps(fake.error_body(ApiError(404, f"no route {self.path}"))).encode()
        else:
            bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ") or None
            key = self.headers.get("x-api-key") or bearer
            index = len(fake.requests)
            turn = fake.next_turn(body, key)
            if isinstance(turn, Slow):
                time.sleep(turn.seconds)
                turn = ApiError(500, "too late")
            if isinstance(turn, Garbage):
                status, data = 200, turn.body
            elif isinstance(turn, ApiError):
                status, data = turn.status, json.dumps(fake.error_body(turn)).encode()
                if turn.retry_after is not None:
                    headers["Retry-After"] = f"{turn.retry_after:g}"
            else:
                status, data = 200, json.dumps(fake.answer(turn, body, index)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class FakeServer:
    """``with FakeServer(fake) as url:`` serves ``fake`` on 127.0.0.1 for the duration of the block."""

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.fake = fake  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
