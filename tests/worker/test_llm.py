"""The LLM executor against a loopback fake of the Messages API: every escape attempt refused and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leviathan_lib.contracts.attempt import AttemptResult, AttemptSpec
from leviathan_lib.worker.attempt import run_attempt
from leviathan_lib.worker.backends.local import run_local_worker
from leviathan_lib.worker.llm import TOOL_NAMES
from leviathan_lib.worker.llm_tools import load_prompt
from tests.fake_anthropic import ApiError, FakeAnthropic, FakeServer, Turn, text, tool
from tests.worker.test_attempt import BACKLOG, apply_on_fresh_clone, git, make_target_repo
from tests.worker.test_llm_providers import spec_for

API_KEY = "sk-ant-test0000000000000000000000000000"  # the shape of a real key, so redaction is exercised
GOOD_DOC = "# Quickstart\n\nInstall, then run `leviathan plan`.\n"


@pytest.fixture
def target(tmp_path: Path) -> tuple[Path, str]:
    return make_target_repo(tmp_path)


def llm_spec(repo: Path, sha: str, base_url: str, **executor) -> AttemptSpec:
    """The Anthropic-shaped spec these tests use: :func:`spec_for` with the model and prices they assume."""
    return spec_for(repo, sha, "claude-test", base_url,
                    **{"input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0, **executor})


def attempt(tmp_path: Path, target, fake: FakeAnthropic, monkeypatch, **executor) -> AttemptResult:
    repo, sha = target
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    with FakeServer(fake) as url:
        return run_attempt(llm_spec(repo, sha, url, **executor), tmp_path / "ws")


def text_of(content: str | list[dict]) -> str:
    """The text of a Messages API content field, a string or a list of blocks (tool results included)."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") if b.get("type") == "text" else text_of(b.get("content", "")) for b in content)


def errors_of(result: AttemptResult) -> list[dict]:
    return [e for e in result.executor["transcript"] if e["type"] == "tool_result" and not e["ok"]]


def test_scripted_change_is_read_written_validated_and_applies(tmp_path, target, monkeypatch):
    fake = FakeAnthropic([
        Turn([text("Looking around."), tool("list_files", {"path": "docs"})]),
        Turn([tool("read_file", {"path": "docs/index.md"}), tool("search", {"pattern": "Docs"})]),
        Turn([tool("write_file", {"path": "docs/quickstart.md", "content": GOOD_DOC})]),
        Turn([tool("finish", {"summary": "Added the quickstart."})], input_tokens=1000, output_tokens=200),
    ])  # fmt: skip
    result = attempt(tmp_path, target, fake, monkeypatch)
    assert result.outcome == "succeeded", result.error
    assert result.changed_paths == ["docs/quickstart.md"]
    clone = apply_on_fresh_clone(tmp_path, target[0], target[1], result.patch)
    assert (clone / "docs/quickstart.md").read_text() == GOOD_DOC
    usage = result.usage
    assert (usage.turns, usage.input_tokens, usage.output_tokens) == (4, 1300, 350)
    assert usage.cost_usd == pytest.approx((1300 * 3 + 350 * 15) / 1e6)
    summary = result.executor
    assert summary["kind"] == "llm" and summary["finished"] and summary["summary"] == "Added the quickstart."
    assert summary["prompt"] == "edit-v4" and summary["refusals"] == []
    # What the model saw: the tools, the task's description and criteria from the versioned template.
    first = fake.requests[0]
    assert [t["name"] for t in first["tools"]] == ["list_files", "read_file", "search", "write_file", "finish"]
    prompt = text_of(first["messages"][0]["content"])
    assert "Write docs/quickstart.md for new users." in prompt and "explains the first command" in prompt
    assert "`docs/`" in prompt and "$" not in prompt.replace("$ ", "")
    listing = text_of(fake.requests[1]["messages"][-1]["content"][0]["content"])
    assert listing == "docs/index.md"
    search = text_of(fake.requests[2]["messages"][-1]["content"][1]["content"])
    assert "docs/index.md:1: # Docs" in search
    assert set(fake.api_keys) == {API_KEY}


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("README.md", "outside the allowed prefixes"),
        (".leviathan/recipes.yaml", "outside the allowed prefixes"),  # in the target's prefixes, not the task's
        ("../escape.md", "'..' segment"),
        ("/etc/passwd", "absolute path"),
        ("docs2/a.md", "outside the allowed prefixes"),
        (".git/config", "inside .git"),
    ],
)
def test_writes_outside_the_task_scope_are_refused_and_recorded(tmp_path, target, monkeypatch, path, why):
    fake = FakeAnthropic([
        Turn([tool("write_file", {"path": path, "content": "pwned\n"})]),
        Turn([tool("write_file", {"path": "docs/quickstart.md", "content": GOOD_DOC})]),
        Turn([tool("finish", {"summary": "done"})]),
    ])  # fmt: skip
    result = attempt(tmp_path, target, fake, monkeypatch)
    assert result.outcome == "succeeded", result.error
    assert result.changed_paths == ["docs/quickstart.md"]
    [refusal] = result.executor["refusals"]
    assert refusal["tool"] == "write_file" and refusal["path"] == path and why in refusal["reason"]
    assert not (tmp_path / "escape.md").exists()
    assert "write refused" in text_of(fake.requests[1]["messages"][-1]["content"][0]["content"])
    assert fake.requests[1]["messages"][-1]["content"][0]["is_error"] is True


