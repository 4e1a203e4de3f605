"""Issue #29 benchmarks (a) and (c) on the real stack (api-server, scheduler, dag-processor; PostgreSQL).

(a) Merge to next cycle: a PR merged on the local forge (``leviathan forge merge`` with the forge's webhook
    configured, so it posts GitHub's ``pull_request`` and ``push`` deliveries to Spider) until the next
    cycle's ``plan`` starts (its task instance's ``start_date``), for a ``webhooks: true`` target. Then, in
    the same stack, the ``*/5`` cron side is measured: one merge on each of as many cron-only targets, at
    moments drawn uniformly over one interval, each until its target's next ``plan`` starts. The expected
    cron figures (a uniform wait over 0-300 s plus the scheduler-to-``plan`` delay) are given beside them.
(c) Flood: ``--deliveries`` signed deliveries spread over ``--seconds`` for ``--targets`` targets (each
    delivery a ``push`` to one target's repository, unique delivery ids), sent by 16 threads, while
    ``/leviathan/health`` is probed every 0.5 s. The scheduler is stopped during the flood (so the 2 cores
    measure the receiver, not 100 cycles), then started until it has created the runs the flood asked
    for: at most one per target is the claim. The per-source rate limit is raised to let every delivery
    reach the database (one sender address here).

Run: ``.venv/bin/python -m bench.webhooks [--quick]``; writes ``bench/results/webhooks.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import PYTHON, ROOT
from leviathan_lib.core import names
from leviathan_lib.core.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from leviathan_lib.demo import create_demo_target
from leviathan_lib.demo.runner import Api, Stack, _environment, _password, _wait
from leviathan_lib.forge import local_webhooks
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from tests.airflow_helpers import switch_on_in
from tests.e2e.test_scheduler import _free_port
from tests.e2e.test_webhooks import SECRET, secret_env, webhooks_target
from tests.metadata_db import PostgresDatabase

CRON_SECONDS = 300.0


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


class Bench:
    """One stack on a fresh PostgreSQL database and a fresh folder."""

    def __init__(self, root: Path, **extra: str) -> None:
        self.root, self.port = root, _free_port()
        self.database = PostgresDatabase.for_this_run()
        self.database.create()
        self.env = {**_environment(root, self.port), **self.database.airflow_env(), **secret_env(),
                    "AIRFLOW__CORE__PARALLELISM": "4", **extra}
        self.base = f"http://127.0.0.1:{self.port}"
        self.stacks: list[Stack] = []

    def migrate(self) -> None:
        subprocess.run([PYTHON, "-m", "airflow", "db", "migrate"], env=self.env, check=True, capture_output=True)
        switch_on_in(self.env)

    def start(self, components: tuple[str, ...]) -> Stack:
        stack = Stack(self.env, self.root / "logs", components)
        stack.start()
        self.stacks.append(stack)
        return stack

    def api(self, stack: Stack) -> Api:
        api = Api(self.base)
        _wait("the API server", lambda: api.call("GET", "/api/v2/monitor/health"), 300, stack)
        api.login("admin", _wait("the admin password", lambda: _password(self.root / "airflow"), 60, stack))
        return api

    def close(self) -> None:
        for stack in self.stacks:
            stack.stop()
        self.database.drop()


def _branch_from_main(bare: Path, work: Path, branch: str, path: str, text: str) -> None:
    """A change on a new ``branch`` from ``main``, pushed (the branch a PR is then opened for)."""
    if not work.exists():
        run_git(["clone", "--quiet", str(bare), str(work)])
    run_git(["fetch", "--quiet", "origin"], cwd=work)
    run_git(["checkout", "--quiet", "-B", branch, "origin/main"], cwd=work)
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_text(text, encoding="utf-8")
    run_git(["add", "-A"], cwd=work)
    run_git(["commit", "--quiet", "-m", f"bench: {path}"], cwd=work)
    run_git(["push", "--quiet", "origin", f"HEAD:refs/heads/{branch}"], cwd=work)


def _plan_start(api: Api, dag: str, run_id: str) -> float | None:
    ti = api.call("GET", f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/{names.TASK_PLAN}")
    return datetime.fromisoformat(ti["start_date"]).timestamp() if ti.get("start_date") else None


def _runs(api: Api, dag: str) -> list[dict[str, Any]]:
    return api.call("GET", f"/api/v2/dags/{dag}/dagRuns?limit=100&order_by=-run_after")["dag_runs"]


def _cron_latency(root: Path, api: Api, stack: Stack, polled: list[str]) -> list[float]:
    """The same merge on ``*/5`` targets without webhooks, in the same stack: one merge per target at a
    moment drawn uniformly over one interval (so the samples span the interval as merges do), each until the
    first ``plan`` of that target that starts after it. Bounded: one interval for the merges, two for the
    last cycle."""
    rng = random.Random(29)
    for name in polled:  # their catch-up runs (and the PR each opens) end first
        _wait(f"{name}'s catch-up run", lambda name=name: (runs := _runs(api, names.dag_id(name))) and
              all(r["state"] in ("success", "failed") for r in runs), 600, stack)
    pulls = {}
    for i, name in enumerate(polled):
        bare = root / "repos" / f"{name}.git"
        branch = f"human/bench-{i}"
        _branch_from_main(bare, root / f"work-{name}", branch, f"docs/bench-{i}.md", f"merge {i}\n")
        pulls[name] = (bare, LocalForge(bare).create_pr(head=branch, base="main", title=f"bench {i}", body="b").number)
    start = time.time()
    merged: dict[str, float] = {}
    for offset, name in sorted((rng.uniform(0, CRON_SECONDS), name) for name in polled):
        time.sleep(max(0.0, start + offset - time.time()))
        bare, number = pulls[name]
        merged[name] = time.time()
        LocalForge(bare).merge(number)
        stack.check()

    def first_plan_after(name: str) -> float | None:
        starts = [_plan_start(api, names.dag_id(name), r["dag_run_id"]) for r in _runs(api, names.dag_id(name))
                  if r.get("start_date") and (not r.get("end_date") or
                                              datetime.fromisoformat(r["end_date"]).timestamp() >= merged[name])]
        found = [t for t in starts if t is not None and t >= merged[name]]
        return min(found) if found else None

    samples = []
    for name in polled:
        started = _wait(f"{name}'s next cycle", lambda name=name: first_plan_after(name), 2 * CRON_SECONDS + 60,
                        stack)
        samples.append(started - merged[name])
        print(f"  cron {name}: plan started {samples[-1]:.1f} s after the merge", flush=True)
    return samples


def latency(root: Path, repeats: int) -> dict[str, Any]:
    bench = Bench(root)
    target = "merged"
    dag = names.dag_id(target)
    try:
        webhooks_target(root, target)
        polled = [f"polled{i}" for i in range(repeats)]
        for name in polled:
            create_demo_target(root, target_id=name)  # the `*/5` cron, no webhooks
        bench.migrate()
        stack = bench.start(("api-server", "scheduler", "dag-processor"))
        api = bench.api(stack)
        for name in (target, *polled):
            _wait("the DAG", lambda name=name: api.call("GET", f"/api/v2/dags/{names.dag_id(name)}"), 300, stack)
            api.call("PATCH", f"/api/v2/dags/{names.dag_id(name)}", {"is_paused": False})
        _wait("Spider", lambda: httpx.get(f"{bench.base}/leviathan/health", timeout=120).status_code, 300, stack)
        # The unpause queues one catch-up run of the safety net: it must end before the first merge, or the
        # merge's delivery is coalesced into it and its start is measured instead.
        _wait("the unpause's catch-up run", lambda: (runs := _runs(api, dag)) and
              all(r["state"] in ("success", "failed") for r in runs), 300, stack)
        bare = root / "repos" / f"{target}.git"
        forge = LocalForge(bare)
        env = {**bench.env, local_webhooks.URL_ENV: f"{bench.base}/leviathan/webhooks/github",
               local_webhooks.SECRET_ENV: SECRET}
        samples, queue_to_plan = [], []
        for i in range(repeats):
            branch = f"agent/bench-{i}/1"
            _branch_from_main(bare, root / "work", branch, f"docs/bench-{i}.md", f"merge {i}\n")
            number = forge.create_pr(head=branch, base="main", title=f"bench {i}", body="bench").number
            _wait("no active run", lambda: all(r["state"] in ("success", "failed") for r in _runs(api, dag)), 300,
                  stack)
            known = {r["dag_run_id"] for r in _runs(api, dag)}
            merged_at = time.time()
            done = subprocess.run([PYTHON, "-m", "leviathan_lib.cli.main", "forge", "merge", "--repo", str(bare),
                                   str(number)], env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0 and "webhook: pull_request 202" in done.stdout, done.stdout + done.stderr

            def new_run(known: set[str] = known) -> dict[str, Any] | None:
                return next((r for r in _runs(api, dag) if r["dag_run_id"] not in known), None)

            run = _wait("the merge's run", new_run, 300, stack)
            assert run["run_type"] == "asset_triggered", run  # the delivery's run, not the safety net's
            started = _wait("plan", lambda run=run: _plan_start(api, dag, run["dag_run_id"]), 300, stack)
            samples.append(started - merged_at)
            queued = datetime.fromisoformat(run["queued_at"]).timestamp()
            queue_to_plan.append(started - queued)
            print(f"  merge {i}: plan started {samples[-1]:.1f} s after the merge ({run['run_type']})", flush=True)
        delay = statistics.median(queue_to_plan)
        cron = _cron_latency(root, api, stack, polled)
        return {
            "repeats": repeats, "webhooks_seconds": samples, "webhooks_p95": p95(samples),
            "webhooks_median": statistics.median(samples), "queued_to_plan_median": delay,
            "cron_seconds": cron, "cron_p95": p95(cron), "cron_median": statistics.median(cron),
            "cron_expected_mean_computed": CRON_SECONDS / 2 + delay,
            "cron_expected_p95_computed": 0.95 * CRON_SECONDS + delay,
        }
    finally:
        bench.close()


def _target_files(root: Path, count: int) -> list[tuple[str, Path]]:
    out = []
    for i in range(count):
        target = f"flood-{i:03d}"
        webhooks_target(root, target)
        out.append((target, root / "repos" / f"{target}.git"))
    return out


def _probe(base: str, stop: threading.Event, out: list[tuple[float, int]]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                status = client.get(f"{base}/leviathan/health").status_code
            except httpx.HTTPError:
                status = 0
            out.append((time.perf_counter() - start, status))
            stop.wait(0.5)


def _pending(database: PostgresDatabase) -> dict[str, int]:
    """Per DAG: queued asset triggers plus queued and running runs (straight from the metadata DB)."""
    import psycopg2

    server = database.server
    with psycopg2.connect(f"postgresql://{server}/{database.name}") as conn, conn.cursor() as cur:
        cur.execute("SELECT target_dag_id, count(*) FROM asset_dag_run_queue GROUP BY 1")
        triggers = dict(cur.fetchall())
        cur.execute("SELECT dag_id, count(*) FROM dag_run GROUP BY 1")
        runs = dict(cur.fetchall())
    return {dag: triggers.get(dag, 0) + runs.get(dag, 0) for dag in set(triggers) | set(runs)}


def flood(root: Path, targets: int, deliveries: int, seconds: float) -> dict[str, Any]:
    bench = Bench(root, AIRFLOW__LEVIATHAN__WEBHOOK_RATE_PER_MINUTE=str(deliveries * 2))
    try:
        repos = _target_files(root, targets)
        bench.migrate()
        front = bench.start(("api-server", "dag-processor"))
        api = bench.api(front)
        _wait("every DAG", lambda: api.call("GET", "/api/v2/dags?dag_id_pattern=leviathan__flood%25&limit=1")[
            "total_entries"] >= targets, 600, front)
        for target, _ in repos:
            api.call("PATCH", f"/api/v2/dags/{names.dag_id(target)}", {"is_paused": False})
        _wait("Spider", lambda: httpx.get(f"{bench.base}/leviathan/health", timeout=120).status_code, 300, front)
        quiet: list[tuple[float, int]] = []
        stop = threading.Event()
        prober = threading.Thread(target=_probe, args=(bench.base, stop, quiet))
        prober.start()
        time.sleep(10)
        stop.set()
        prober.join()
        bodies = [json.dumps(local_webhooks.build("push", bare, branch="main")).encode() for _, bare in repos]
        url = f"{bench.base}/leviathan/webhooks/github"
        answers: list[tuple[float, int, str]] = []
        start = time.monotonic()

        def deliver(i: int, client: httpx.Client) -> None:
            time.sleep(max(0.0, start + i * seconds / deliveries - time.monotonic()))
            body = bodies[i % len(bodies)]
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(SECRET, body),
                       EVENT_HEADER: "push", DELIVERY_HEADER: str(uuid.uuid4())}
            began = time.perf_counter()
            try:
                answer = client.post(url, content=body, headers=headers)
                outcome = answer.json().get("targets", [{}])[0].get("outcome", answer.json().get("status", ""))
                answers.append((time.perf_counter() - began, answer.status_code, str(outcome)))
            except (httpx.HTTPError, ValueError) as exc:
                answers.append((time.perf_counter() - began, 0, type(exc).__name__))

        during: list[tuple[float, int]] = []
        stop = threading.Event()
        prober = threading.Thread(target=_probe, args=(bench.base, stop, during))
        prober.start()
        clients = [httpx.Client(timeout=60) for _ in range(16)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda i: deliver(i, clients[i % 16]), range(deliveries)))
        sent_seconds = time.monotonic() - start
        stop.set()
        prober.join()
        for client in clients:
            client.close()
        pending_before = _pending(bench.database)
        scheduler = bench.start(("scheduler",))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            created = _pending(bench.database)
            if sum(1 for v in created.values() if v) >= targets:
                break
            scheduler.check()
            time.sleep(2)
        created = _pending(bench.database)
        statuses: dict[str, int] = {}
        outcomes: dict[str, int] = {}
        for _, status, outcome in answers:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return {
            "targets": targets, "deliveries": deliveries, "planned_seconds": seconds,
            "sent_seconds": round(sent_seconds, 1), "statuses": statuses, "outcomes": outcomes,
            "delivery_p95_seconds": p95([a[0] for a in answers]),
            "health_quiet_p95_seconds": p95([q[0] for q in quiet]), "health_quiet_n": len(quiet),
            "health_flood_p95_seconds": p95([d[0] for d in during]), "health_flood_n": len(during),
            "health_flood_statuses": sorted({d[1] for d in during}),
            "pending_per_target_after_flood_max": max(pending_before.values(), default=0),
            "runs_per_target_after_scheduler_max": max(created.values(), default=0),
            "targets_with_a_run": sum(1 for v in created.values() if v),
        }
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a scaled run: 3 merges, 20 targets, 1000 deliveries")
    parser.add_argument("--part", choices=["a", "c", "both"], default="both")
    args = parser.parse_args()
    import tempfile

    out = ROOT / "bench" / "results" / "webhooks.json"
    results: dict[str, Any] = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    results.pop("note", None)  # a hand-written note about an earlier run would now mislead
    results.update(quick=args.quick, at=datetime.now(UTC).isoformat(timespec="seconds"))
    if args.part in ("a", "both"):
        with tempfile.TemporaryDirectory(prefix="leviathan-bench-wh-") as tmp:
            results["a_merge_to_cycle"] = latency(Path(tmp), 3 if args.quick else 10)
        print(json.dumps(results["a_merge_to_cycle"]), flush=True)
    if args.part in ("c", "both"):
        with tempfile.TemporaryDirectory(prefix="leviathan-bench-wh-") as tmp:
            size = (20, 1000, 60.0) if args.quick else (100, 10_000, 60.0)
            results["c_flood"] = flood(Path(tmp), *size)
        print(json.dumps(results["c_flood"]), flush=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
