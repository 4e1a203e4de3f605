"""The LLM executor: a model edits the checkout through five bounded tools, and nothing else.

pydantic-ai runs the model-agnostic tool loop (``anthropic:``, ``openai:`` — also any OpenAI-compatible
server through its base URL —, ``azure:`` and ``bedrock:``). What Leviathan guarantees is around it:
the tools of :mod:`leviathan_lib.worker.llm_tools` (the model never runs commands; every write is
checked against the task's scope first; refused calls are answered with the reason and kept as
evidence), one guard around every model request (:class:`_Guard`: deadline, retries with backoff, USD
and token accounting), and a precise error code for every stop:

``llm_no_api_key``, ``llm_unknown_provider``, ``llm_provider_unavailable``, ``llm_price_unknown`` (checked
before cloning); ``llm_auth_failed``, ``llm_unknown_model``, ``llm_rate_limited``, ``llm_quota_exceeded``,
``llm_api_error``, ``llm_api_unreachable``, ``llm_bad_response``, ``llm_max_turns``, ``llm_token_limit``,
``llm_cost_cap``, ``llm_tool_call_limit``, ``llm_tool_errors`` (too many turns of refused or malformed
calls in a row), ``llm_validation_failed`` and ``timeout`` (outcome ``timed_out``); the repository's own
checks, run when the model finishes, add theirs (:mod:`leviathan_lib.worker.checks`) once their output went
back to the model for the allowed rounds.

pydantic-ai and the provider SDKs are imported only here, and only when the llm executor runs.
The transcript is redacted with :mod:`leviathan_lib.core.secrets_scan` and the API key, and bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leviathan_lib.contracts.attempt import LlmExecutorSpec, Usage
from leviathan_lib.core.backlog import Task
from leviathan_lib.core.pricing import PROVIDERS, Price, cost_usd, price_of, split_model
from leviathan_lib.core.scope import Scope
from leviathan_lib.worker.llm_tools import (
    DESCRIPTIONS,
    INPUTS,
    Finish,
    Redactor,
    ToolRefused,
    Tools,
    check_section,
    load_prompt,
    render_prompt,
)
from leviathan_lib.worker.llm_validate import baseline_backlog_problems, check_files

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage, ModelResponse
    from pydantic_ai.models import Model, ModelRequestParameters
    from pydantic_ai.settings import ModelSettings

    from leviathan_lib.worker.checks import Verdict

#: Runs the repository's checks on the change as it is now
#: (:meth:`leviathan_lib.worker.checks.AttemptChecks.run_change`).
ChecksHook = Callable[[], "Verdict"]

API_KEY_ENV = "LEVIATHAN_LLM_API_KEY"
#: What the Anthropic-only executor read; still honoured.
LEGACY_API_KEY_ENV = "ANTHROPIC_API_KEY"
#: Refused or malformed tool calls, turns in a row, before the attempt is given up.
MAX_CONSECUTIVE_TOOL_ERRORS = 3
TRANSCRIPT_MAX_ENTRIES = 300
REFUSALS_MAX = 100
#: The worker ends the loop itself this long before the backend's hard timeout, to still write a result.
DEADLINE_MARGIN_SECONDS = 10.0
#: Backoff of a retried request: 0.5 s, 1 s, 2 s ... capped, unless the provider says Retry-After.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
#: Providers that authenticate without a key: Bedrock uses the worker's AWS role (IRSA on EKS).
KEYLESS = frozenset({"bedrock"})


@dataclass
class LlmFailure:
    code: str
    message: str
    outcome: str = "failed"


@dataclass
class LlmRun:
    """What the loop did: the evidence, the usage and, when it did not finish, why."""

    model: str
    prompt: str
    prompt_sha256: str
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    tool_calls: int = 0
    transcript: list[dict[str, Any]] = field(default_factory=list)
    transcript_dropped: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    summary: str | None = None
    failure: LlmFailure | None = None
    #: Rounds in which a failing check's output went back to the model.
    check_rounds: int = 0

    def usage(self) -> Usage:
        return Usage(model=self.model, turns=self.turns, input_tokens=self.input_tokens,
                     output_tokens=self.output_tokens, cost_usd=self.cost_usd, requests=self.turns,
                     prompt_sha256=self.prompt_sha256)  # fmt: skip

    def executor_summary(self) -> dict[str, Any]:
        return {
            "kind": "llm",
            "model": self.model,
            "prompt": self.prompt,
            "prompt_sha256": self.prompt_sha256,
            "turns": self.turns,
            "retries": self.retries,
            "tool_calls": self.tool_calls,
            "finished": self.summary is not None and self.failure is None,
            "summary": self.summary,
            "written_paths": self.written,
            "refusals": self.refusals,
            "transcript": self.transcript,
            "transcript_dropped": self.transcript_dropped,
            "check_rounds": self.check_rounds,
        }


class _Stop(Exception):
    """Ends the run with an error code; raised from the guard or a tool, it propagates out of pydantic-ai."""

    def __init__(self, code: str, message: str, outcome: str = "failed") -> None:
        super().__init__(message)
        self.code, self.message, self.outcome = code, message, outcome


@dataclass
class Preflight:
    """What the worker checks before cloning: the key it will use and the price it counts with."""

    api_key: str
    price: Price | None
    failure: LlmFailure | None = None


def preflight(spec: LlmExecutorSpec, env: Mapping[str, str]) -> Preflight:
    """Refuse what cannot work before any clone: no key, an unknown provider, no price, no SDK."""
    provider, _ = split_model(spec.model)
    provider = provider or "anthropic"
    api_key = (env.get(API_KEY_ENV) or env.get(LEGACY_API_KEY_ENV) or "").strip()
    if provider not in PROVIDERS:
        return Preflight(api_key, None, LlmFailure(
            "llm_unknown_provider", f"model {spec.model!r}: unknown provider {provider!r}; use one of "
            + ", ".join(f"'{p}:<model>'" for p in PROVIDERS)))  # fmt: skip
    if spec.input_usd_per_mtok is not None and spec.output_usd_per_mtok is not None:
        price: Price | None = Price(spec.input_usd_per_mtok, spec.output_usd_per_mtok)
    else:
        price = price_of(spec.model)
    if price is None:
        return Preflight(api_key, None, LlmFailure(
            "llm_price_unknown", f"no price for {spec.model!r} in leviathan_lib/core/pricing.py: give the target "
            "llm_input_usd_per_mtok and llm_output_usd_per_mtok, so its cost can be capped"))  # fmt: skip
    if not api_key and provider not in KEYLESS and not (provider == "openai" and spec.api_base_url):
        return Preflight(api_key, price, LlmFailure(
            "llm_no_api_key", f"the llm executor needs the model API key in ${API_KEY_ENV} (the password of the "
            "Airflow connection llm_conn_id, or the Kubernetes Secret llm_api_key_secret); it is not set"))  # fmt: skip
    try:
        _sdk_check(provider)
    except ImportError as exc:
        return Preflight(api_key, price, LlmFailure(
            "llm_provider_unavailable", f"the worker has no SDK for {provider!r}: {exc.name or exc}; install "
            f"pydantic-ai-slim[{provider}]"))  # fmt: skip
    return Preflight(api_key, price)


def _sdk_check(provider: str) -> None:
    """Raises ImportError when the provider's SDK is not installed (boto3 is only in the worker image)."""
    import importlib

    importlib.import_module({"anthropic": "anthropic", "openai": "openai", "azure": "openai"}.get(provider, "boto3"))


