"""Traversal-safe path scope checks shared by the guardrails, the worker and the PR task.

Paths are POSIX paths relative to the repository root. Prefixes match whole path segments, so
``docs/`` admits ``docs/a.md`` but not ``docs2/a.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from leviathan_lib.core.errors import CodedError


class ScopeViolation(CodedError, ValueError):
    """A path that is unsafe or outside the allowed prefixes."""

    CODE = "scope_violation"


#: Control characters (below U+0020); one regex search instead of a per-character loop.
_CONTROL_CHAR = re.compile(r"[\x00-\x1f]")


def path_segments(path: str) -> tuple[str, ...]:
    """Split a repository-relative path into segments, rejecting anything ambiguous or unsafe."""
    if not isinstance(path, str):
        raise ScopeViolation(f"path must be a string, got {type(path).__name__}")
    if path.strip() == "":
        raise ScopeViolation("empty path")
    if "\x00" in path:
        raise ScopeViolation(f"NUL byte in path {path!r}")
    if "\\" in path:
        raise ScopeViolation(f"backslash in path {path!r}")
    if path.startswith("/"):
        raise ScopeViolation(f"absolute path {path!r}")
    if _CONTROL_CHAR.search(path):
        raise ScopeViolation(f"control character in path {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise ScopeViolation(f"path {path!r} names the repository root")
    if ".." in parts:
        raise ScopeViolation(f"'..' segment in path {path!r}")
    if ".git" in parts:
        raise ScopeViolation(f"path {path!r} is inside .git")
    return tuple(parts)


def normalize(path: str) -> str:
    return "/".join(path_segments(path))


def _within(segments: tuple[str, ...], prefix: tuple[str, ...]) -> bool:
    return segments[: len(prefix)] == prefix


@dataclass(frozen=True)
class Scope:
    """A set of allowed prefixes, pre-split for cheap repeated checks."""

    prefixes: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, prefixes: Iterable[str]) -> Scope:
        return cls(tuple(path_segments(p) for p in prefixes))

    def contains(self, path: str) -> bool:
        """True when ``path`` is safe and lies under one of the prefixes."""
        try:
            segments = path_segments(path)
        except ScopeViolation:
            return False
        return any(_within(segments, p) for p in self.prefixes)

    def check(self, path: str) -> str | None:
        """None when allowed, otherwise a human-readable reason."""
        try:
            segments = path_segments(path)
        except ScopeViolation as exc:
            return str(exc)
        if not any(_within(segments, p) for p in self.prefixes):
            allowed = ", ".join("/".join(p) + "/" for p in self.prefixes) or "nothing"
            return f"path {path!r} is outside the allowed prefixes ({allowed})"
        return None


def task_scope(task_allowed_paths: Iterable[str], target_prefixes: Iterable[str]) -> Scope:
    """The effective scope of a task: its own ``allowed_paths`` entries that the target admits."""
    target = Scope.of(target_prefixes)
    return Scope(tuple(path_segments(p) for p in task_allowed_paths if target.contains(p)))


#: File names that change how git treats other files (filters, diff drivers, submodules): protected anywhere.
PROTECTED_NAMES = (
    ".gitattributes", ".gitmodules",
    # Who must review (GitHub reads it at the root, in docs/ and in .github/; GitLab in .gitlab/ too).
    "codeowners",
    # Pipelines and bots that run code or open PRs on the forge or on developers' machines.
    ".gitlab-ci.yml", "jenkinsfile", ".travis.yml", "azure-pipelines.yml", "bitbucket-pipelines.yml",
    ".pre-commit-config.yaml", "renovate.json", "renovate.json5", ".renovaterc", ".renovaterc.json",
    "dependabot.yml", "dependabot.yaml",
)
#: Directories that run code on the forge (workflows, actions, CI configs): protected anywhere in the tree.
PROTECTED_DIRS = (".github", ".gitlab", ".circleci", ".buildkite")


@dataclass(frozen=True)
class Protected:
    """Paths no attempt may write, even under an allowed prefix.

    ``paths`` are files or directories (the recipes file, the scripts its steps run, the target's
    ``protected_paths``); :data:`PROTECTED_NAMES` and :data:`PROTECTED_DIRS` are protected at any depth,
    compared case-insensitively (case-insensitive file systems and forges treat ``.GitHub`` alike).
    """

    paths: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def of(cls, paths: Iterable[str]) -> Protected:
        return cls(tuple(dict.fromkeys(path_segments(p) for p in paths)))

    def check(self, path: str) -> str | None:
        """None when ``path`` may be written, otherwise why not (an unsafe path is never writable)."""
        try:
            segments = path_segments(path)
        except ScopeViolation as exc:
            return str(exc)
        folded = [s.casefold() for s in segments]
        if folded[-1] in PROTECTED_NAMES:
            return f"path {path!r} is a {segments[-1]} file, which only humans change"
        if hit := next((s for s in segments if s.casefold() in PROTECTED_DIRS), None):
            return f"path {path!r} is inside a {hit} directory, which only humans change"
        for protected in self.paths:
            if _within(segments, protected):
                return f"path {path!r} is protected ({'/'.join(protected)}): only humans change it"
        return None

    def hits(self, declared: str) -> bool:
        """True when a task's declared path covers a protected path: equal, inside, or a folder holding one."""
        if self.check(declared) is not None:
            return True
        segments = path_segments(declared)
        return any(_within(p, segments) for p in self.paths)
