"""Benchmark 8(c): N targets on one cron interval, on PostgreSQL + LocalExecutor, the real scheduler.

Every target is an idle one (autonomy on, a backlog with no ready task: each cycle reads the backlog at
its pinned commit, syncs PRs, checks the guardrails and records its evidence), spread over the interval
by the default per-target offset (``H``). After a warm-up interval (the unpause's first runs), it
observes ``--intervals`` whole intervals and reports, from the API server's timestamps, the start lag
(``start_date - run_after``), the share of runs that finished within their interval, and how busy the
CPUs were (system-wide, and the stack's own processes + PostgreSQL as a share of the machine).

    .venv/bin/python -m bench.fleet --targets 500 --interval-minutes 5 --intervals 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fleet_stack import FLEET_SETTINGS, TERMINAL, FleetStack, iso_ts
from leviathan_lib.git.runner import run_git

IDLE_BACKLOG = """\
tasks:
  - id: later
    title: "Not ready yet"
    description: A task humans have not marked ready.
    scope: docs
    priority: low
    ready: false
    status: pending
    allowed_paths: ["docs/later.md"]
"""


def idle_repo(bare: Path) -> Path:
    """One bare repository with a backlog of no ready task (every target reads it, each with its own mirror)."""
    with tempfile.TemporaryDirectory(prefix="leviathan-bench-fleet-") as tmp:
        work = Path(tmp)
        (work / ".leviathan").mkdir()
        (work / ".leviathan" / "backlog.yaml").write_text(IDLE_BACKLOG, encoding="utf-8")
        (work / ".leviathan" / "recipes.yaml").write_text("recipes: {}\n", encoding="utf-8")  # no recipe needed
        run_git(["init", "--quiet", "-b", "main"], cwd=work)
        run_git(["add", "-A"], cwd=work)
        run_git(["-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "--quiet", "-m",
                 "idle backlog"], cwd=work)
        subprocess.run(["git", "clone", "--quiet", "--bare", str(work), str(bare)], check=True, timeout=60)
    return bare


def write_targets(folder: Path, bare: Path, n: int, interval_minutes: int) -> list[str]:
    ids = [f"f{i:04d}" for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    for tid in ids:
        (folder / f"{tid}.yaml").write_text(
            f"target_id: {tid}\ntarget_repo_url: {bare}\nautonomy_enabled: true\n"
            f'schedule_cron: "*/{interval_minutes} * * * *"\nforge: local\nworker_backend: local\n'
            "allowed_path_prefixes: [docs/]\n", encoding="utf-8")
    return ids


def pct(values: list[float], p: float) -> float | None:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else None


def measure(n: int, interval_minutes: int, intervals: int) -> dict[str, Any]:
    import psutil

    period = interval_minutes * 60
    with tempfile.TemporaryDirectory(prefix="leviathan-bench-fleet-") as tmp:
        base = Path(tmp)
        bare = idle_repo(base / "repos" / "idle.git")
        ids = write_targets(base / "targets", bare, n, interval_minutes)
        with FleetStack(base) as stack:
            parse_start = time.monotonic()
            stack.wait_dags(n, 900)
            parsed_s = time.monotonic() - parse_start
            stack.unpause_all()
            unpaused = time.time()
            window_start = (unpaused // period + 2) * period  # skip the interval the unpause lands in
            window_end = window_start + intervals * period
            while time.time() < window_start:
                time.sleep(5)
                stack.check()
            cpu0, pg0, t0 = stack.cpu_seconds(), stack.pg.cpu_seconds(), time.monotonic()
            psutil.cpu_percent(None)
            busy: list[float] = []
            while time.time() < window_end:
                busy.append(psutil.cpu_percent(interval=5))
                stack.check()
            wall = time.monotonic() - t0
            stack_cpu, pg_cpu = stack.cpu_seconds() - cpu0, stack.pg.cpu_seconds() - pg0
            # Runs due in the window get until one interval after their due time to finish.
            time.sleep(min(period, 120))
            runs = [r for r in stack.all_runs()
                    if r.get("run_after") and window_start <= iso_ts(r["run_after"]) < window_end
                    and r["run_type"] == "scheduled"]
            now = time.time()
    lags = [iso_ts(r["start_date"]) - iso_ts(r["run_after"]) for r in runs if r.get("start_date")]
    within = [r for r in runs if r["state"] in TERMINAL and r.get("end_date")
              and iso_ts(r["end_date"]) <= iso_ts(r["run_after"]) + period]
    expected = len(ids) * intervals
    cores = psutil.cpu_count() or 1
    return {
        "bench": "fleet", "targets": n, "interval_s": period, "intervals_observed": intervals,
        "settings": FLEET_SETTINGS, "dag_processor_first_parse_s": round(parsed_s, 1),
        "runs_expected": expected, "runs_seen": len(runs), "runs_started": len(lags),
        "runs_by_state": {s: sum(1 for r in runs if r["state"] == s) for s in {r["state"] for r in runs}},
        "finished_within_interval": len(within),
        "finished_within_interval_pct": round(100 * len(within) / expected, 2) if expected else None,
        "start_lag_s": {"p50": pct(lags, 0.5), "p95": pct(lags, 0.95), "max": max(lags) if lags else None},
        "cpu_busy_pct_system": {"mean": round(sum(busy) / len(busy), 1) if busy else None,
                                "p95": pct(busy, 0.95)},
        "cpu_busy_pct_stack_and_db": round(100 * (stack_cpu + pg_cpu) / (wall * cores), 1),
        "stack_cpu_s_per_run": round(stack_cpu / max(1, len(runs)), 3),
        "db_cpu_s_per_run": round(pg_cpu / max(1, len(runs)), 3),
        "load_average_at_end": os.getloadavg(), "measured_until": now,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="bench 8(c): a fleet of idle targets on PostgreSQL + LocalExecutor")
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--interval-minutes", type=int, default=5)
    parser.add_argument("--intervals", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    result = measure(args.targets, args.interval_minutes, args.intervals)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
