"""Edge cases of the loop itself, driven by pydantic-ai's FunctionModel and TestModel (no HTTP)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

from leviathan_lib.contracts.attempt import LlmExecutorSpec
from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.pricing import Price
from leviathan_lib.core.scope import task_scope
from leviathan_lib.worker import llm

TASK = parse_backlog("tasks:\n  - id: a\n    title: A\n    ready: true\n    allowed_paths: [docs/]\n")[0].tasks[0]
SCOPE = task_scope(TASK.allowed_paths, ["docs/"])
PRICE = Price(3.0, 15.0)


def run_with(model, tmp_path: Path, *, deadline_in: float = 30.0, **spec) -> llm.LlmRun:
    checkout = tmp_path / "checkout"
    (checkout / "docs").mkdir(parents=True)
    (checkout / "docs" / "index.md").write_text("# Docs\n")
    executor = LlmExecutorSpec.model_validate({"kind": "llm", "model": "anthropic:claude-test", **spec})
    original = llm._build_model
    llm._build_model = lambda spec, key: (model, None)  # type: ignore[assignment]
    try:
        return llm.run_llm(executor, TASK, SCOPE, checkout, api_key="k", price=PRICE,
                           deadline=time.monotonic() + deadline_in)  # fmt: skip
    finally:
        llm._build_model = original  # type: ignore[assignment]


def scripted(*responses: list) -> FunctionModel:
    turns = iter(responses)

    def answer(messages, info: AgentInfo) -> ModelResponse:
        parts = next(turns, responses[-1])
        return ModelResponse(parts=parts, usage=RequestUsage(input_tokens=10, output_tokens=5))

    return FunctionModel(answer)


def write(path: str, content: str = "# Q\n") -> ToolCallPart:
    return ToolCallPart("write_file", {"path": path, "content": content})


def finish(summary: str = "done") -> ToolCallPart:
    return ToolCallPart("finish", {"summary": summary})


def test_a_write_and_a_finish_in_the_same_response_finish_with_the_write_done(tmp_path):
    run = run_with(scripted([write("docs/q.md"), finish()]), tmp_path)
    assert run.failure is None and run.summary == "done" and run.written == ["docs/q.md"]
    assert run.turns == 1


def test_an_empty_finish_summary_is_refused_until_the_streak_ends_the_attempt(tmp_path):
    run = run_with(scripted([write("docs/q.md")], [finish("")]), tmp_path)
    assert run.failure is not None and run.failure.code == "llm_tool_errors"
    assert run.turns == 4 and all(r["tool"] == "finish" for r in run.refusals)


def test_finishing_without_a_change_is_refused(tmp_path):
    run = run_with(scripted([finish()]), tmp_path)
    assert run.failure.code == "llm_tool_errors"
    assert "nothing was written" in run.refusals[0]["reason"]


def test_text_only_answers_end_at_max_turns(tmp_path):
    run = run_with(scripted([TextPart("thinking...")]), tmp_path, max_turns=4)
    assert run.failure.code == "llm_max_turns" and run.turns == 4


def test_a_model_that_never_answers_is_stopped_at_the_deadline(tmp_path):
    async def hang(messages, info):
        await asyncio.sleep(60)

    started = time.monotonic()
    run = run_with(FunctionModel(hang), tmp_path, deadline_in=2.0, request_timeout_seconds=30)
    assert run.failure.code == "timeout" and run.failure.outcome == "timed_out"
    assert time.monotonic() - started < 10


def test_schema_valid_arguments_for_every_tool_never_escape_the_scope(tmp_path):
    # TestModel calls every tool with arguments generated from its schema (not paths we chose).
    run = run_with(TestModel(call_tools=["list_files", "read_file", "search", "write_file"]), tmp_path,
                   max_turns=3)  # fmt: skip
    assert run.written == [] and [p.name for p in (tmp_path / "checkout").iterdir()] == ["docs"]
    refused = {r["tool"]: r["reason"] for r in run.refusals}
    assert refused["write_file"] == "write refused: path 'a' is outside the allowed prefixes (docs/)"
    assert run.failure.code == "llm_max_turns"
