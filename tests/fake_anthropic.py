"""A loopback fake of the Anthropic Messages API that replays a scripted conversation.

Each POST to ``/v1/messages`` takes the next scripted turn (the last one repeats when ``repeat_last``,
which models a model that loops forever). A turn is a list of content blocks, or an ``(status, body)``
pair for an API error. Requests (and the API key each one carried, from ``x-api-key`` or a bearer token) are recorded so
tests can check what the worker sent.
"""

from __future__ import annotations

import itertools
import json
import threading
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


@dataclass
class FakeAnthropic:
    script: list[Turn | ApiError]
    repeat_last: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    api_keys: list[str | None] = field(default_factory=list)

    def next_answer(self, body: dict[str, Any], api_key: str | None) -> tuple[int, dict[str, Any]]:
        self.requests.append(body)
        self.api_keys.append(api_key)
        index = len(self.requests) - 1
        if index >= len(self.script):
            if not self.repeat_last:
                return 500, {"type": "error", "error": {"type": "api_error", "message": "script exhausted"}}
            index = len(self.script) - 1
        turn = self.script[index]
        if isinstance(turn, ApiError):
            return turn.status, {"type": "error", "error": {"type": "invalid_request_error", "message": turn.message}}
        # Fresh tool ids per answer, as a real model gives, so a repeated turn is still a valid conversation.
        blocks = [{**b, "id": f"toolu_{next(_ids):04d}"} if b["type"] == "tool_use" else b for b in turn.blocks]
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        return 200, {
            "id": f"msg_{index:04d}", "type": "message", "role": "assistant", "model": body.get("model"),
            "content": blocks, "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens},
        }  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAnthropic

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") != "/v1/messages":
            status, answer = 404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}}
        else:
            bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ") or None
            key = self.headers.get("x-api-key") or bearer
            status, answer = self.server.fake.next_answer(body, key)  # type: ignore[attr-defined]
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class FakeServer:
    """``with FakeServer(fake) as url:`` serves ``fake`` on 127.0.0.1 for the duration of the block."""

    def __init__(self, fake: FakeAnthropic) -> None:
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