def _build_model(spec: LlmExecutorSpec, api_key: str) -> tuple[Model, Any]:
    """The pydantic-ai model and its SDK client, with the SDK's own retries off: :class:`_Guard` retries."""
    provider, name = split_model(spec.model)
    base_url = spec.api_base_url
    if provider in (None, "anthropic"):
        from anthropic import AsyncAnthropic
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        client: Any = AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0)
        return AnthropicModel(name, provider=AnthropicProvider(anthropic_client=client)), client
    if provider == "openai":
        from openai import AsyncOpenAI
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        # A self-hosted server (vLLM, Ollama) may take no key, but the SDK insists on one.
        client = AsyncOpenAI(api_key=api_key or "none", base_url=base_url, max_retries=0)
        return OpenAIChatModel(name, provider=OpenAIProvider(openai_client=client)), client
    if provider == "azure":
        from openai import AsyncOpenAI
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        if not base_url:
            raise _Stop("llm_api_error", "azure: the connection's host must be the endpoint "
                        "(https://<resource>.openai.azure.com/openai/v1)")  # fmt: skip
        client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)
        return OpenAIChatModel(name, provider=OpenAIProvider(openai_client=client)), client
    from pydantic_ai.models.bedrock import BedrockConverseModel
    from pydantic_ai.providers.bedrock import BedrockProvider

    bedrock = BedrockProvider(region_name=spec.region, base_url=base_url) if base_url else (
        BedrockProvider(region_name=spec.region))  # fmt: skip
    return BedrockConverseModel(name, provider=bedrock), None


