"""The model's only access to the checkout: five tools, each bounded, every write checked first.

Pure Python with no model SDK, so the escape battery can drive the tools directly and every provider
goes through the same checks. Paths are repository-relative; a write is checked against the task's
scope (:func:`leviathan_lib.core.scope.task_scope`, as the guardrails use it) before anything touches
the disk, and a refusal raises :class:`ToolRefused` with the reason the model is told.
"""

from __future__ import annotations

import os
import string
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from leviathan_lib.contracts.attempt import LlmExecutorSpec
from leviathan_lib.core.backlog import Task
from leviathan_lib.core.errors import CodedError
from leviathan_lib.core.scope import Scope, ScopeViolation, path_segments
from leviathan_lib.core.secrets_scan import RULES

MAX_READ_BYTES = 100_000
MAX_WRITE_BYTES = 200_000
MAX_LISTED = 500
MAX_SEARCH_HITS = 100
#: Characters kept of each transcript field.
TRANSCRIPT_FIELD_CHARS = 500

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


INPUTS: dict[str, type[_Input]] = {
    "list_files": ListFiles, "read_file": ReadFile, "search": Search, "write_file": WriteFile, "finish": Finish,
}  # fmt: skip
DESCRIPTIONS = {
    "list_files": "List the files under a directory of the repository ('' for the root), recursively.",
    "read_file": "Read a UTF-8 text file of the repository.",
    "search": "Find lines containing a literal string, in the files under a directory ('' for all).",
    "write_file": "Create or replace a file with the complete new content. Only paths in the task's scope.",
    "finish": "End the attempt with a short summary of the change for the reviewer.",
}

class ToolRefused(CodedError):
    """A tool call that is not carried out; the message goes back to the model."""

    CODE = "tool_refused"


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
    return string.Template(prompt_body(template)).safe_substitute(
        task_id=task.id,
        title=task.title,
        description=task.description.strip() or "(none given)",
        acceptance_criteria=criteria,
        allowed_paths=", ".join(f"`{'/'.join(p)}/`" for p in scope.prefixes),
        backlog_path=spec.backlog_path,
        max_turns=spec.max_turns,
        review_feedback=_review_section(template, spec.review_feedback),
    )


#: Where a template (edit-v3 on) defines its review-feedback section; the prompt body ends there.
FEEDBACK_MARKER = "<!-- review_feedback -->"
_DELIMITER = "REVIEWER_FEEDBACK"
#: Where a template (edit-v4 on) defines the message carrying failing checks' output; it follows the feedback.
CHECKS_MARKER = "<!-- check_output -->"
_CHECKS_DELIMITER = "CHECK_OUTPUT"


def prompt_body(template: str) -> str:
    """The template without its review-feedback and check-output section definitions."""
    return template.split(FEEDBACK_MARKER, 1)[0].split(CHECKS_MARKER, 1)[0]


def check_section(template: str, output: str, round_: int, rounds: int) -> str:
    """The message carrying failing checks' output back to the model, worded by the template itself.

    The output is untrusted (the repository's code wrote it): it is delimited the way review feedback is,
    and cannot close the block early (the delimiter word is defused in it).
    """
    text = output.strip().replace(_CHECKS_DELIMITER, "CHECK OUTPUT")
    if CHECKS_MARKER not in template:
        return f"The repository's checks failed on your change (round {round_} of {rounds}):\n\n{text}\n"
    section = template.split(CHECKS_MARKER, 1)[1].lstrip("\n")
    return string.Template(section).safe_substitute(output=text, round=round_, rounds=rounds)


def _review_section(template: str, feedback: str | None) -> str:
    """The review-feedback section (empty without feedback), worded by the template itself.

    The reviewer's text cannot close the delimited block early: the delimiter word is defused in it.
    """
    if not feedback or not feedback.strip():
        return ""
    if FEEDBACK_MARKER in template:
        section = template.split(FEEDBACK_MARKER, 1)[1].split(CHECKS_MARKER, 1)[0].lstrip("\n")
        text = feedback.strip().replace(_DELIMITER, "REVIEWER FEEDBACK")
        return string.Template(section).safe_substitute(feedback=text)
    return ("## Review feedback\n\nThis attempt continues a pull request. A reviewer asked for the following; "
            "address it:\n\n" + feedback.strip() + "\n")


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
