"""End to end through the real scheduler: README command 1 (``leviathan demo``) on a fresh folder.

Starts the real API server, scheduler, dag-processor and triggerer (SQLite, LocalExecutor), triggers the
demo target, checks the PR in the local forge, then stops everything with Ctrl-C (SIGINT). Then it walks
through the rest of docs/quickstart.md's session and checks every sample output there against what really
printed (tests/doc_samples.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.doc_samples import Matcher, Sample, samples, transcript

pytestmark = pytest.mark.scheduler

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _quiet_schedule() -> str:
    """A daily cron whose tick was 10 minutes ago: unpausing starts that run, as the 5-minute one does on a
    first demo, and no further tick adds a run the quickstart does not show while this test runs."""
    tick = datetime.now(UTC) - timedelta(minutes=10)
    return f"{tick.minute} {tick.hour} * * *"


def _shell(command: str, demo: Path, env: dict[str, str]) -> str:
    """A quickstart command, run as a reader would: from the checkout, in the demo's environment."""
    proc = subprocess.run(["bash", "-c", f'eval "$(.venv/bin/leviathan demo env --dir {demo})" && {command}'],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=420)
    assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stdout[-3000:]}"
    return proc.stdout


def _plan_log(demo: Path) -> str:
    """Leviathan's lines in the newest ``plan`` task log (Airflow writes one JSON object per line)."""
    logs = (demo / "airflow" / "logs").glob("dag_id=leviathan__demo/run_id=*/task_id=plan/attempt=*.log")
    newest = max(logs, key=lambda path: path.stat().st_mtime)
    events = [json.loads(line) for line in newest.read_text(encoding="utf-8").splitlines() if line.strip()]
    return "\n".join(e["event"] for e in events if e.get("logger") == "leviathan")


def _walk_the_quickstart(demo: Path, port: int, first_run: str, env: dict[str, str]) -> None:
    """Every sample output in docs/quickstart.md against this session: the first demo run's output, then
    each transcript's commands run in order (merge, demo again, close, ...), then the last plan log."""
    matcher = Matcher(real_dir=str(demo), real_port=str(port))
    found = samples(QUICKSTART)
    for sample in (s for s in found if s.kind == "demo"):
        matcher.match(sample, first_run, whole=False)
    for sample in (s for s in found if s.kind == "console"):
        for command, expected in transcript(sample):
            real = _shell(matcher.command(command), demo, env)
            matcher.match(Sample(sample.kind, expected, sample.line), real, whole=True)
    for sample in (s for s in found if s.kind == "plan-log"):
        matcher.match(sample, _plan_log(demo), whole=False)


def test_demo_opens_a_pr_through_the_real_scheduler_and_ctrl_c_stops_everything(tmp_path):
    port = _free_port()
    demo = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEVIATHAN"))}
    env["LEVIATHAN_DEMO_SCHEDULE"] = _quiet_schedule()
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
    # Nothing the UI would show red: every health badge green, no DAG or plugin import error.
    health = "Health: metadatabase, scheduler, triggerer, dag_processor healthy; no DAG or plugin import errors"
    assert f"\n  {health}\n" in text
    # `demo env` without --port describes this demo, on the port it ran on.
    exports = subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", "demo", "env", "--dir", str(demo)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60).stdout
    assert f"export AIRFLOW__API__PORT={port}" in exports.splitlines()

    _walk_the_quickstart(demo, port, text, env)
