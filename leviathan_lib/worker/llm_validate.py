"""Type checks for the files a model changed, run before it may finish.

A model's output is text that merely looks right; these checks make sure what reaches a pull request at
least parses as what its name says. They are deliberately syntactic: review is the humans' job.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import yaml
from markdown_it import MarkdownIt

from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.errors import ValidationFailed


def _markdown(text: str) -> str | None:
    MarkdownIt("commonmark").render(text)
    return None


def _yaml(text: str) -> str | None:
    try:
        list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        return f"not valid YAML: {str(exc).splitlines()[0]}"
    return None


def _json(text: str) -> str | None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc}"
    return None


def _python(text: str, path: str) -> str | None:
    try:
        compile(text, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        return f"does not compile: {exc}"
    return None


_CHECKS = {".md": _markdown, ".markdown": _markdown, ".yaml": _yaml, ".yml": _yaml, ".json": _json}


def backlog_problems(text: str, path: str, baseline: list[str]) -> list[str]:
    """Problems the change adds to the backlog (those it already had at the pinned commit are not counted)."""
    try:
        _, problems = parse_backlog(text, source=path)
    except ValidationFailed as exc:
        return [f"{path}: the backlog no longer validates: " + "; ".join(str(p) for p in exc.problems)]
    return [f"{path}: the backlog no longer validates: {p}" for p in map(str, problems) if p not in baseline]


def check_file(checkout: Path, path: str, *, backlog_path: str, backlog_baseline: list[str]) -> list[str]:
    """Problems of one changed file (empty when it is fine, or was deleted)."""
    file = checkout / path
    if not file.exists():
        return []
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return [f"{path}: not UTF-8 text"]
    if "\x00" in text:
        return [f"{path}: contains a NUL byte"]
    if path == backlog_path:
        return backlog_problems(text, path, backlog_baseline)
    suffix = PurePosixPath(path).suffix.lower()
    if suffix == ".py":
        problem = _python(text, path)
    else:
        check = _CHECKS.get(suffix)
        problem = check(text) if check else None
    return [f"{path}: {problem}"] if problem else []


def check_files(checkout: Path, paths: list[str], *, backlog_path: str, backlog_baseline: list[str]) -> list[str]:
    problems: list[str] = []
    for path in paths:
        problems += check_file(checkout, path, backlog_path=backlog_path, backlog_baseline=backlog_baseline)
    return problems


def baseline_backlog_problems(checkout: Path, backlog_path: str) -> list[str]:
    """The backlog's own problems at the pinned commit, so the model is only held to what it changes."""
    try:
        text = (checkout / backlog_path).read_text(encoding="utf-8")
        return [str(p) for p in parse_backlog(text, source=backlog_path)[1]]
    except (OSError, UnicodeDecodeError, ValidationFailed):
        return []
