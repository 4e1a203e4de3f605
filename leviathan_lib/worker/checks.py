"""The repository's own checks: run in the recipe sandbox on the start commit and on the change, before delivery.

A target names the checks every attempt runs (``required_checks``), a task may add more (``checks``); they
are defined in the recipes file read at the pinned commit (``checks:``, see :mod:`leviathan_lib.worker.recipes`),
so they are reviewed like recipes, and their scripts are protected paths. Each check's argv steps run like a
recipe step (the bubblewrap sandbox on the local backend, the pod on kubernetes): no network, the checkout the
only writable path. What is kept of a run is bounded: the output is streamed into a buffer holding the last
4 KB (a check printing 100 MB costs 4 KB of memory), redacted with
:func:`leviathan_lib.core.secrets_scan.redact_text`.

They run twice. On the start commit first (``base``): a check already failing there is the repository's
state (``checks_red_at_base``), never the worker's failure; those results are cached per repository, commit
and check set (:class:`BaseCache`). Then on the change: a failing check is ``checks_failed``, one killed at
its ``timeout_seconds`` (its process group) ``check_timeout``, one that changed a file in the checkout
``checks_modified_tree`` (checks never add to a change). A check that names no known check is
``check_unknown`` (the decision builder keeps such tasks out already).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import TypeAdapter, ValidationError

from leviathan_lib.contracts.attempt import CheckResult, ChecksSpec
from leviathan_lib.contracts.recipes import Check, parse_recipes_file
from leviathan_lib.core.errors import LeviathanError, ValidationFailed
from leviathan_lib.core.guardrails import ReasonCode
from leviathan_lib.core.limits import AttemptLimits
from leviathan_lib.core.secrets_scan import redact_text
from leviathan_lib.worker.sandbox import SANDBOX_HOME, Sandbox, base_env, bwrap_path
from leviathan_lib.worker.workspace import restore, tree_of

CHECKS_FAILED = "checks_failed"
CHECK_TIMEOUT = "check_timeout"
CHECKS_MODIFIED_TREE = "checks_modified_tree"
CHECK_UNKNOWN = "check_unknown"
CHECKS_RED_AT_BASE = ReasonCode.CHECKS_RED_AT_BASE.value
#: The attempt's own deadline cut a check short: the attempt timed out (not the check).
TIMEOUT = "timeout"

#: Bytes of a check's combined output that are kept: its tail.
TAIL_BYTES = 4096
_READ_CHUNK = 65536
#: After a check's process exited, how long output that something it left behind still writes is read.
_DRAIN_SECONDS = 1.0
_POLL_SECONDS = 0.2
#: Where the local backend keeps base results (``$LEVIATHAN_STATE_DIR/checks-cache``); unset: no cache.
CACHE_ENV = "LEVIATHAN_CHECKS_CACHE"
#: Cached base results kept; the least recently written go first.
CACHE_ENTRIES = 256
#: Characters of failing checks' output one report to the model holds (the newest are kept).
REPORT_CHARS = 16_000


class ChecksUnusable(LeviathanError):
    """The checks cannot be read from the checkout: ``recipes_invalid`` or ``check_unknown``."""


class TailBuffer:
    """The last :data:`TAIL_BYTES` of a stream of any length, in bounded memory (never the whole stream)."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit, self.total = limit, 0
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._data += chunk
        if len(self._data) > 2 * self.limit:
            del self._data[:-self.limit]

    def text(self) -> str:
        """The tail, redacted; when output was cut, from its first whole line on (a cut credential is no
        longer recognisable, so the partial first line goes)."""
        data = bytes(self._data[-self.limit:])
        if self.total > len(data):
            newline = data.find(b"\n")
            data = data[newline + 1:] if 0 <= newline < len(data) - 1 else data
        return redact_text(data.decode("utf-8", "replace"))


def _exited(pid: int) -> bool:
    """True once ``pid`` has exited, without reaping it (its group id stays this group's until the wait)."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None and info.si_pid == pid


def _stream(proc: subprocess.Popen[bytes], buffer: TailBuffer, deadline: float) -> int | None:
    """Read ``proc``'s output into ``buffer`` until it ends; its exit code, or None when it ran to ``deadline``.

    Whatever is left in its process group afterwards is killed; output that something it left behind keeps
    writing is read for :data:`_DRAIN_SECONDS` only.
    """
    assert proc.stdout is not None
    exited_at: float | None = None
    eof = False
    with proc.stdout, selectors.DefaultSelector() as selector:
        selector.register(proc.stdout.fileno(), selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if exited_at is None and _exited(proc.pid):
                exited_at = now
            if exited_at is not None and (eof or now >= exited_at + _DRAIN_SECONDS):
                break
            if exited_at is None and now >= deadline:
                break
            if eof:
                time.sleep(min(_POLL_SECONDS, max(0.0, deadline - now)))
            elif selector.select(timeout=min(_POLL_SECONDS, max(0.0, deadline - now))):
                chunk = os.read(proc.stdout.fileno(), _READ_CHUNK)
                if chunk:
                    buffer.add(chunk)
                else:
                    eof = True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the leader is not reaped yet: the group id is still its own
    proc.wait()
    return proc.returncode if exited_at is not None else None


@dataclass(frozen=True)
class Runner:
    """Where the checks run: the checkout, the worker git's HOME, the sandbox (None: the pod, or the opt-out)."""

    checkout: Path
    home: Path
    sandbox: Sandbox | None
    env: dict[str, str]


