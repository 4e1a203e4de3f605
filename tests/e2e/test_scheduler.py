"""End to end through the real scheduler: README command 1 (``leviathan demo``) on a fresh folder.

Starts the real API server, scheduler and dag-processor (SQLite, LocalExecutor), triggers the demo
target, checks the PR in the local forge, then stops everything with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git

pytestmark = pytest.mark.scheduler


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_opens_a_pr_through_the_real_scheduler_and_ctrl_c_stops_everything(tmp_path):
    port = _free_port()
    demo = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEVIATHAN"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "leviathan_lib.cli.main", "demo", "--dir", str(demo), "--port", str(port),
         "--timeout", "240"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert "Press Ctrl-C" in text, text
        assert _listening(port)
        os.kill(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        text += rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, text
    assert "Opened PR #1 for task docs-quickstart on agent/docs-quickstart/1" in text
    assert "task ci-workflow: skipped: scope_violation" in text
    assert "task docs-changelog: skipped: dependencies_incomplete" in text
    assert "task docs-architecture: skipped: not_ready" in text
    assert "login: admin / " in text
    assert "Traceback" not in text

    bare = demo / "repos" / "demo.git"
    prs = LocalForge(bare).list_open_prs()
    assert [(p.number, p.head) for p in prs] == [(1, "agent/docs-quickstart/1")]
    changed = run_git(["--git-dir", str(bare), "diff", "--name-only", "main...agent/docs-quickstart/1"]).stdout
    assert sorted(changed.split()) == [".leviathan/backlog.yaml", "docs/quickstart.md"]
    # Every process the demo started is gone: the API port is closed again.
    for _ in range(20):
        if not _listening(port):
            break
        time.sleep(0.5)
    assert not _listening(port)
    # The embedded demo keeps SQLite whatever the suite's backend: this test covers SQLite in every run.
    assert (demo / "airflow" / "airflow.db").is_file()
    # The secrets the demo generated stay out of the repository and are private to the owner.
    assert (demo / "secrets.env").stat().st_mode & 0o077 == 0