def test_symlink_in_scope_cannot_be_followed_out(tmp_path, monkeypatch):
    work = tmp_path / "src"
    repo, sha = make_target_repo(tmp_path)
    (work / "docs" / "out").symlink_to(tmp_path)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "symlink", cwd=work)
    git("push", "--quiet", str(repo), "HEAD:main", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work).strip()
    fake = FakeAnthropic([
        Turn([tool("write_file", {"path": "docs/out/escaped.md", "content": "x\n"}),
              tool("read_file", {"path": "docs/out/src/README.md"})]),
        Turn([tool("finish", {"summary": "done"})]),
        Turn([tool("finish", {"summary": "done"})]),
    ])  # fmt: skip
    result = attempt(tmp_path, (repo, sha), fake, monkeypatch)
    assert not (tmp_path / "escaped.md").exists()
    assert [r["tool"] for r in result.executor["refusals"]][:2] == ["write_file", "read_file"]
    assert all("symlink" in r["reason"] for r in result.executor["refusals"][:2])
    # Nothing was written, so finishing is refused too, three turns in a row: the attempt gives up.
    assert result.outcome == "failed" and result.error.code == "llm_tool_errors"
    assert result.patch == ""


def test_a_model_that_loops_forever_stops_at_max_turns(tmp_path, target, monkeypatch):
    fake = FakeAnthropic([Turn([tool("list_files", {"path": ""})])], repeat_last=True)
    result = attempt(tmp_path, target, fake, monkeypatch, max_turns=5)
    assert result.outcome == "failed" and result.error.code == "llm_max_turns"
    assert "no finish after 5 turns" in result.error.message
    assert len(fake.requests) == 5 and result.usage.turns == 5 and result.patch == ""


def test_a_model_that_only_talks_is_nudged_then_stopped(tmp_path, target, monkeypatch):
    fake = FakeAnthropic([Turn([text("I think the docs are fine.")])], repeat_last=True)
    result = attempt(tmp_path, target, fake, monkeypatch, max_turns=3)
    assert result.error.code == "llm_max_turns"
    assert "tool call" in text_of(fake.requests[1]["messages"][-1]["content"])


@pytest.mark.parametrize(
    "bad",
    [
        tool("write_file", {"path": "docs/a.md"}),  # missing content
        tool("write_file", {"path": 7, "content": "x"}),  # wrong type
        tool("read_file", {"path": "docs/index.md", "mode": "rb"}),  # unknown field
        tool("rm_rf", {"path": "docs"}),  # no such tool
        tool("write_file", "docs/a.md"),  # not an object
    ],
)
def test_malformed_tool_input_is_refused_and_repeated_malformed_input_fails(tmp_path, target, monkeypatch, bad):
    fake = FakeAnthropic([Turn([bad])], repeat_last=True)
    result = attempt(tmp_path, target, fake, monkeypatch)
    assert result.outcome == "failed" and result.error.code == "llm_tool_errors"
    assert len(fake.requests) == 3
    assert len(errors_of(result)) == 3
    assert all(("malformed input" in e["output"]) or ("unknown tool" in e["output"]) for e in errors_of(result))
    assert result.executor["refusals"][0]["tool"] == bad["name"]


