"""The local backend: a bounded worker subprocess that leaves no process and no workspace behind."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from leviathan_lib.worker.backends.local import run_local_worker, worker_env
from tests.worker.test_attempt import make_spec, make_target_repo


@pytest.fixture
def target(tmp_path: Path) -> tuple[Path, str]:
    return make_target_repo(tmp_path)


def _group_alive(pgid: int) -> list[int]:
    """Members of process group ``pgid`` that are still running (zombies count as gone)."""
    alive = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def _status(pid: int) -> str:
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return psutil.STATUS_ZOMBIE


def _wait_gone(pids: list[int], pgid: int, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        running = [p for p in pids if psutil.pid_exists(p) and _status(p) != psutil.STATUS_ZOMBIE]
        if not running and not _group_alive(pgid):
            return
        time.sleep(0.05)
    raise AssertionError(f"still running: {running} / group {pgid}: {_group_alive(pgid)}")


def marked(marker: str) -> list[int]:
    """Running processes (zombies count as gone) whose command line carries ``marker``."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(marker in a for a in proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


def wait_marked_gone(marker: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while (alive := marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive, f"still running with {marker}: {alive}"


def test_success_and_the_workspace_is_removed(tmp_path, target):
    repo, sha = target
    root = tmp_path / "scratch"
    root.mkdir()
    result = run_local_worker(make_spec(repo, sha), workspace_root=root)
    assert result.outcome == "succeeded", result.error
    assert result.changed_paths == ["docs/quickstart.md"]
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_timeout_kills_the_whole_process_group(tmp_path, target, sandbox):
    repo, sha = target
    root = tmp_path / "scratch"
    root.mkdir()
    started = time.monotonic()
    result = run_local_worker(make_spec(repo, sha, "hang", timeout_seconds=3, sandbox=sandbox), workspace_root=root)
    elapsed = time.monotonic() - started
    assert result.outcome == "timed_out"
    assert result.error.code == "timeout"
    assert result.patch == ""
    assert 3 <= elapsed < 120  # killed at the timeout, long before the recipe's 300 s sleep (not a perf check)
    if sandbox == "none":
        pids = json.loads((tmp_path / "pids.json").read_text())
        assert pids["pgid"] != os.getpgrp()  # the worker had a process group of its own
        _wait_gone(pids["pids"], pids["pgid"])
    else:
        assert not (tmp_path / "pids.json").exists()  # outside the checkout: the sandbox refused the write
    wait_marked_gone(str(tmp_path / "pids.json"))
    assert list(root.iterdir()) == []


def test_timeout_argument_overrides_the_spec(tmp_path, target):
    repo, sha = target
    result = run_local_worker(make_spec(repo, sha, "hang", timeout_seconds=600), timeout_seconds=1.5)
    assert result.outcome == "timed_out"
    assert "1.5s" in result.error.message


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_processes_left_behind_by_a_recipe_are_killed(tmp_path, target, sandbox):
    repo, sha = target
    result = run_local_worker(make_spec(repo, sha, "daemon", sandbox=sandbox))
    assert result.outcome == "succeeded", result.error
    if sandbox == "none":
        pids = json.loads((tmp_path / "pids.json").read_text())
        _wait_gone(pids["pids"], pids["pgid"])
    wait_marked_gone(str(tmp_path / "pids.json"))


def test_worker_dying_without_a_result_is_reported(tmp_path, target):
    """Only an unsandboxed recipe can reach its worker; the backend still reports the crash."""
    repo, sha = target
    result = run_local_worker(make_spec(repo, sha, "kill-worker", sandbox="none"))
    assert result.outcome == "failed"
    assert result.error.code == "worker_crashed"
    assert "exited with -9" in result.error.message
    assert result.executor["exit_code"] == -9


def test_a_sandboxed_recipe_cannot_signal_its_worker(tmp_path, target):
    repo, sha = target
    result = run_local_worker(make_spec(repo, sha, "kill-worker"))
    assert result.outcome == "succeeded", result.error
    assert result.changed_paths == ["docs/survived.md"]
    assert result.executor["sandbox"] == "bwrap"


def test_the_local_backend_refuses_the_pod_sandbox(tmp_path, target):
    repo, sha = target
    result = run_local_worker(make_spec(repo, sha, sandbox="pod"))
    assert result.error.code == "invalid_spec" and "kubernetes backend" in result.error.message


def test_worker_environment_is_minimal(tmp_path, target, monkeypatch):
    monkeypatch.setenv("LEVIATHAN_TEST_SECRET", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    env = worker_env()
    assert set(env) <= {"PATH", "HOME", "LANG", "PYTHONPATH"}

    repo, sha = target
    result = run_local_worker(make_spec(repo, sha, "env-dump"))
    assert result.outcome == "succeeded", result.error
    assert "LEVIATHAN_TEST_SECRET" not in result.patch
    assert "hunter2" not in result.patch
    assert "AWS_SECRET_ACCESS_KEY" not in result.patch
