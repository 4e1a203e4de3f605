"""The final-diff check, run on the exact trees about to be pushed.

The task's ``allowed_paths`` are checked before the worker starts; this checks what the worker actually
produced, from git's own objects (modes included), so a worker that strays, plants a symlink or a
submodule, makes a file executable, touches a protected path or the backlog, bloats the repository or
commits a credential is stopped before anything leaves the machine. Secrets are looked for in the
bytes of every added or changed blob (whatever ``.gitattributes`` says about text, diff or binary)
and in the file names; findings name the path, the rule and the line, never the content.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from leviathan_lib.contracts.attempt import MAX_PATCH_BYTES
from leviathan_lib.core.errors import CodedError
from leviathan_lib.core.scope import Protected, Scope, ScopeViolation, normalize
from leviathan_lib.core.secrets_scan import redact_text, scan_bytes
from leviathan_lib.git.raw_diff import RawEntry, parse_raw_diff
from leviathan_lib.git.runner import GitError, GitProfile, run_git

SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"
EXECUTABLE_MODE = "100755"
ABSENT_MODE = "000000"
#: Old versions larger than this are not read to tell old findings from new (every finding then counts).
KNOWN_BLOB_LIMIT = 4 * MAX_PATCH_BYTES
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
    """Git in the delivery's scratch repository (orchestrator-owned: it holds the commit about to be pushed)."""
    try:
        return run_git(["-c", "core.quotePath=true", *args], cwd=repo_dir, input=stdin, text=False,
                       profile=GitProfile.ORCHESTRATOR).stdout  # fmt: skip
    except GitError as exc:
        raise DiffCheckError(str(exc)) from None


def diff_entries(repo_dir: Path, base: str, head: str) -> list[RawEntry]:
    """Every path that differs between the trees of ``base`` and ``head`` (commits or trees)."""
    return parse_raw_diff(_git(repo_dir, ["diff", "--raw", "-z", "--no-abbrev", *_DIFF_FLAGS, base, head, "--"]))


def changed_paths(repo_dir: Path, base: str, head: str) -> list[str]:
    """The real changed paths (what a PR body and the evidence list), from git's objects."""
    return [e.path for e in diff_entries(repo_dir, base, head)]


def _sizes(repo_dir: Path, shas: list[str]) -> dict[str, int]:
    if not shas:
        return {}
    unique = list(dict.fromkeys(shas))
    out = _git(repo_dir, ["cat-file", "--batch-check=%(objectname) %(objectsize)"], stdin="\n".join(unique) + "\n")
    sizes = {}
    for line in out.decode().splitlines():
        sha, _, size = line.partition(" ")
        if not size.isdigit():
            raise DiffCheckError(f"object {sha} is missing")
        sizes[sha] = int(size)
    return sizes


def read_blobs(repo_dir: Path, shas: list[str]) -> dict[str, bytes]:
    """The contents of ``shas`` through one ``git cat-file --batch`` (callers bound the total size first)."""
    unique = list(dict.fromkeys(shas))
    if not unique:
        return {}
    out = _git(repo_dir, ["cat-file", "--batch"], stdin="\n".join(unique) + "\n")
    blobs, at = {}, 0
    for sha in unique:
        header_end = out.index(b"\n", at)
        name, kind, size = out[at:header_end].decode().split(" ")
        if name != sha or kind != "blob":
            raise DiffCheckError(f"object {sha} is not a blob")
        start = header_end + 1
        blobs[sha] = out[start:start + int(size)]
        at = start + int(size) + 1
    return blobs


def _path_violations(entry: RawEntry, scope: Scope, protected: Protected, backlog: str | None) -> list[Violation]:
    path, found = entry.path, []
    try:
        entry.raw_path.decode("utf-8")
    except UnicodeDecodeError:
        found.append(Violation(code="scope_violation", path=path, detail="the file name is not valid UTF-8"))
    try:
        is_backlog = backlog is not None and normalize(path) == normalize(backlog)
    except ScopeViolation:
        is_backlog = False
    reason = None if is_backlog else scope.check(path)
    if is_backlog:
        found.append(Violation(code="backlog_edited", path=path,
                               detail="the worker changed the backlog; only humans edit it (and Leviathan its status)"))
    elif reason:
        found.append(Violation(code="scope_violation", path=path, detail=reason))
    elif why := protected.check(path):
        found.append(Violation(code="protected_path", path=path, detail=why))
    for finding in scan_bytes(entry.raw_path):
        found.append(Violation(code="secret_detected", path=path,
                               detail=f"possible secret ({finding.rule}) in the file name"))
    if entry.new_mode == SYMLINK_MODE:
        found.append(Violation(code="symlink", path=path, detail="symbolic links are not allowed"))
    elif entry.new_mode == SUBMODULE_MODE:
        found.append(Violation(code="submodule", path=path, detail="submodules are not allowed"))
    elif entry.new_mode == EXECUTABLE_MODE:
        old = entry.old_mode
        what = "new executable file" if old == ABSENT_MODE else f"mode change {old} -> {entry.new_mode}"
        found.append(Violation(code="executable", path=path, detail=f"{what} is not allowed"))
    return found


def _blob(mode: str) -> bool:
    return mode not in (ABSENT_MODE, SUBMODULE_MODE)


def check_final_diff(
    repo_dir: Path, base: str, head: str, scope: Scope, *, protected: Protected | None = None,
    backlog_path: str | None = None, max_total_bytes: int = MAX_PATCH_BYTES,
) -> list[Violation]:
    """Every reason the change ``base..head`` must not be pushed; empty means it may.

    ``backlog_path`` is the backlog: any change to it is ``backlog_edited`` (the status edit is made by
    delivery after this check). Raises :class:`DiffCheckError` when git cannot compute the diff (fail
    closed). No violation quotes file content; secrets in file names are redacted from paths and details.
    """
    protected = protected or Protected()
    entries = diff_entries(repo_dir, base, head)
    violations = [v for e in entries for v in _path_violations(e, scope, protected, backlog_path)]

    new = [e for e in entries if _blob(e.new_mode)]
    sizes = _sizes(repo_dir, [e.new_sha for e in new] + [e.old_sha for e in new if _blob(e.old_mode)])
    total = sum(sizes[e.new_sha] for e in new)
    if total > max_total_bytes:
        violations.append(Violation(
            code="too_large", path=None,
            detail=f"changed files total {total} bytes, limit {max_total_bytes}",
        ))
    else:
        old = [e.old_sha for e in new if _blob(e.old_mode) and sizes[e.old_sha] <= KNOWN_BLOB_LIMIT]
        blobs = read_blobs(repo_dir, [e.new_sha for e in new] + old)
        for entry in new:
            known = blobs.get(entry.old_sha, b"") if _blob(entry.old_mode) else b""
            for finding in scan_bytes(blobs[entry.new_sha], known=known):
                violations.append(Violation(
                    code="secret_detected", path=entry.path,
                    detail=f"possible secret ({finding.rule}) at line {finding.line}",
                ))
    return [v.model_copy(update={"path": redact_text(v.path) if v.path else v.path,
                                 "detail": redact_text(v.detail)}) for v in violations]