def test_one_malformed_call_is_answered_and_the_model_recovers(tmp_path, target, monkeypatch):
    fake = FakeAnthropic([
        Turn([tool("write_file", {"path": "docs/quickstart.md"})]),
        Turn([tool("write_file", {"path": "docs/quickstart.md", "content": GOOD_DOC})]),
        Turn([tool("finish", {"summary": "done"})]),
    ])  # fmt: skip
    result = attempt(tmp_path, target, fake, monkeypatch)
    assert result.outcome == "succeeded"
    answer = text_of(fake.requests[1]["messages"][-1]["content"][0]["content"])
    assert '"loc":["content"]' in answer and "Field required" in answer
    assert "malformed input for write_file: content: Field required" in result.executor["refusals"][0]["reason"]


def test_exceeding_the_cost_cap_stops_before_running_the_tools(tmp_path, target, monkeypatch):
    fake = FakeAnthropic([
        Turn([tool("read_file", {"path": "docs/index.md"})], input_tokens=10_000, output_tokens=100),
        Turn([tool("write_file", {"path": "docs/quickstart.md", "content": GOOD_DOC})],
             input_tokens=200_000, output_tokens=10_000),
        Turn([tool("finish", {"summary": "done"})]),
    ])  # fmt: skip
    result = attempt(tmp_path, target, fake, monkeypatch, cost_cap_usd=0.5)
    assert result.outcome == "failed" and result.error.code == "llm_cost_cap"
    assert "exceeds the cap of $0.5000" in result.error.message
    assert result.usage.cost_usd == pytest.approx((210_000 * 3 + 10_100 * 15) / 1e6)
    assert result.executor["written_paths"] == [] and result.patch == ""
    assert len(fake.requests) == 2


def test_token_limit(tmp_path, target, monkeypatch):
    fake = FakeAnthropic([Turn([tool("list_files", {})], input_tokens=900, output_tokens=200)], repeat_last=True)
    result = attempt(tmp_path, target, fake, monkeypatch, max_total_tokens=2000)
    assert result.error.code == "llm_token_limit" and result.usage.turns == 2


def test_invalid_files_cannot_finish_until_fixed(tmp_path, target, monkeypatch):
    fake = FakeAnthropic([
        Turn([tool("write_file", {"path": "docs/data.json", "content": "{not json"}),
              tool("write_file", {"path": "docs/conf.yaml", "content": "a: [1, 2"}),
              tool("write_file", {"path": "docs/tool.py", "content": "def f(:\n"})]),
        Turn([tool("finish", {"summary": "done"})]),
        Turn([tool("write_file", {"path": "docs/data.json", "content": "{}"}),
              tool("write_file", {"path": "docs/conf.yaml", "content": "a: [1, 2]\n"}),
              tool("write_file", {"path": "docs/tool.py", "content": "def f():\n    return 1\n"})]),
        Turn([tool("finish", {"summary": "fixed"})]),
    ])  # fmt: skip
    result = attempt(tmp_path, target, fake, monkeypatch)
    assert result.outcome == "succeeded", result.error
    refused = result.executor["refusals"][0]["reason"]
    assert "docs/data.json: not valid JSON" in refused and "docs/conf.yaml: not valid YAML" in refused
    assert "docs/tool.py: does not compile" in refused
    assert sorted(result.changed_paths) == ["docs/conf.yaml", "docs/data.json", "docs/tool.py"]


def test_a_broken_backlog_is_never_delivered(tmp_path, target, monkeypatch):
    broken = BACKLOG + "  - title: no id\n"
    fake = FakeAnthropic([
        Turn([tool("write_file", {"path": ".leviathan/backlog.yaml", "content": broken})]),
        Turn([tool("finish", {"summary": "done"})]),
    ], repeat_last=True)  # fmt: skip
    repo, sha = target
    spec = llm_spec(repo, sha, "http://unused")
    task = {**spec.task, "allowed_paths": [".leviathan/", "docs/"]}
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    with FakeServer(fake) as url:
        data = spec.model_dump()
        data["task"], data["executor"]["api_base_url"] = task, url
        result = run_attempt(AttemptSpec.model_validate(data), tmp_path / "ws")
    assert result.outcome == "failed" and result.error.code == "llm_validation_failed"
    assert "the backlog no longer validates" in result.error.message and result.patch == ""


