"""Issue #29 benchmark (b): a fleet of webhook targets on PostgreSQL + LocalExecutor, the real scheduler.

``--targets`` idle targets (autonomy on, a backlog with no ready task, each its own bare repository) with
``webhooks: true`` and the default hourly safety net (``H * * * *``, spread per target). The unpause's
catch-up runs (one per target, all at once) are left to drain first. Then, for ``--minutes`` minutes,
``--share`` of the targets (1 %) get a signed ``push`` delivery each minute, through the real receiver in
the API server. Judged from the API server's timestamps, for every run due in the window (safety nets and
delivery-triggered runs alike): the start lag (``start_date - run_after``), the share that finished within
their interval (the safety net's hour; for a delivery's run: before the next minute's deliveries, 60 s), and
how busy the CPUs were. The CPU per target per day is computed from the window's CPU, and set against
``*/5`` polling at the per-run CPU this run measured.

    .venv/bin/python -m bench.fleet_webhooks --targets 2000 --minutes 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.fleet import IDLE_BACKLOG, pct
from bench.fleet_stack import FLEET_SETTINGS, TERMINAL, FleetStack, iso_ts
from leviathan_lib.core.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from leviathan_lib.forge import local_webhooks
from leviathan_lib.git.runner import run_git
from tests.e2e.test_webhooks import SECRET, secret_env

HOUR = 3600.0
#: A delivery's run must finish before the next minute's deliveries.
EVENT_INTERVAL = 60.0
#: The dag-processor re-parses the one factory file (all targets) at most this often: target files change
#: rarely, and at 2,000 targets a parse costs tens of CPU-seconds (docs/performance.md).
SETTINGS = {**FLEET_SETTINGS, "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600"}


def template(base: Path) -> Path:
    work = base / "template-work"
    (work / ".leviathan").mkdir(parents=True)
    (work / ".leviathan" / "backlog.yaml").write_text(IDLE_BACKLOG, encoding="utf-8")
    (work / ".leviathan" / "recipes.yaml").write_text("recipes: {}\n", encoding="utf-8")
    run_git(["init", "--quiet", "-b", "main"], cwd=work)
    run_git(["add", "-A"], cwd=work)
    run_git(["-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "--quiet", "-m",
             "idle backlog"], cwd=work)
    return work


def write_targets(base: Path, folder: Path, n: int) -> dict[str, Path]:
    """One bare repository per target (a delivery names one repository, so it must wake one target)."""
    work = template(base)
    repos: dict[str, Path] = {}
    for i in range(n):
        tid = f"w{i:04d}"
        bare = base / "repos" / f"{tid}.git"
        subprocess.run(["git", "clone", "--quiet", "--bare", str(work), str(bare)], check=True, timeout=60)
        (folder / f"{tid}.yaml").write_text(
            f"target_id: {tid}\ntarget_repo_url: {bare}\nautonomy_enabled: true\nwebhooks: true\n"
            "forge: local\nworker_backend: local\nallowed_path_prefixes: [docs/]\n", encoding="utf-8")
        repos[tid] = bare
    return repos


def active_runs(stack: FleetStack) -> int:
    queued = stack.call("GET", "/api/v2/dags/~/dagRuns?limit=1&state=queued&state=running")
    return int(queued["total_entries"])


def deliver(client: httpx.Client, url: str, bare: Path) -> int:
    body = json.dumps(local_webhooks.build("push", bare, branch="main")).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(SECRET, body), EVENT_HEADER: "push",
               DELIVERY_HEADER: str(uuid.uuid4())}
    return client.post(url, content=body, headers=headers).status_code


def measure(n: int, minutes: int, share: float, drain_timeout: float) -> dict[str, Any]:
    import psutil

    rng = random.Random(29)
    with tempfile.TemporaryDirectory(prefix="leviathan-bench-fleetwh-") as tmp:
        base = Path(tmp)
        (base / "targets").mkdir(parents=True)
        repos = write_targets(base, base / "targets", n)
        extra = {**SETTINGS, **secret_env(), "AIRFLOW__LEVIATHAN__WEBHOOK_RATE_PER_MINUTE": "1000"}
        with FleetStack(base, extra_env=extra) as stack:
            parse_start = time.monotonic()
            stack.wait_dags(n, 1800)
            parsed_s = time.monotonic() - parse_start
            stack.unpause_all()
            unpaused = time.monotonic()
            time.sleep(30)
            while active_runs(stack) and time.monotonic() - unpaused < drain_timeout:
                stack.check()
                time.sleep(10)
            drained_s = time.monotonic() - unpaused
            left = active_runs(stack)
            url = f"{stack.api.base}/leviathan/webhooks/github"
            per_minute = max(1, round(n * share))
            window_start = time.time()
            cpu0, pg0, t0 = stack.cpu_seconds(), stack.pg.cpu_seconds(), time.monotonic()
            psutil.cpu_percent(None)
            busy: list[float] = []
            statuses: dict[str, int] = {}
            with httpx.Client(timeout=60) as client:
                for minute in range(minutes):
                    for tid in rng.sample(sorted(repos), per_minute):
                        code = str(deliver(client, url, repos[tid]))
                        statuses[code] = statuses.get(code, 0) + 1
                    while time.time() < window_start + (minute + 1) * 60:
                        busy.append(psutil.cpu_percent(interval=5))
                        stack.check()
            window_end = time.time()
            wall = time.monotonic() - t0
            stack_cpu, pg_cpu = stack.cpu_seconds() - cpu0, stack.pg.cpu_seconds() - pg0
            time.sleep(120)  # the last minute's runs finish
            runs = [r for r in stack.all_runs()
                    if r.get("run_after") and window_start <= iso_ts(r["run_after"]) < window_end]
            now = time.time()
    by_type: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_type.setdefault(run["run_type"], []).append(run)
    lags = [iso_ts(r["start_date"]) - iso_ts(r["run_after"]) for r in runs if r.get("start_date")]

    def within(run: dict[str, Any]) -> bool:
        limit = HOUR if run["run_type"] == "scheduled" else EVENT_INTERVAL
        return run["state"] in TERMINAL and bool(run.get("end_date")) and \
            iso_ts(run["end_date"]) <= iso_ts(run["run_after"]) + limit

    cores = psutil.cpu_count() or 1
    cpu_per_run = (stack_cpu + pg_cpu) / max(1, len(runs))
    per_target_day = (stack_cpu + pg_cpu) / wall * 86400 / n
    return {
        "bench": "fleet_webhooks", "targets": n, "minutes": minutes, "deliveries_per_minute": per_minute,
        "settings": SETTINGS, "dag_processor_first_parse_s": round(parsed_s, 1),
        "unpause_drain_s": round(drained_s, 1), "active_runs_left_after_drain": left,
        "delivery_statuses": statuses,
        "runs_in_window": {t: len(v) for t, v in by_type.items()},
        "runs_by_state": {s: sum(1 for r in runs if r["state"] == s) for s in {r["state"] for r in runs}},
        "finished_within_interval": sum(1 for r in runs if within(r)),
        "finished_within_interval_pct": round(100 * sum(1 for r in runs if within(r)) / len(runs), 2)
        if runs else None,
        "start_lag_s": {"p50": pct(lags, 0.5), "p95": pct(lags, 0.95), "max": max(lags) if lags else None},
        "start_lag_s_by_type": {t: {"p50": pct(v, 0.5), "p95": pct(v, 0.95)} for t, v in {
            t: [iso_ts(r["start_date"]) - iso_ts(r["run_after"]) for r in rs if r.get("start_date")]
            for t, rs in by_type.items()}.items()},
        "cpu_busy_pct_system": {"mean": round(sum(busy) / len(busy), 1) if busy else None,
                                "p95": pct(busy, 0.95)},
        "cpu_busy_pct_stack_and_db": round(100 * (stack_cpu + pg_cpu) / (wall * cores), 1),
        "cpu_s_per_run_stack_and_db": round(cpu_per_run, 3),
        "cpu_s_per_target_per_day_webhooks": round(per_target_day, 1),
        "cpu_s_per_target_per_day_polling_5min_computed": round(cpu_per_run * 288, 1),
        "load_average_at_end": os.getloadavg(), "measured_until": now,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="bench #29(b): a fleet of webhook targets, hourly safety net")
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--share", type=float, default=0.01, help="share of the targets delivered to each minute")
    parser.add_argument("--drain-timeout", type=float, default=3600, help="seconds to wait for the unpause's runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fleet_webhooks.json")
    args = parser.parse_args()
    result = measure(args.targets, args.minutes, args.share, args.drain_timeout)
    text = json.dumps(result, indent=2, default=str)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