def attempt_deadline(timeout_seconds: int, started: float) -> float:
    """When the loop stops itself: shortly before the backend's hard timeout would kill the worker."""
    margin = min(DEADLINE_MARGIN_SECONDS, timeout_seconds * 0.1)
    return started + timeout_seconds - margin


def _wrapper_base() -> type:
    from pydantic_ai.models.wrapper import WrapperModel

    return WrapperModel


class _State:
    """The attempt's counters and evidence, shared by the guard, the tools and the finish check."""

    def __init__(self, spec: LlmExecutorSpec, price: Price, deadline: float, run: LlmRun) -> None:
        self.spec, self.price, self.deadline, self.run = spec, price, deadline, run
        self.errors_in_row = 0
        #: Problems of the last refused finish, while no other call has been made since.
        self.validation_problems: list[str] = []
        #: The failing checks of the last refused finish, while no other call has been made since.
        self.check_failure: Verdict | None = None

    def stop_for_turns(self) -> _Stop:
        if self.validation_problems:
            return _Stop("llm_validation_failed", "; ".join(self.validation_problems))
        if self.check_failure is not None and self.check_failure.code:
            return _Stop(self.check_failure.code, self.check_failure.message)
        return _Stop("llm_max_turns", f"no finish after {self.spec.max_turns} turns")


def _make_guard(wrapped: Model, state: _State) -> Model:  # noqa: C901 — counts the nested _Guard methods (each small), kept in this closure so pydantic-ai loads lazily
    """Wrap ``wrapped`` so that every request is bounded, retried, counted and priced."""
    from pydantic_ai.exceptions import (
        ModelAPIError,
        ModelConnectionError,
        ModelRateLimitError,
        ModelServerError,
        ModelTimeoutError,
        ModelUnavailableError,
    )
    from pydantic_ai.messages import ERROR_OUTCOMES, BaseToolReturnPart, ModelRequest, ToolCallPart

    retryable = (ModelRateLimitError, ModelServerError, ModelUnavailableError, ModelTimeoutError, TimeoutError)

    class _Guard(_wrapper_base()):  # type: ignore[misc]
        async def request(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                          model_request_parameters: ModelRequestParameters) -> ModelResponse:  # fmt: skip
            self._check_tool_streak(messages)
            spec, run = state.spec, state.run
            if run.turns >= spec.max_turns:
                raise state.stop_for_turns()
            tries = 0
            while True:
                remaining = state.deadline - time.monotonic()
                if remaining <= 0:
                    raise _Stop("timeout", f"the attempt deadline passed after {run.turns} turn(s)", "timed_out")
                timeout = min(spec.request_timeout_seconds, remaining)
                settings: dict[str, Any] = {**(model_settings or {}), "timeout": timeout, "max_tokens": spec.max_tokens}
                try:
                    response = await asyncio.wait_for(
                        self.wrapped.request(messages, settings, model_request_parameters), timeout + 1.0)
                    break
                except _Stop:
                    raise
                except retryable as exc:
                    if tries >= spec.max_retries:
                        raise _classify(exc, tries) from None
                    tries += 1
                    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (tries - 1))
                    delay = max(delay, float(getattr(exc, "retry_after", None) or 0.0))
                    if time.monotonic() + delay >= state.deadline:
                        raise _Stop("timeout", f"the attempt deadline leaves no time to retry: {_describe(exc)}",
                                    "timed_out") from None  # fmt: skip
                    run.retries += 1
                    await asyncio.sleep(delay)
                except (ModelAPIError, ModelConnectionError) as exc:
                    raise _classify(exc, tries) from None
                except Exception as exc:  # noqa: BLE001 - what an SDK raises on a garbled answer
                    raise _Stop("llm_bad_response", f"the model API's answer could not be read: {_describe(exc)}") \
                        from None
            self._account(response, [p for p in response.parts if isinstance(p, ToolCallPart)])
            return response

        def _check_tool_streak(self, messages: list[ModelMessage]) -> None:
            last = messages[-1] if messages else None
            results = [p for p in last.parts if isinstance(p, BaseToolReturnPart)] if isinstance(
                last, ModelRequest) else []  # fmt: skip
            if not results:
                return
            if all(p.outcome in ERROR_OUTCOMES for p in results):
                state.errors_in_row += 1
            else:
                state.errors_in_row = 0
            if state.errors_in_row >= MAX_CONSECUTIVE_TOOL_ERRORS:
                if state.validation_problems or state.check_failure is not None:
                    raise state.stop_for_turns()
                raise _Stop("llm_tool_errors", f"{state.errors_in_row} turns in a row of refused or malformed "
                            "tool calls; last: " + _result_text(results[-1]))  # fmt: skip

        def _account(self, response: ModelResponse, calls: list[Any]) -> None:
            spec, run = state.spec, state.run
            run.turns += 1
            run.input_tokens += int(response.usage.input_tokens or 0)
            run.output_tokens += int(response.usage.output_tokens or 0)
            run.cost_usd = cost_usd(state.price, run.input_tokens, run.output_tokens)
            run.tool_calls += len(calls)
            if run.cost_usd > spec.cost_cap_usd:
                raise _Stop("llm_cost_cap", f"cost ${run.cost_usd:.4f} after {run.turns} turn(s) exceeds the cap "
                            f"of ${spec.cost_cap_usd:.4f}")  # fmt: skip
            total = run.input_tokens + run.output_tokens
            if total > spec.max_total_tokens:
                raise _Stop("llm_token_limit", f"{total} tokens after {run.turns} turn(s) exceed the limit of "
                            f"{spec.max_total_tokens}")  # fmt: skip
            if len(calls) > spec.max_tool_calls_per_turn:
                raise _Stop("llm_tool_call_limit", f"{len(calls)} tool calls in turn {run.turns}; the limit is "
                            f"{spec.max_tool_calls_per_turn} per turn")  # fmt: skip
            if run.tool_calls > spec.max_tool_calls:
                raise _Stop("llm_tool_call_limit", f"{run.tool_calls} tool calls after {run.turns} turn(s); the "
                            f"limit is {spec.max_tool_calls}")  # fmt: skip

    return _Guard(wrapped)


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"HTTP {status}: {text}" if status else f"{type(exc).__name__}: {text}"