def test_no_api_key_fails_before_cloning(tmp_path, target, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    fake = FakeAnthropic([])
    with FakeServer(fake) as url:
        result = run_attempt(llm_spec(*target, url), tmp_path / "ws")
    assert result.outcome == "failed" and result.error.code == "llm_no_api_key"
    assert "LEVIATHAN_LLM_API_KEY" in result.error.message
    assert fake.requests == [] and not (tmp_path / "ws").exists()


@pytest.mark.parametrize(
    ("error", "code"),
    [(ApiError(401, "invalid x-api-key"), "llm_auth_failed"), (ApiError(400, "bad model"), "llm_api_error")],
)
def test_model_api_errors_fail_with_a_precise_code(tmp_path, target, monkeypatch, error, code):
    result = attempt(tmp_path, target, FakeAnthropic([error]), monkeypatch)
    assert result.outcome == "failed" and result.error.code == code and result.patch == ""


def test_unreachable_api(tmp_path, target, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    with FakeServer(FakeAnthropic([])) as url:
        pass  # the port is closed again
    result = run_attempt(llm_spec(*target, url), tmp_path / "ws")
    assert result.error.code == "llm_api_unreachable"


def test_task_with_a_recipe_is_refused_by_the_llm_executor(tmp_path, target, monkeypatch):
    spec = llm_spec(*target, "http://127.0.0.1:9")
    data = spec.model_dump()
    data["task"]["recipe"] = "write-quickstart"
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    result = run_attempt(AttemptSpec.model_validate(data), tmp_path / "ws")
    assert result.error.code == "invalid_spec"


def test_transcript_is_redacted_and_bounded(tmp_path, target, monkeypatch):
    leaky = f"token ghp_{'a' * 36} and key {API_KEY}"
    fake = FakeAnthropic([
        Turn([text(leaky), tool("write_file", {"path": "docs/quickstart.md", "content": GOOD_DOC + "x" * 5000})]),
        Turn([tool("finish", {"summary": f"used {API_KEY}"})]),
    ])  # fmt: skip
    result = attempt(tmp_path, target, fake, monkeypatch)
    dumped = json.dumps(result.executor)
    assert API_KEY not in dumped and "ghp_aaaa" not in dumped
    assert "[REDACTED:github_token]" in dumped and "[REDACTED:api_key]" in dumped
    assert all(len(e.get("input", "")) < 600 for e in result.executor["transcript"])


def test_subprocess_worker_gets_only_the_model_key(tmp_path, target):
    fake = FakeAnthropic([
        Turn([tool("write_file", {"path": "docs/quickstart.md", "content": GOOD_DOC})]),
        Turn([tool("finish", {"summary": "done"})]),
    ])  # fmt: skip
    repo, sha = target
    with FakeServer(fake) as url:
        no_key = run_local_worker(llm_spec(repo, sha, url))
        result = run_local_worker(llm_spec(repo, sha, url), model_api_key=API_KEY)
    assert no_key.error.code == "llm_no_api_key"
    assert result.outcome == "succeeded", result.error
    assert fake.api_keys == [API_KEY, API_KEY]


def test_the_prompt_template_is_versioned_and_complete():
    for version in ("edit-v1", "edit-v2", "edit-v3", "edit-v4"):  # old versions stay, so earlier results reproduce
        template = load_prompt(version)
        for name in ("$task_id", "$title", "$description", "$acceptance_criteria", "$allowed_paths"):
            assert name in template
        assert not template.startswith("<!--")
    assert "$review_feedback" in load_prompt("edit-v2")
    body, section = load_prompt("edit-v3").split("<!-- review_feedback -->")
    assert "$review_feedback" in body and "$feedback" in section and "untrusted data" in section
    # edit-v4 adds the message carrying failing checks' output, delimited like the feedback.
    body, rest = load_prompt("edit-v4").split("<!-- review_feedback -->")
    feedback, checks = rest.split("<!-- check_output -->")
    assert "$review_feedback" in body and "$feedback" in feedback and "$output" not in feedback
    assert "<<<CHECK_OUTPUT\n$output\nCHECK_OUTPUT>>>" in checks and "untrusted data" in checks
    assert set(TOOL_NAMES) == {"list_files", "read_file", "search", "write_file", "finish"}