@dataclass
class _Steps:
    exit_code: int | None = None
    timed_out: bool = False
    error: str | None = None
    output: TailBuffer = field(default_factory=TailBuffer)


def _run_steps(check: Check, runner: Runner, deadline: float) -> _Steps:
    """Run the check's steps in order until one fails, all of them before ``deadline``."""
    run = _Steps()
    for argv in check.steps:
        program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=runner.env["PATH"])
        if program is None:
            run.error = f"command {argv[0]!r} not found on PATH"
            return run
        command, env = [program, *argv[1:]], runner.env
        if runner.sandbox is not None:  # bwrap starts with an empty environment and hands the step only ``env``
            command, env = runner.sandbox.argv(command, env), {}
        try:
            proc = subprocess.Popen(command, cwd=runner.checkout, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            run.error = f"could not start {argv[0]!r}: {exc.strerror or exc}"
            return run
        run.exit_code = _stream(proc, run.output, deadline)
        if run.exit_code is None:
            run.timed_out = True
            return run
        if run.exit_code != 0:
            return run
    return run


Phase = Literal["base", "change"]


def run_check(name: str, check: Check, runner: Runner, *, phase: Phase, deadline: float) -> tuple[CheckResult, bool]:
    """Run one check, at most its ``timeout_seconds`` and never past ``deadline``; its result, and whether
    the deadline (not its own timeout) cut it short."""
    before = tree_of(runner.checkout, home=runner.home)
    started = time.monotonic()
    own_end = started + check.timeout
    run = _run_steps(check, runner, min(own_end, deadline))
    modified = tree_of(runner.checkout, home=runner.home) != before
    passed = run.exit_code == 0 and not run.timed_out and run.error is None and not modified
    result = CheckResult(name=name, phase=phase, passed=passed, exit_code=run.exit_code,
                         duration_seconds=round(time.monotonic() - started, 3), output_tail=run.output.text(),
                         output_bytes=run.output.total, timed_out=run.timed_out, modified_tree=modified,
                         error=run.error)
    return result, run.timed_out and deadline < own_end


def describe(result: CheckResult) -> str:
    """What happened to a check that did not pass, in a few words."""
    if result.modified_tree:
        return f"{result.name} changed files in the checkout"
    if result.error:
        return f"{result.name} could not run: {result.error}"
    if result.timed_out:
        return f"{result.name} ran past its timeout after {result.duration_seconds:g}s and was killed"
    return f"{result.name} exited with {result.exit_code}"


@dataclass(frozen=True)
class Verdict:
    """The checks on the change: ``code`` None when every required one passed; else why not, the failing
    checks' output for the model (``report``, untrusted) and whether the model may try to fix it (``retry``)."""

    code: str | None
    message: str = ""
    report: str = ""
    retry: bool = False


class BaseCache:
    """Base results per (repository, commit, check set) as files written atomically, at most
    :data:`CACHE_ENTRIES` (the oldest go first). Best effort: an unreadable entry is a miss."""

    def __init__(self, folder: Path, limit: int = CACHE_ENTRIES) -> None:
        self.folder, self.limit = folder, limit

    def get(self, key: str) -> list[CheckResult] | None:
        try:
            found = TypeAdapter(list[CheckResult]).validate_json((self.folder / f"{key}.json").read_bytes())
        except (OSError, ValidationError):
            return None
        return [r.model_copy(update={"cached": True}) for r in found]

    def put(self, key: str, results: list[CheckResult]) -> None:
        data = TypeAdapter(list[CheckResult]).dump_json(results)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".tmp-", delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, self.folder / f"{key}.json")
            entries = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
            for old in entries[:-self.limit]:
                old.unlink(missing_ok=True)
        except OSError:
            pass  # a cache that cannot be written only costs running the base checks again