def _classify(exc: BaseException, tries: int) -> _Stop:
    """The error code of a request that failed for good."""
    from pydantic_ai import exceptions as e

    after = f" (after {tries} retries)" if tries else ""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, e.ModelAuthenticationError) or status in (401, 403):
        return _Stop("llm_auth_failed", f"the model API refused the key (HTTP {status or 401})")
    if isinstance(exc, e.ModelNotFoundError) or status == 404:
        return _Stop("llm_unknown_model", f"the model API does not know the model: {_describe(exc)}")
    if isinstance(exc, e.ModelQuotaExceededError):
        return _Stop("llm_quota_exceeded", f"the account's quota is exhausted: {_describe(exc)}")
    if isinstance(exc, e.ModelRateLimitError) or status == 429:
        return _Stop("llm_rate_limited", f"the model API kept rate-limiting{after}: {_describe(exc)}")
    if isinstance(exc, (e.ModelTimeoutError, TimeoutError)):
        return _Stop("llm_api_unreachable", f"the model API timed out{after}")
    if isinstance(exc, e.ModelConnectionError):
        return _Stop("llm_api_unreachable", f"cannot reach the model API: {_describe(exc)}")
    if status is None:  # an answer without an HTTP error that could not be read as the API's JSON
        return _Stop("llm_bad_response", f"the model API's answer could not be read: {_describe(exc)}")
    return _Stop("llm_api_error", f"the model API failed{after}: {_describe(exc)}")


def _result_text(part: Any) -> str:
    content = part.content
    if isinstance(content, list):  # pydantic validation errors of the call's arguments
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', ()))) or 'input'}: {d.get('msg')}"
                           for d in content if isinstance(d, dict))  # fmt: skip
        return f"malformed input for {part.tool_name}: {detail}"
    text = content if isinstance(content, str) else json.dumps(content, default=str)
    if part.outcome in ("failed", "retried") and text.lower().startswith("unknown tool"):
        return "unknown tool: " + text
    return text


