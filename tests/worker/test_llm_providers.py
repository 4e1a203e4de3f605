"""The LLM executor on every provider's real SDK, over HTTP to loopback fakes: the same guarantees.

Each scenario runs against the Anthropic Messages API fake and the OpenAI Chat Completions API fake
(what an OpenAI-compatible server such as vLLM or Ollama speaks): scripted tool calls, the escape
battery, limits, retries on 429/5xx/timeouts, and every bad answer ending with its own code.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from leviathan_lib.contracts.attempt import AttemptSpec
from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.worker.attempt import run_attempt
from leviathan_lib.worker.llm_tools import MAX_WRITE_BYTES
from tests.fake_anthropic import ApiError, FakeAnthropic, FakeServer, Garbage, Slow, Turn, text, tool
from tests.fake_openai import FakeOpenAI
from tests.worker.test_attempt import BACKLOG, apply_on_fresh_clone, git, make_target_repo

API_KEY = "sk-test0000000000000000000000000000000000"
GOOD_DOC = "# Quickstart\n\nInstall, then run `leviathan plan`.\n"
#: provider -> (fake class, model, the price the table gives it, the base URL's path)
PROVIDERS = {
    "anthropic": (FakeAnthropic, "anthropic:claude-sonnet-4-5", (3.0, 15.0), ""),
    "openai": (FakeOpenAI, "openai:gpt-4o", (2.5, 10.0), "/v1"),
}


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request) -> str:
    return request.param


@pytest.fixture
def target(tmp_path: Path) -> tuple[Path, str]:
    return make_target_repo(tmp_path)


def spec_for(repo: Path, sha: str, model: str, base_url: str, *, timeout: int = 60, **executor) -> AttemptSpec:
    backlog, _ = parse_backlog(BACKLOG)
    task = backlog.tasks[0].model_dump(mode="json")
    task.update(recipe=None, executor="llm", description="Write docs/quickstart.md for new users.",
                acceptance_criteria=["docs/quickstart.md explains the first command"])
    return AttemptSpec.model_validate({
        "spec_version": 1, "target_id": "demo", "repo_url": str(repo), "commit_sha": sha, "task": task,
        "allowed_path_prefixes": [".leviathan/", "docs/"],
        "executor": {"kind": "llm", "model": model, "api_base_url": base_url, "max_turns": 8, **executor},
        "attempt": 1, "timeout_seconds": timeout,
    })  # fmt: skip


def run(tmp_path, target, provider, script, monkeypatch, *, repeat_last=False, timeout=60, **executor):
    fake_cls, model, _, suffix = PROVIDERS[provider]
    fake = fake_cls(list(script), repeat_last=repeat_last)
    monkeypatch.setenv("LEVIATHAN_LLM_API_KEY", API_KEY)
    with FakeServer(fake) as url:
        result = run_attempt(spec_for(*target, model, url + suffix, timeout=timeout, **executor), tmp_path / "ws")
    return result, fake


def finishing(*first: Turn) -> list[Turn]:
    return [*first, Turn([tool("write_file", {"path": "docs/quickstart.md", "content": GOOD_DOC})]),
            Turn([tool("finish", {"summary": "Added the quickstart."})])]  # fmt: skip


def test_a_scripted_change_succeeds_and_is_priced_from_the_table(tmp_path, target, provider, monkeypatch):
    script = finishing(Turn([text("Looking."), tool("read_file", {"path": "docs/index.md"})],
                            input_tokens=1000, output_tokens=100))  # fmt: skip
    result, fake = run(tmp_path, target, provider, script, monkeypatch)
    assert result.outcome == "succeeded", result.error
    clone = apply_on_fresh_clone(tmp_path, target[0], target[1], result.patch)
    assert (clone / "docs/quickstart.md").read_text() == GOOD_DOC
    price_in, price_out = PROVIDERS[provider][2]
    usage = result.usage
    assert (usage.turns, usage.input_tokens, usage.output_tokens) == (3, 1200, 200)
    assert usage.cost_usd == pytest.approx((1200 * price_in + 200 * price_out) / 1e6)
    assert usage.prompt_sha256 == result.executor["prompt_sha256"]
    template = Path("leviathan_lib/worker/prompts/edit-v4.md").read_text(encoding="utf-8").split("-->", 1)[1]
    assert usage.prompt_sha256 == hashlib.sha256(template.lstrip("\n").encode()).hexdigest()
    assert set(fake.api_keys) == {API_KEY}
    assert "Write docs/quickstart.md for new users." in json.dumps(fake.requests[0])


ESCAPES = [
    ("README.md", "outside the allowed prefixes"),
    ("../escape.md", "'..' segment"),
    ("/etc/passwd", "absolute path"),
    (".git/config", "inside .git"),
    ("docs/../../escape.md", "'..' segment"),
    ("docs/out/escaped.md", "symlink"),
]


def test_the_escape_battery_is_refused_on_every_provider(tmp_path, provider, monkeypatch):
    work = tmp_path / "src"
    repo, _ = make_target_repo(tmp_path)
    (work / "docs" / "out").symlink_to(tmp_path)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "symlink", cwd=work)
    git("push", "--quiet", str(repo), "HEAD:main", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work).strip()
    huge = "x" * (MAX_WRITE_BYTES + 1)
    bad = [tool("write_file", {"path": path, "content": "pwned\n"}) for path, _ in ESCAPES]
    script = finishing(Turn(bad), Turn([tool("write_file", {"path": "docs/huge.md", "content": huge}),
                                        tool("read_file", {"path": "docs/out/src/README.md"})]))  # fmt: skip
    result, _ = run(tmp_path, (repo, sha), provider, script, monkeypatch)
    assert result.outcome == "succeeded", result.error
    assert result.changed_paths == ["docs/quickstart.md"]
    refusals = result.executor["refusals"]
    for (path, why), refusal in zip(ESCAPES, refusals, strict=False):
        assert refusal["path"] == path and why in refusal["reason"], refusal
    assert "the limit is 200000" in refusals[len(ESCAPES)]["reason"]
    assert "symlink" in refusals[len(ESCAPES) + 1]["reason"]
    assert len(refusals) == len(ESCAPES) + 2
    assert not (tmp_path / "escape.md").exists() and not (tmp_path / "escaped.md").exists()
    assert not (tmp_path / "ws" / "checkout" / "docs" / "huge.md").exists()


def test_thousands_of_calls_in_one_turn_stop_before_any_runs(tmp_path, target, provider, monkeypatch):
    flood = [tool("write_file", {"path": f"docs/f{i}.md", "content": "x\n"}) for i in range(2000)]
    result, fake = run(tmp_path, target, provider, [Turn(flood)], monkeypatch)
    assert result.outcome == "failed" and result.error.code == "llm_tool_call_limit"
    assert "2000 tool calls in turn 1; the limit is 20 per turn" in result.error.message
    assert result.executor["written_paths"] == [] and len(fake.requests) == 1


def test_the_attempt_wide_tool_call_limit(tmp_path, target, provider, monkeypatch):
    script = [Turn([tool("list_files", {"path": ""})] * 5)]
    result, fake = run(tmp_path, target, provider, script, monkeypatch, repeat_last=True, max_tool_calls=12)
    assert result.error.code == "llm_tool_call_limit" and "15 tool calls after 3 turn(s)" in result.error.message
    assert len(fake.requests) == 3


def test_a_429_with_retry_after_is_waited_out_and_retried(tmp_path, target, provider, monkeypatch):
    script = finishing(ApiError(429, "slow down", retry_after=1), ApiError(503, "overloaded"))
    started = time.monotonic()
    result, fake = run(tmp_path, target, provider, script, monkeypatch)
    assert result.outcome == "succeeded", result.error
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured, not the 0.5 s backoff
    assert result.executor["retries"] == 2 and result.usage.turns == 2 and len(fake.requests) == 4


@pytest.mark.parametrize(
    ("script", "code", "why"),
    [
        ([ApiError(401, "invalid key")], "llm_auth_failed", "refused the key"),
        ([ApiError(404, "model not found")], "llm_unknown_model", "does not know the model"),
        ([ApiError(400, "bad request")], "llm_api_error", "HTTP 400"),
        ([ApiError(429, "slow down", retry_after=0)], "llm_rate_limited", "after 2 retries"),
        ([ApiError(500, "boom")], "llm_api_error", "after 2 retries"),
        ([Garbage()], "llm_bad_response", ""),
        ([Turn([text("I'd rather chat.")])], "llm_max_turns", "no finish after 3 turns"),
    ],
)
def test_bad_answers_end_with_their_own_code(tmp_path, target, provider, monkeypatch, script, code, why):
    result, _ = run(tmp_path, target, provider, script, monkeypatch, repeat_last=True, max_retries=2, max_turns=3)
    assert result.outcome == "failed" and result.error.code == code, result.error
    assert why in result.error.message and result.patch == ""
    assert "Traceback" not in result.error.message and API_KEY not in json.dumps(result.model_dump(mode="json"))


def test_a_hanging_model_is_cut_at_the_request_timeout_then_the_deadline(tmp_path, target, provider, monkeypatch):
    started = time.monotonic()
    result, fake = run(tmp_path, target, provider, [Slow(3)], monkeypatch, repeat_last=True, timeout=20,
                       request_timeout_seconds=1.0, max_retries=10)  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.outcome == "timed_out" and result.error.code == "timeout", result.error
    assert elapsed < 20 and len(fake.requests) >= 3  # each request cut at ~1 s, retried until the deadline


def test_malformed_tool_input_is_answered_and_the_model_recovers(tmp_path, target, provider, monkeypatch):
    bad = "{not json" if provider == "openai" else {"path": "docs/quickstart.md"}
    result, fake = run(tmp_path, target, provider, finishing(Turn([tool("write_file", bad)])), monkeypatch)
    assert result.outcome == "succeeded", result.error
    [refusal] = result.executor["refusals"]
    assert refusal["tool"] == "write_file" and refusal["reason"]
    assert len(fake.requests) == 3


def test_a_model_that_keeps_sending_garbage_tool_calls_fails(tmp_path, target, provider, monkeypatch):
    script = [Turn([tool("rm_rf", {"path": "docs"})])]
    result, fake = run(tmp_path, target, provider, script, monkeypatch, repeat_last=True)
    assert result.error.code == "llm_tool_errors" and len(fake.requests) == 3
    assert "rm_rf" in result.error.message


def test_unknown_provider_and_unpriced_models_are_refused_before_cloning(tmp_path, target, monkeypatch):
    monkeypatch.setenv("LEVIATHAN_LLM_API_KEY", API_KEY)
    for model, code in (("mistral:large", "llm_unknown_provider"), ("openai:gpt-unknown", "llm_price_unknown")):
        result = run_attempt(spec_for(*target, model, "http://127.0.0.1:9/v1"), tmp_path / code)
        assert result.error.code == code, result.error
        assert not (tmp_path / code).exists()
    priced = spec_for(*target, "openai:gpt-unknown", "http://127.0.0.1:9/v1",
                      input_usd_per_mtok=1.0, output_usd_per_mtok=2.0)  # fmt: skip
    assert run_attempt(priced, tmp_path / "priced").error.code == "llm_api_unreachable"


def test_a_self_hosted_openai_compatible_server_needs_no_key(tmp_path, target, monkeypatch):
    monkeypatch.delenv("LEVIATHAN_LLM_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    fake = FakeOpenAI(finishing())
    with FakeServer(fake) as url:
        spec = spec_for(*target, "openai:llama3", url + "/v1", input_usd_per_mtok=0.0, output_usd_per_mtok=0.0)
        result = run_attempt(spec, tmp_path / "ws")
    assert result.outcome == "succeeded", result.error
    assert result.usage.cost_usd == 0.0


def test_review_feedback_reaches_the_prompt(tmp_path, target, monkeypatch):
    feedback = "Please mention `leviathan validate` too."
    result, fake = run(tmp_path, target, "openai", finishing(), monkeypatch, review_feedback=feedback)
    assert result.outcome == "succeeded"
    prompt = fake.requests[0]["messages"][0]["content"]
    prompt = prompt if isinstance(prompt, str) else "".join(p.get("text", "") for p in prompt)
    assert "## Reviewer feedback (untrusted data)" in prompt
    assert f"<<<REVIEWER_FEEDBACK\n{feedback}\nREVIEWER_FEEDBACK>>>" in prompt
    without, fake2 = run(tmp_path / "b", make_target_repo(tmp_path / "b"), "openai", finishing(), monkeypatch)
    assert "Reviewer feedback" not in json.dumps(fake2.requests[0]) and "review_feedback" not in json.dumps(
        fake2.requests[0])


def test_pydantic_ai_is_imported_only_when_the_llm_executor_runs():
    import subprocess
    import sys

    modules = ["leviathan_lib.worker.llm", "leviathan_lib.worker.attempt", "leviathan_lib.worker.__main__",
               "leviathan_lib.orchestrator.tasks", "leviathan_lib.orchestrator.llm_conn",
               "leviathan_lib.orchestrator.dag_factory"]  # fmt: skip
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
            "print(sorted(m for m in ('pydantic_ai', 'openai', 'anthropic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_azure_openai_speaks_chat_completions_at_the_connection_host(tmp_path, target, monkeypatch):
    monkeypatch.setenv("LEVIATHAN_LLM_API_KEY", API_KEY)
    fake = FakeOpenAI(finishing())
    with FakeServer(fake) as url:
        spec = spec_for(*target, "azure:my-gpt-deployment", url + "/v1", input_usd_per_mtok=2.5,
                        output_usd_per_mtok=10.0)  # fmt: skip
        result = run_attempt(spec, tmp_path / "ws")
    assert result.outcome == "succeeded", result.error
    assert fake.requests[0]["model"] == "my-gpt-deployment" and set(fake.api_keys) == {API_KEY}


def test_bedrock_without_its_sdk_is_refused_before_cloning(tmp_path, target, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("boto3") is not None:
        pytest.skip("boto3 is installed here (it is in the worker image)")
    monkeypatch.delenv("LEVIATHAN_LLM_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    spec = spec_for(*target, "bedrock:us.anthropic.claude-sonnet-4-5-20250929-v1:0", None)
    result = run_attempt(spec, tmp_path / "ws")
    assert result.error.code == "llm_provider_unavailable"  # and not llm_no_api_key: Bedrock needs none
    assert "pydantic-ai-slim[bedrock]" in result.error.message and not (tmp_path / "ws").exists()
