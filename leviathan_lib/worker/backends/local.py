"""The embedded default worker backend: the worker as a local subprocess, bounded in time.

The worker runs in its own process group with a closed environment, so on timeout the whole group is
killed, and no secret of the Airflow worker can reach it. Stragglers left in the group after a normal
exit are killed too: an attempt leaves nothing running. Recipe steps run one level further in, in the
bubblewrap sandbox of :mod:`leviathan_lib.worker.sandbox` (own PID namespace, ``--die-with-parent``):
killing the worker kills every sandbox, and with it everything a recipe started, ``setsid`` or not.

The attempt's directory is removed afterwards whatever a recipe left in it, and attempt directories a
killed run left behind are swept first (:mod:`leviathan_lib.worker.scratch`); both are reported in the
result's ``cleanup``, and a failed clean-up never changes the attempt's outcome.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import leviathan_lib
from leviathan_lib.contracts.attempt import (
    MAX_RESULT_BYTES,
    AttemptResult,
    AttemptSpec,
    failed_result,
    result_from_json,
    utc_now,
)
from leviathan_lib.contracts.versions import ContractError
from leviathan_lib.core.limits import CleanupReport
from leviathan_lib.worker.checks import CACHE_ENV
from leviathan_lib.worker.sandbox import BWRAP_ENV
from leviathan_lib.worker.scratch import PREFIX, attempt_lock, remove_tree, sweep

#: Time between SIGTERM and SIGKILL for the process group of a timed-out worker.
KILL_GRACE_SECONDS = 2.0
_POLL_SECONDS = 0.05
_TAIL_BYTES = 4096
log = logging.getLogger(__name__)


def worker_env() -> dict[str, str]:
    """PATH, HOME, LANG, a PYTHONPATH that finds this ``leviathan_lib`` and ``$LEVIATHAN_BWRAP`` if set."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
    for name in ("HOME", BWRAP_ENV):
        if name in os.environ:
            env[name] = os.environ[name]
    package_root = str(Path(leviathan_lib.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return env


def _exited(pid: int) -> bool:
    """True once ``pid`` has exited, without reaping it: its pid keeps the group id from being reused."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None and info.si_pid == pid


def _wait_exit(pid: int, deadline: float) -> bool:
    while not _exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _run_bounded(
    argv: list[str], *, cwd: Path, env: dict[str, str], stderr_path: Path, timeout: float
) -> int | None:
    """Run ``argv`` in a new process group; the exit code, or None if it was killed for the timeout."""
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    pgid = proc.pid
    try:
        finished = _wait_exit(proc.pid, time.monotonic() + timeout)
        if not finished:
            _killpg(pgid, signal.SIGTERM)
            _wait_exit(proc.pid, time.monotonic() + KILL_GRACE_SECONDS)
    finally:
        # The leader is not reaped yet, so the group id still names this group only.
        _killpg(pgid, signal.SIGKILL)
        proc.wait()
    return proc.returncode if finished else None


def run_local_worker(
    spec: AttemptSpec,
    *,
    workspace_root: Path | None = None,
    timeout_seconds: float | None = None,
    model_api_key: str | None = None,
    checks_cache: Path | None = None,
) -> AttemptResult:
    """Run one attempt in a subprocess worker and return its result; never raises for worker failures.

    ``model_api_key`` is the one secret a worker may get (as ``ANTHROPIC_API_KEY``), and only for the llm
    executor: a recipe attempt's worker never holds it. ``checks_cache`` is where the worker keeps the
    results of the repository's checks on a commit (outside every sandbox), to run them once per commit.
    """
    started = utc_now()
    if spec.sandbox == "pod":
        return failed_result("invalid_spec", "sandbox 'pod' is for the kubernetes backend; the local backend "
                             "runs recipes in 'bwrap' (or 'none' when the target opts out)", started_at=started)
    if workspace_root is not None:
        Path(workspace_root).mkdir(parents=True, exist_ok=True)
    swept = sweep(Path(workspace_root or tempfile.gettempdir()))
    base = Path(tempfile.mkdtemp(prefix=PREFIX, dir=workspace_root))
    try:
        with attempt_lock(base):
            result = _run_in(spec, base, started, timeout_seconds=timeout_seconds, model_api_key=model_api_key,
                             checks_cache=checks_cache)
    finally:
        problem = remove_tree(base)
    problems = swept.problems + ([problem] if problem else [])
    for line in problems:
        log.warning("scratch left behind: %s", line)
    if swept.dirs or problems:
        cleanup = CleanupReport(swept_dirs=swept.dirs, swept_bytes=swept.bytes, problems=problems)
        result = result.model_copy(update={"cleanup": cleanup})
    return result


def _run_in(  # noqa: PLR0913 — the attempt's own inputs, passed through
    spec: AttemptSpec, base: Path, started: datetime, *, timeout_seconds: float | None, model_api_key: str | None,
    checks_cache: Path | None,
) -> AttemptResult:
    """Run the worker process in ``base`` and read its result."""
    timeout = float(spec.timeout_seconds if timeout_seconds is None else timeout_seconds)
    spec_file, output, log_file = base / "spec.json", base / "result.json", base / "worker.log"
    spec_file.write_text(spec.model_dump_json(), encoding="utf-8")
    argv = [
        sys.executable, "-m", "leviathan_lib.worker",
        "--spec", str(spec_file), "--output", str(output), "--workspace", str(base / "workspace"),
    ]  # fmt: skip
    env = worker_env()
    if model_api_key and spec.executor.kind == "llm":
        env["ANTHROPIC_API_KEY"] = model_api_key
    if checks_cache is not None:
        env[CACHE_ENV] = str(checks_cache)
    exit_code = _run_bounded(argv, cwd=base, env=env, stderr_path=log_file, timeout=timeout)
    log_tail = log_file.read_bytes()[-_TAIL_BYTES:].decode("utf-8", "replace")
    executor = {"backend": "local", "exit_code": exit_code, "log_tail": log_tail}
    if exit_code is None:
        return failed_result(
            "timeout",
            f"the worker ran longer than {timeout:g}s; its process group was killed",
            outcome="timed_out",
            started_at=started,
            executor=executor,
        )
    try:
        with output.open("rb") as handle:  # bounded: a hostile worker cannot make the orchestrator read more
            return result_from_json(handle.read(MAX_RESULT_BYTES + 1))
    except (OSError, ContractError) as exc:
        code, reason = ("worker_crashed", "no result file") if isinstance(exc, OSError) else (exc.code, str(exc))
        return failed_result(
            code,
            f"the worker exited with {exit_code} and {reason}; log tail: {log_tail[-1000:]}",
            started_at=started,
            executor=executor,
        )