class _Loop:
    """One attempt's conversation; ``run`` never raises for model behaviour."""

    def __init__(self, spec: LlmExecutorSpec, task: Task, scope: Scope, checkout: Path, *, api_key: str,
                 price: Price, deadline: float, checks: ChecksHook | None = None,
                 check_rounds: int = 0) -> None:  # fmt: skip
        template = load_prompt(spec.prompt)
        self.spec, self.api_key, self.template = spec, api_key, template
        self.checks, self.check_rounds = checks, check_rounds
        self.prompt = render_prompt(template, task, scope, spec)
        self.tools = Tools(checkout, scope)
        self.redact = Redactor(api_key)
        self.backlog_baseline = baseline_backlog_problems(checkout, spec.backlog_path)
        self.run = LlmRun(model=spec.model, prompt=spec.prompt,
                          prompt_sha256=hashlib.sha256(template.encode()).hexdigest())  # fmt: skip
        self.state = _State(spec, price, deadline, self.run)

    def _agent(self, model: Model) -> Any:
        from pydantic_ai import Agent, ModelRetry, Tool, ToolOutput

        state, tools = self.state, self.tools

        def bind(name: str) -> Tool[None]:
            method = getattr(tools, name)

            def call(args: Any) -> str:
                state.validation_problems, state.check_failure = [], None
                try:
                    return str(method(args))
                except ToolRefused as exc:
                    raise ModelRetry(str(exc)) from None
                except OSError as exc:
                    raise ModelRetry(f"{name} failed: {exc.strerror or exc}") from None

            call.__annotations__ = {"args": INPUTS[name], "return": str}
            return Tool(call, name=name, description=DESCRIPTIONS[name], takes_ctx=False)

        def finish(summary: Finish) -> Finish:
            if not tools.written:
                raise ModelRetry("nothing was written; make the change with write_file before finishing")
            problems = check_files(tools.checkout, tools.written, backlog_path=self.spec.backlog_path,
                                   backlog_baseline=self.backlog_baseline)  # fmt: skip
            if problems:
                state.validation_problems = problems
                raise ModelRetry("the changed files do not validate: " + "; ".join(problems))
            self._run_checks()
            return summary

        unbounded = 10 * self.spec.max_turns  # the guard's streak and turn limits stop a run first
        agent: Any = Agent(
            model, output_type=ToolOutput(Finish, name="finish", description=DESCRIPTIONS["finish"]),
            tools=[bind(n) for n in ("list_files", "read_file", "search", "write_file")],
            retries={"tools": unbounded, "output": unbounded},
        )  # fmt: skip
        agent.output_validator(finish)
        return agent

    def _run_checks(self) -> None:
        """The repository's checks on the finished change: a failure goes back to the model as untrusted data
        for at most ``check_rounds`` rounds, then ends the attempt with its code (as does an unfixable one)."""
        from pydantic_ai import ModelRetry

        if self.checks is None:
            return
        verdict = self.checks()
        if verdict.code is None:
            return
        self.state.check_failure = verdict
        if not verdict.retry or self.run.check_rounds >= self.check_rounds:
            raise _Stop(verdict.code, verdict.message, "timed_out" if verdict.code == "timeout" else "failed")
        self.run.check_rounds += 1
        raise ModelRetry(check_section(self.template, verdict.report, self.run.check_rounds, self.check_rounds))

    async def _run(self) -> None:
        from pydantic_ai import capture_run_messages
        from pydantic_ai.exceptions import UnexpectedModelBehavior, UsageLimitExceeded
        from pydantic_ai.usage import UsageLimits

        spec, run = self.spec, self.run
        model, client = _build_model(spec, self.api_key)
        agent = self._agent(_make_guard(model, self.state))
        limits = UsageLimits(request_limit=spec.max_turns + 1, tool_calls_limit=spec.max_tool_calls + 1,
                             total_tokens_limit=spec.max_total_tokens + 1)  # backstops of the guard's checks
        messages: list[Any] = []
        try:
            with capture_run_messages() as messages:
                remaining = max(0.0, self.state.deadline - time.monotonic())
                result = await asyncio.wait_for(agent.run(self.prompt, usage_limits=limits), remaining + 2.0)
            run.summary = self.redact(result.output.summary, limit=None)
        except _Stop as stop:
            run.failure = LlmFailure(stop.code, self.redact(stop.message, limit=2000), stop.outcome)
        except TimeoutError:
            run.failure = LlmFailure("timeout", f"the attempt deadline passed after {run.turns} turn(s)", "timed_out")
        except UsageLimitExceeded as exc:
            run.failure = LlmFailure("llm_max_turns" if run.turns >= spec.max_turns else "llm_tool_call_limit",
                                     self.redact(str(exc)))  # fmt: skip
        except UnexpectedModelBehavior as exc:
            run.failure = LlmFailure("llm_bad_response", self.redact(f"the model misbehaved: {exc}", limit=2000))
        finally:
            if client is not None:
                await client.close()
            self._evidence(messages)
            run.written = list(self.tools.written)

    def _evidence(self, messages: list[ModelMessage]) -> None:
        """Transcript and refusals from the conversation pydantic-ai kept, redacted and bounded."""
        from pydantic_ai.messages import ERROR_OUTCOMES, BaseToolReturnPart, ModelResponse, TextPart, ToolCallPart

        calls: dict[str, ToolCallPart] = {}
        turn = 0
        for message in messages:
            if isinstance(message, ModelResponse):
                turn += 1
                usage = message.usage
                self._note({"turn": turn, "type": "response", "finish_reason": message.finish_reason,
                            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens})  # fmt: skip
                for part in message.parts:
                    if isinstance(part, TextPart):
                        self._note({"turn": turn, "type": "text", "text": self.redact(part.content)})
                    elif isinstance(part, ToolCallPart):
                        calls[part.tool_call_id] = part
                        raw = part.args if isinstance(part.args, str) else json.dumps(part.args, ensure_ascii=False)
                        self._note({"turn": turn, "type": "tool_use", "tool": part.tool_name,
                                    "input": self.redact(raw or "")})  # fmt: skip
                continue
            for answer in message.parts:
                if not isinstance(answer, BaseToolReturnPart):
                    continue
                ok = answer.outcome not in ERROR_OUTCOMES
                text = _result_text(answer)
                self._note({"turn": turn, "type": "tool_result", "tool": answer.tool_name, "ok": ok,
                            "output": self.redact(text)})  # fmt: skip
                if not ok and len(self.run.refusals) < REFUSALS_MAX:
                    call = calls.get(answer.tool_call_id)
                    args = call.args_as_dict() if call is not None and _dict_args(call) else {}
                    path = args.get("path") if isinstance(args.get("path"), str) else None
                    self.run.refusals.append({"turn": turn, "tool": answer.tool_name,
                                              "path": self.redact(path) if path else None,
                                              "reason": self.redact(text)})  # fmt: skip

    def _note(self, entry: dict[str, Any]) -> None:
        if len(self.run.transcript) < TRANSCRIPT_MAX_ENTRIES:
            self.run.transcript.append(entry)
        else:
            self.run.transcript_dropped += 1