def load_checks(checkout: Path, spec: ChecksSpec) -> dict[str, Check]:
    """The checks ``spec`` names, from the recipes file in the checkout; :class:`ChecksUnusable` otherwise."""
    path = (checkout / spec.recipes_path).resolve()
    try:
        if not path.is_relative_to(checkout.resolve()):
            raise OSError(f"{spec.recipes_path} resolves outside the checkout")
        defined = parse_recipes_file(path.read_text(encoding="utf-8"), spec.recipes_path).checks
    except ValidationFailed as exc:
        raise ChecksUnusable("recipes_invalid", str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChecksUnusable("recipes_invalid", f"{spec.recipes_path}: cannot read: {exc}") from None
    unknown = [n for n in spec.names if n not in defined]
    if unknown:
        known = ", ".join(sorted(defined)) or "none"
        raise ChecksUnusable(CHECK_UNKNOWN, f"{spec.recipes_path} has no check {', '.join(map(repr, unknown))} "
                                            f"(known: {known})")
    return {name: defined[name] for name in dict.fromkeys(spec.names)}


def make_runner(checkout: Path, *, home: Path, workspace: Path, mode: str, task_id: str,
                limits: AttemptLimits) -> Runner:
    """The runner of the attempt's sandbox ``mode`` (``bwrap``: a sandbox per step, under the attempt's
    ``limits`` — rlimits, seccomp, a fresh keyring, size-bounded tmpfs — and each check's timeout;
    ``pod``/``none``: a closed environment only)."""
    extra = {"LEVIATHAN_TASK_ID": task_id, "PYTHONDONTWRITEBYTECODE": "1"}
    if mode == "bwrap":
        sandbox = Sandbox(bwrap=bwrap_path(), checkout=checkout, etc_dir=workspace / "checks-etc", limits=limits)
        sandbox.write_etc()
        return Runner(checkout, home, sandbox, {**base_env(SANDBOX_HOME), **extra})
    check_home = workspace / "check-home"
    check_home.mkdir(exist_ok=True)
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
    return Runner(checkout, home, None, {"PATH": path, "HOME": str(check_home), "LANG": "C.UTF-8", **extra})


class AttemptChecks:
    """The checks of one attempt: their base results, their latest results on the change, the verdict."""

    def __init__(self, spec: ChecksSpec, checks: dict[str, Check], runner: Runner, *, deadline: float,
                 cache: BaseCache | None = None, cache_key: str = "") -> None:
        self.spec, self.checks, self.runner, self.deadline = spec, checks, runner, deadline
        self.cache, self.cache_key = cache, cache_key
        self.base: list[CheckResult] = []
        self.change: list[CheckResult] = []
        #: The tree the latest change run checked, and whether the attempt's deadline cut a check of it short.
        self.checked_tree: str | None = None
        self._cut = False
        #: The attempt's deadline cut a base run short (its results are not the repository's state).
        self.base_cut = False

    @staticmethod
    def key(repo_url: str, commit: str, mode: str, checks: dict[str, Check]) -> str:
        """The cache key of base results: the repository, the commit, the sandbox and every check's definition."""
        defined = [[name, check.model_dump(mode="json")] for name, check in checks.items()]
        text = json.dumps([repo_url, commit, mode, defined], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def red_at_base(self) -> list[str]:
        return [r.name for r in self.base if not r.passed]

    def results(self) -> list[CheckResult]:
        return [*self.base, *self.change]

    def run_base(self) -> None:
        """Run every check on the start commit (or take the cached results); a check that changed files
        there counts as red at base, and the checkout is put back before the next one and the executor."""
        cached = self.cache.get(self.cache_key) if self.cache is not None else None
        if cached is not None and [r.name for r in cached] == list(self.checks):
            self.base = cached
            return
        for name, check in self.checks.items():
            result, cut = run_check(name, check, self.runner, phase="base", deadline=self.deadline)
            self.base_cut = self.base_cut or cut
            if result.modified_tree:
                restore(self.runner.checkout, home=self.runner.home)
            self.base.append(result)
        if self.cache is not None and not self.base_cut:
            self.cache.put(self.cache_key, self.base)

    def run_change(self) -> Verdict:
        """Run every check on the change as the checkout holds it now, and judge the results."""
        self.change, self._cut = [], False
        self.checked_tree = tree_of(self.runner.checkout, home=self.runner.home)
        for name, check in self.checks.items():
            result, cut = run_check(name, check, self.runner, phase="change", deadline=self.deadline)
            self._cut = self._cut or cut
            self.change.append(result)
            if result.modified_tree:
                break  # the attempt fails whatever the rest says
        return self.verdict()

    def unchanged_since_checked(self) -> bool:
        """The checkout is still the tree the latest change run checked (the LLM executor ran them itself)."""
        return self.checked_tree is not None and tree_of(self.runner.checkout, home=self.runner.home) == \
            self.checked_tree

    def verdict(self) -> Verdict:
        """Checks red at base are excused under ``deliver_with_warning``; nothing else is."""
        modified = [r for r in self.change if r.modified_tree]
        if modified:
            return Verdict(CHECKS_MODIFIED_TREE, "; ".join(describe(r) for r in modified)
                           + ": a check never adds to a change")
        excused = set(self.red_at_base) if self.spec.on_red_at_base == "deliver_with_warning" else set()
        failing = [r for r in self.change if not r.passed and r.name not in excused]
        if not failing:
            return Verdict(None)
        code = TIMEOUT if self._cut else CHECK_TIMEOUT if any(r.timed_out for r in failing) else CHECKS_FAILED
        parts = [f"check {r.name}: {describe(r)}; its output (last {TAIL_BYTES} bytes):\n{r.output_tail}"
                 for r in failing]
        return Verdict(code, "; ".join(describe(r) for r in failing), report="\n\n".join(parts)[-REPORT_CHARS:],
                       retry=code != TIMEOUT and all(r.error is None for r in failing))
