"""The LLM executor: a model edits the checkout through five bounded tools, and nothing else.

The model never runs commands. It can list, read and search the repository and write whole files, and
every write is checked against the task's scope (the same :func:`leviathan_lib.core.scope.task_scope` the
guardrails use) before anything touches the disk; refused calls are answered with the reason and kept in
the transcript as evidence. The loop stops with a precise error code when a limit is hit:

``llm_no_api_key``, ``llm_auth_failed``, ``llm_api_error``, ``llm_api_unreachable``, ``llm_max_turns``,
``llm_token_limit``, ``llm_cost_cap``, ``llm_tool_errors`` (too many refused or malformed calls in a row),
``llm_validation_failed`` and ``timeout`` (outcome ``timed_out``).

The transcript is redacted with the rules of :mod:`leviathan_lib.core.secrets_scan` and the API key itself,
and cut to a size an XCom can carry.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from leviathan_lib.core.backlog import Task
from leviathan_lib.core.errors import CodedError
from leviathan_lib.core.scope import Scope, ScopeViolation, path_segments
from leviathan_lib.core.secrets_scan import RULES
from leviathan_lib.worker.contract import LlmExecutorSpec, Usage
from leviathan_lib.worker.llm_validate import baseline_backlog_problems, check_files

API_KEY_ENV = "ANTHROPIC_API_KEY"
#: Refused or malformed tool calls in a row before the attempt is given up.
MAX_CONSECUTIVE_TOOL_ERRORS = 3
MAX_READ_BYTES = 100_000
MAX_WRITE_BYTES = 200_000
MAX_LISTED = 500
MAX_SEARCH_HITS = 100
#: Characters kept of each transcript field, and entries kept in all.
TRANSCRIPT_FIELD_CHARS = 500
TRANSCRIPT_MAX_ENTRIES = 300
#: The worker ends the loop itself this long before the backend's hard timeout, to still write a result.
DEADLINE_MARGIN_SECONDS = 10.0

_Path = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class _Input(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ListFiles(_Input):
    path: str = ""


class ReadFile(_Input):
    path: _Path


class Search(_Input):
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    path: str = ""


class WriteFile(_Input):
    path: _Path
    content: str


class Finish(_Input):
    summary: Annotated[str, StringConstraints(min_length=1, max_length=4000)]


_INPUTS: dict[str, type[_Input]] = {
    "list_files": ListFiles, "read_file": ReadFile, "search": Search, "write_file": WriteFile, "finish": Finish,
}  # fmt: skip
_DESCRIPTIONS = {
    "list_files": "List the files under a directory of the repository ('' for the root), recursively.",
    "read_file": "Read a UTF-8 text file of the repository.",
    "search": "Find lines containing a literal string, in the files under a directory ('' for all).",
    "write_file": "Create or replace a file with the complete new content. Only paths in the task's scope.",
    "finish": "End the attempt with a short summary of the change for the reviewer.",
}
TOOLS: list[dict[str, Any]] = [
    {"name": name, "description": _DESCRIPTIONS[name], "input_schema": model.model_json_schema()}
    for name, model in _INPUTS.items()
]


class ToolRefused(CodedError):
    """A tool call that is not carried out; the message goes back to the model."""

    CODE = "tool_refused"


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
    transcript: list[dict[str, Any]] = field(default_factory=list)
    transcript_dropped: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    summary: str | None = None
    failure: LlmFailure | None = None

    def usage(self) -> Usage:
        return Usage(model=self.model, turns=self.turns, input_tokens=self.input_tokens,
                     output_tokens=self.output_tokens, cost_usd=self.cost_usd)  # fmt: skip

    def executor_summary(self) -> dict[str, Any]:
        return {
            "kind": "llm",
            "model": self.model,
            "prompt": self.prompt,
            "prompt_sha256": self.prompt_sha256,
            "turns": self.turns,
            "finished": self.summary is not None and self.failure is None,
            "summary": self.summary,
            "written_paths": self.written,
            "refusals": self.refusals,
            "transcript": self.transcript,
            "transcript_dropped": self.transcript_dropped,
        }


class Redactor:
    """Replaces credential shapes (and the literal API key) with ``[REDACTED:<rule>]``."""

    def __init__(self, *secrets: str) -> None:
        self._secrets = [s for s in secrets if s]

    def __call__(self, text: str, limit: int | None = TRANSCRIPT_FIELD_CHARS) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[REDACTED:api_key]")
        for rule in RULES:
            text = rule.pattern.sub(f"[REDACTED:{rule.name}]", text)
        if limit is not None and len(text) > limit:
            text = text[:limit] + f"... [{len(text) - limit} more characters]"
        return text


def load_prompt(name: str) -> str:
    """The versioned prompt template ``prompts/<name>.md``, without its leading comment."""
    text = resources.files("leviathan_lib.worker").joinpath("prompts", f"{name}.md").read_text(encoding="utf-8")
    if text.startswith("<!--"):
        text = text.split("-->", 1)[1].lstrip("\n")
    return text


def render_prompt(template: str, task: Task, scope: Scope, spec: LlmExecutorSpec) -> str:
    criteria = "\n".join(f"- {c}" for c in task.acceptance_criteria) or "- (none given)"
    return string.Template(template).safe_substitute(
        task_id=task.id,
        title=task.title,
        description=task.description.strip() or "(none given)",
        acceptance_criteria=criteria,
        allowed_paths=", ".join(f"`{'/'.join(p)}/`" for p in scope.prefixes),
        backlog_path=spec.backlog_path,
        max_turns=spec.max_turns,
    )


class Tools:
    """The model's only access to the checkout. Paths are repository-relative and never leave it."""

    def __init__(self, checkout: Path, scope: Scope) -> None:
        self.checkout = checkout.resolve()
        self.scope = scope
        self.written: list[str] = []

    def _resolve(self, path: str, *, root_ok: bool = False) -> tuple[str, Path]:
        if root_ok and path.strip().strip("/.") == "":
            return "", self.checkout
        try:
            parts = path_segments(path)
        except ScopeViolation as exc:
            raise ToolRefused(str(exc)) from None
        target = self.checkout
        for part in parts:
            target = target / part
            if target.is_symlink():
                raise ToolRefused(f"{'/'.join(parts)!r} goes through a symlink")
        return "/".join(parts), target

    def _files(self, base: Path) -> list[Path]:
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != ".git" and not (Path(dirpath) / d).is_symlink())
            found += [Path(dirpath) / f for f in sorted(filenames) if not (Path(dirpath) / f).is_symlink()]
        return found

    def list_files(self, args: ListFiles) -> str:
        name, base = self._resolve(args.path, root_ok=True)
        if not base.is_dir():
            raise ToolRefused(f"{name!r} is not a directory")
        files = [p.relative_to(self.checkout).as_posix() for p in self._files(base)]
        more = f"\n... and {len(files) - MAX_LISTED} more" if len(files) > MAX_LISTED else ""
        return "\n".join(files[:MAX_LISTED]) + more if files else "(no files)"

    def read_file(self, args: ReadFile) -> str:
        name, file = self._resolve(args.path)
        if not file.is_file():
            raise ToolRefused(f"{name!r} is not a file")
        data = file.read_bytes()
        if len(data) > MAX_READ_BYTES:
            raise ToolRefused(f"{name!r} has {len(data)} bytes; the limit is {MAX_READ_BYTES}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolRefused(f"{name!r} is not UTF-8 text") from None

    def search(self, args: Search) -> str:
        _, base = self._resolve(args.path, root_ok=True)
        hits = []
        for file in self._files(base) if base.is_dir() else []:
            try:
                lines = file.read_bytes()[:MAX_READ_BYTES].decode("utf-8").splitlines()
            except UnicodeDecodeError:
                continue
            rel = file.relative_to(self.checkout).as_posix()
            hits += [f"{rel}:{n}: {line[:200]}" for n, line in enumerate(lines, 1) if args.pattern in line]
            if len(hits) >= MAX_SEARCH_HITS:
                break
        return "\n".join(hits[:MAX_SEARCH_HITS]) or "(no matches)"

    def write_file(self, args: WriteFile) -> str:
        reason = self.scope.check(args.path)
        if reason:
            raise ToolRefused(f"write refused: {reason}")
        name, file = self._resolve(args.path)
        data = args.content.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise ToolRefused(f"write refused: {len(data)} bytes; the limit is {MAX_WRITE_BYTES}")
        if file.is_dir():
            raise ToolRefused(f"write refused: {name!r} is a directory")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        if name not in self.written:
            self.written.append(name)
        return f"wrote {name} ({len(data)} bytes)"


class _Loop:
    """One tool-use conversation; ``run`` fills ``self.run`` and never raises for model behaviour."""

    def __init__(self, spec: LlmExecutorSpec, task: Task, scope: Scope, checkout: Path, api_key: str,  # noqa: PLR0917 — rewritten on pydantic-ai (issue 17)
                 deadline: float) -> None:  # fmt: skip
        template = load_prompt(spec.prompt)
        self.spec, self.api_key, self.deadline = spec, api_key, deadline
        self.prompt = render_prompt(template, task, scope, spec)
        self.tools = Tools(checkout, scope)
        self.redact = Redactor(api_key)
        self.backlog_baseline = baseline_backlog_problems(checkout, spec.backlog_path)
        #: Problems of the last refused finish, while no other call has been made since.
        self.validation_problems: list[str] = []
        self.run = LlmRun(model=spec.model, prompt=spec.prompt,
                          prompt_sha256=hashlib.sha256(template.encode()).hexdigest())  # fmt: skip

    def note(self, entry: dict[str, Any]) -> None:
        if len(self.run.transcript) < TRANSCRIPT_MAX_ENTRIES:
            self.run.transcript.append(entry)
        else:
            self.run.transcript_dropped += 1

    def fail(self, code: str, message: str, outcome: str = "failed") -> LlmRun:
        self.run.failure = LlmFailure(code, self.redact(message, limit=2000), outcome)
        self.run.written = list(self.tools.written)
        return self.run

    def _client(self):
        import anthropic

        return anthropic.Anthropic(api_key=self.api_key, base_url=self.spec.api_base_url, max_retries=2)

    def _call(self, client, messages: list[dict[str, Any]]):
        import anthropic

        remaining = self.deadline - time.monotonic()
        try:
            return client.messages.create(
                model=self.spec.model, max_tokens=self.spec.max_tokens, messages=messages, tools=TOOLS,
                timeout=max(1.0, remaining),
            )  # fmt: skip
        except anthropic.APITimeoutError:
            if time.monotonic() >= self.deadline:
                raise _Stop("timeout", "the model did not answer before the attempt deadline", "timed_out") from None
            raise _Stop("llm_api_unreachable", "the model API timed out") from None
        except anthropic.APIConnectionError as exc:
            raise _Stop("llm_api_unreachable", f"cannot reach the model API: {exc}") from None
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            raise _Stop("llm_auth_failed", f"the model API refused the key (HTTP {exc.status_code})") from None
        except anthropic.APIStatusError as exc:
            raise _Stop("llm_api_error", f"the model API answered HTTP {exc.status_code}: {exc.message}") from None

    def _account(self, response) -> None:
        usage = response.usage
        self.run.turns += 1
        self.run.input_tokens += int(usage.input_tokens or 0)
        self.run.output_tokens += int(usage.output_tokens or 0)
        spec = self.spec
        cost = (self.run.input_tokens * spec.input_usd_per_mtok + self.run.output_tokens * spec.output_usd_per_mtok)
        self.run.cost_usd = round(cost / 1_000_000, 6)
        self.note({"turn": self.run.turns, "type": "response", "stop_reason": response.stop_reason,
                   "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens})  # fmt: skip
        if self.run.cost_usd > spec.cost_cap_usd:
            raise _Stop("llm_cost_cap", f"cost ${self.run.cost_usd:.4f} after {self.run.turns} turn(s) exceeds the "
                        f"cap of ${spec.cost_cap_usd:.4f}")  # fmt: skip
        total = self.run.input_tokens + self.run.output_tokens
        if total > spec.max_total_tokens:
            raise _Stop("llm_token_limit", f"{total} tokens after {self.run.turns} turn(s) exceed the limit of "
                        f"{spec.max_total_tokens}")  # fmt: skip

    def _tool(self, name: str, raw: Any) -> tuple[str, bool]:
        """Run one tool call: (answer, ok). Finishing sets ``run.summary``."""
        model = _INPUTS.get(name)
        if model is None:
            raise ToolRefused(f"unknown tool {name!r}; the tools are {', '.join(_INPUTS)}")
        try:
            args = model.model_validate(raw)
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
            raise ToolRefused(f"malformed input for {name}: {detail}") from None
        if isinstance(args, Finish):
            if not self.tools.written:
                raise ToolRefused("nothing was written; make the change with write_file before finishing")
            problems = check_files(self.tools.checkout, self.tools.written, backlog_path=self.spec.backlog_path,
                                   backlog_baseline=self.backlog_baseline)  # fmt: skip
            if problems:
                self.validation_problems = problems
                raise ToolRefused("the changed files do not validate: " + "; ".join(problems))
            self.run.summary = self.redact(args.summary, limit=None)
            return "finished", True
        return getattr(self.tools, name)(args), True

    def loop(self) -> LlmRun:  # noqa: C901 — rewritten on pydantic-ai (issue 17)
        client = self._client()
        messages: list[dict[str, Any]] = [{"role": "user", "content": self.prompt}]
        errors_in_row = 0
        try:
            while True:
                if self.run.turns >= self.spec.max_turns:
                    if self.validation_problems:
                        raise _Stop("llm_validation_failed", "; ".join(self.validation_problems))
                    raise _Stop("llm_max_turns", f"no finish after {self.spec.max_turns} turns")
                if time.monotonic() >= self.deadline:
                    raise _Stop("timeout", f"the attempt deadline passed after {self.run.turns} turn(s)", "timed_out")
                response = self._call(client, messages)
                self._account(response)
                turn = self.run.turns
                content, results = [], []
                for block in response.content:
                    if block.type == "text":
                        content.append({"type": "text", "text": block.text})
                        self.note({"turn": turn, "type": "text", "text": self.redact(block.text)})
                    elif block.type == "tool_use":
                        content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
                        results.append(self._answer(turn, block))
                messages.append({"role": "assistant", "content": content or [{"type": "text", "text": "(empty)"}]})
                if self.run.summary is not None:
                    self.run.written = list(self.tools.written)
                    return self.run
                if not results:
                    messages.append({"role": "user", "content": "Use the tools to make the change, then call finish."})
                    continue
                messages.append({"role": "user", "content": results})
                if all(r.get("is_error") for r in results):
                    errors_in_row += 1
                    if errors_in_row >= MAX_CONSECUTIVE_TOOL_ERRORS and self.validation_problems:
                        raise _Stop("llm_validation_failed", "; ".join(self.validation_problems))
                    if errors_in_row >= MAX_CONSECUTIVE_TOOL_ERRORS:
                        raise _Stop("llm_tool_errors", f"{errors_in_row} turns in a row of refused or malformed "
                                    "tool calls; last: " + results[-1]["content"])  # fmt: skip
                else:
                    errors_in_row = 0
        except _Stop as stop:
            return self.fail(stop.code, stop.message, stop.outcome)

    def _answer(self, turn: int, block) -> dict[str, Any]:
        raw = block.input
        shown = json.dumps(raw, ensure_ascii=False) if not isinstance(raw, str) else raw
        self.note({"turn": turn, "type": "tool_use", "tool": block.name, "input": self.redact(shown)})
        self.validation_problems = []
        try:
            output, _ = self._tool(block.name, raw)
            error = False
        except ToolRefused as exc:
            output, error = str(exc), True
            path = raw.get("path") if isinstance(raw, dict) and isinstance(raw.get("path"), str) else None
            self.run.refusals.append({"turn": turn, "tool": block.name, "path": self.redact(path) if path else None,
                                      "reason": self.redact(output)})  # fmt: skip
        except OSError as exc:
            output, error = f"{block.name} failed: {exc.strerror or exc}", True
        self.note({"turn": turn, "type": "tool_result", "tool": block.name, "ok": not error,
                   "output": self.redact(output)})  # fmt: skip
        answer: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.id, "content": output}
        if error:
            answer["is_error"] = True
        return answer


class _Stop(Exception):
    def __init__(self, code: str, message: str, outcome: str = "failed") -> None:
        super().__init__(message)
        self.code, self.message, self.outcome = code, message, outcome


def attempt_deadline(timeout_seconds: int, started: float) -> float:
    """When the loop stops itself: shortly before the backend's hard timeout would kill the worker."""
    margin = min(DEADLINE_MARGIN_SECONDS, timeout_seconds * 0.1)
    return started + timeout_seconds - margin


def run_llm(spec: LlmExecutorSpec, task: Task, scope: Scope, checkout: Path, *, api_key: str,
            deadline: float) -> LlmRun:  # fmt: skip
    """Let the model make the task's change in ``checkout``; see the module doc for the failure codes."""
    return _Loop(spec, task, scope, checkout, api_key, deadline).loop()
