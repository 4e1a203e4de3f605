"""A loopback fake of the OpenAI Chat Completions API (``POST /v1/chat/completions``).

It replays the same scripts as :mod:`tests.fake_anthropic` (``Turn`` of ``text``/``tool`` blocks,
``ApiError``, ``Garbage``, ``Slow``), translated to the Chat Completions shape, so every scenario runs on
both providers' real SDKs. A tool input that is not a dict is sent as raw ``arguments`` text: the
malformed JSON a real model sometimes produces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.fake_anthropic import ApiError, FakeAnthropic, Turn, _ids


@dataclass
class FakeOpenAI(FakeAnthropic):
    path = "/v1/chat/completions"

    def error_body(self, error: ApiError) -> dict[str, Any]:
        code = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}.get(error.status)
        return {"error": {"message": error.message, "type": "invalid_request_error", "code": code}}

    def answer(self, turn: Turn, body: dict[str, Any], index: int) -> dict[str, Any]:
        texts = [b["text"] for b in turn.blocks if b["type"] == "text"]
        calls = [{
            "id": f"call_{next(_ids):04d}", "type": "function",
            "function": {"name": b["name"],
                         "arguments": b["input"] if isinstance(b["input"], str) else json.dumps(b["input"])},
        } for b in turn.blocks if b["type"] == "tool_use"]  # fmt: skip
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        if calls:
            message["tool_calls"] = calls
        return {
            "id": f"chatcmpl-{index:04d}", "object": "chat.completion", "created": 1_700_000_000,
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": turn.input_tokens, "completion_tokens": turn.output_tokens,
                      "total_tokens": turn.input_tokens + turn.output_tokens},
        }  # fmt: skip
