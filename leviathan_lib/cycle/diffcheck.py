"""The final-diff check, run on the exact commits about to be pushed.

The task's ``allowed_paths`` are checked before the worker starts; this checks what the worker actually
produced, from git's own view of the change (modes included), so a worker that strays, plants a symlink
or a submodule, makes a file executable, bloats the repository or commits a credential is stopped
before anything leaves the machine.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from leviathan_lib.core.errors import CodedError
from leviathan_lib.core.scope import Scope
from leviathan_lib.core.secrets_scan import scan_lines
from leviathan_lib.git.runner import GitError, run_git

SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"
EXECUTABLE_MODE = "100755"
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
#: Never let repository config (external diff drivers, textconv, renames) change what is checked.
_DIFF_FLAGS = ["--no-ext-diff", "--no-textconv", "--no-renames", "--no-color"]


class Violation(BaseModel):
    code: str
    path: str | None
    detail: str


class DiffCheckError(CodedError, RuntimeError):
    """The diff could not be computed (bad revision, not a repository): callers must not push."""

    CODE = "diff_failed"


def _git(repo_dir: Path, args: list[str], stdin: str | None = None) -> bytes:
    try:
        return run_git(["-c", "core.quotePath=true", *args], cwd=repo_dir, input=stdin, text=False).stdout
    except GitError as exc:
        raise DiffCheckError(str(exc)) from None


def _raw_entries(repo_dir: Path, base: str, head: str) -> list[tuple[str, str, str, str, str]]:
    """``(old_mode, new_mode, old_sha, new_sha, path)`` per changed path."""
    out = _git(repo_dir, ["diff", "--raw", "-z", "--no-abbrev", *_DIFF_FLAGS, base, head, "--"])
    fields = out.split(b"\0")
    entries = []
    i = 0
    while i + 1 < len(fields) and fields[i].startswith(b":"):
        old_mode, new_mode, old_sha, new_sha, _status = fields[i][1:].decode().split(" ")
        entries.append((old_mode, new_mode, old_sha, new_sha, fields[i + 1].decode("utf-8", "replace")))
        i += 2
    return entries


def _blob_sizes(repo_dir: Path, shas: list[str]) -> int:
    if not shas:
        return 0
    out = _git(repo_dir, ["cat-file", "--batch-check=%(objectsize)"], stdin="\n".join(shas) + "\n")
    return sum(int(line) for line in out.split())


def _unquote(path: str) -> str:
    """Undo git's C-style quoting of unusual path names in patch headers."""
    if not (path.startswith('"') and path.endswith('"')):
        return path
    body, out, i = path[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567":
                out.append(int(body[i + 1:i + 4], 8))
                i += 4
                continue
            out.append(_C_ESCAPES.get(nxt, ord(nxt)))
            i += 2
            continue
        out.extend(ch.encode())
        i += 1
    return out.decode("utf-8", "replace")


def _added_lines(repo_dir: Path, base: str, head: str) -> dict[str, list[tuple[int, str]]]:
    """Lines each file gains, with their line numbers in the new version (binary files have none)."""
    args = ["diff", "-U0", "--src-prefix=a/", "--dst-prefix=b/", *_DIFF_FLAGS, base, head, "--"]
    patch = _git(repo_dir, args)
    added: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] | None = None
    line_no = 0
    for raw in patch.decode("utf-8", "replace").split("\n"):
        if raw.startswith("diff --git "):
            current = None
        elif raw.startswith("+++ ") and current is None:
            # Git appends a TAB to names containing spaces; a real trailing TAB would be quoted as \t.
            name = _unquote(raw[4:].removesuffix("\t"))
            if name != "/dev/null":
                current = added.setdefault(name.removeprefix("b/"), [])
        elif raw.startswith("@@"):
            match = _HUNK.match(raw)
            line_no = int(match.group(1)) if match else 0
        elif raw.startswith("+") and current is not None:
            current.append((line_no, raw[1:]))
            line_no += 1
    return added


def check_final_diff(
    repo_dir: Path, base: str, head: str, scope: Scope, *, max_total_bytes: int = 1_000_000
) -> list[Violation]:
    """Every reason the change ``base..head`` must not be pushed; empty means it may.

    Raises :class:`DiffCheckError` when git cannot compute the diff (fail closed).
    """
    violations: list[Violation] = []
    new_blobs: list[str] = []
    for old_mode, new_mode, _old_sha, new_sha, path in _raw_entries(repo_dir, base, head):
        reason = scope.check(path)
        if reason:
            violations.append(Violation(code="scope_violation", path=path, detail=reason))
        if new_mode == SYMLINK_MODE:
            violations.append(Violation(code="symlink", path=path, detail="symbolic links are not allowed"))
        elif new_mode == SUBMODULE_MODE:
            violations.append(Violation(code="submodule", path=path, detail="submodules are not allowed"))
        elif new_mode == EXECUTABLE_MODE:
            what = "new executable file" if old_mode == "000000" else f"mode change {old_mode} -> {new_mode}"
            violations.append(Violation(code="executable", path=path, detail=f"{what} is not allowed"))
        if new_mode not in ("000000", SUBMODULE_MODE):
            new_blobs.append(new_sha)

    total = _blob_sizes(repo_dir, new_blobs)
    if total > max_total_bytes:
        violations.append(Violation(
            code="too_large", path=None,
            detail=f"changed files total {total} bytes, limit {max_total_bytes}",
        ))

    for path, lines in _added_lines(repo_dir, base, head).items():
        for finding in scan_lines(lines):
            violations.append(Violation(
                code="secret_detected", path=path,
                detail=f"possible secret ({finding.rule}) at line {finding.line}",
            ))
    return violations