def _dict_args(call: Any) -> bool:
    try:
        return isinstance(call.args_as_dict(), dict)
    except Exception:  # noqa: BLE001 - arguments that are not JSON at all
        return False


def run_llm(spec: LlmExecutorSpec, task: Task, scope: Scope, checkout: Path, *, api_key: str, price: Price,
            deadline: float, checks: ChecksHook | None = None, check_rounds: int = 0) -> LlmRun:  # fmt: skip
    """Let the model make the task's change in ``checkout``; see the module doc for the failure codes.

    ``checks`` runs the repository's checks when the model finishes: a failure is sent back to it for at most
    ``check_rounds`` rounds (within every other limit), then ends the attempt with the checks' code.
    """
    import pydantic_ai

    pydantic_ai.BANNER_ENABLED = False  # a worker is never interactive
    loop = _Loop(spec, task, scope, checkout, api_key=api_key, price=price, deadline=deadline, checks=checks,
                 check_rounds=check_rounds)
    try:
        asyncio.run(loop._run())
    except _Stop as stop:  # raised while building the model
        loop.run.failure = LlmFailure(stop.code, loop.redact(stop.message, limit=2000), stop.outcome)
    return loop.run


#: The tool names in the order the model is offered them (``finish`` is pydantic-ai's output tool).
TOOL_NAMES = tuple(INPUTS)
