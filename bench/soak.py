"""Soak and chaos run (issue #15 item 7; about 30 minutes, not in CI).

50 targets on PostgreSQL + LocalExecutor + the real scheduler, every 2 minutes (spread by ``H``): most are
idle, ``--deliveries`` of them deliver real PRs to the fake GitHub (git over HTTP, every request checked
against GitHub's description), where a "human" merges each open PR a few minutes later so the next task
is delivered. During the run:

- the scheduler is restarted every ``--scheduler-every`` minutes (SIGTERM, as a deploy does);
- PostgreSQL is restarted once (``pg_ctl restart -m fast``: every connection is cut);
- for a while the fake GitHub answers 5xx and secondary-rate-limit 403s (``retry-after``).

Afterwards, with the chaos stopped and the runs drained, it checks from the database and the fake:
zero duplicate PRs (never two open PRs for one task, never two PRs for one branch), zero lost or
duplicated evidence records (exactly one per finished run), and no run past its ``dagrun_timeout``.

    .venv/bin/python -m bench.soak --minutes 30 --out bench/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.fleet import idle_repo, pct
from bench.fleet_stack import FleetStack, iso_ts
from leviathan_lib.demo import create_demo_repo
from leviathan_lib.git.runner import run_git

TOKEN_ENV = "LEVIATHAN_SOAK_TOKEN"
CONN_ID = "github_soak"
BRANCH = re.compile(r"^agent/(?P<task>[^/]+)/(?P<attempt>\d+)$")


class Chaos(threading.Thread):
    """The schedule of faults, on a clock from the start of the run; every step is logged with its time."""

    def __init__(self, stack: FleetStack, fake: Any, minutes: float, scheduler_every: float):
        super().__init__(daemon=True)
        self.stack, self.fake, self.minutes, self.scheduler_every = stack, fake, minutes, scheduler_every
        self.log: list[dict[str, Any]] = []
        self.stop_flag = threading.Event()
        self.errors: list[str] = []

    def note(self, what: str) -> None:
        self.log.append({"t_s": round(time.monotonic() - self.t0, 1), "what": what})

    def run(self) -> None:
        self.t0 = time.monotonic()
        total = self.minutes * 60
        pg_at, faults_from, faults_to = 0.45 * total, 0.25 * total, 0.25 * total + min(300, 0.15 * total)
        next_scheduler, pg_done = self.scheduler_every * 60, False
        while not self.stop_flag.wait(5):
            t = time.monotonic() - self.t0
            if t >= total:
                return
            try:
                if t >= next_scheduler:
                    self.stack.restart("scheduler")
                    self.note("scheduler restarted")
                    next_scheduler += self.scheduler_every * 60
                if not pg_done and t >= pg_at:
                    self.stack.pg.restart()
                    pg_done = True
                    self.note("PostgreSQL restarted (fast: connections cut)")
                if faults_from <= t < faults_to:
                    self._github_faults()
                    if not any(e["what"].startswith("GitHub faults on") for e in self.log):
                        self.note("GitHub faults on (5xx, secondary rate limit)")
                elif t >= faults_to and any(e["what"].startswith("GitHub faults on") for e in self.log) \
                        and not any(e["what"].startswith("GitHub faults off") for e in self.log):
                    with self.fake.lock:
                        self.fake.faults.clear()
                    self.note("GitHub faults off")
            except Exception as exc:  # noqa: BLE001 - a failed chaos step is reported, the run goes on
                self.errors.append(f"{t:.0f}s: {exc}")

    def _github_faults(self) -> None:
        """Keep a few faults queued: two 502/503s and one secondary rate limit, on any repository call."""
        with self.fake.lock:
            queued = sum(f.times for f in self.fake.faults)
        if queued >= 3:
            return
        self.fake.inject("GET", r"/repos/.*", 502, body={"message": "Server Error"}, times=1)
        self.fake.inject("POST", r"/repos/.*", 503, body={"message": "Service Unavailable"}, times=1)
        self.fake.inject("GET", r"/repos/.*", 403, times=1, headers={"retry-after": "3"}, body={
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"})


class Reviewer(threading.Thread):
    """A human on the fake GitHub: merges each open Leviathan PR a few minutes after it opened (fast-forward)."""

    def __init__(self, fake: Any, repos: dict[str, Path], after_s: float):
        super().__init__(daemon=True)
        self.fake, self.repos, self.after_s = fake, repos, after_s
        self.stop_flag = threading.Event()
        self.max_open_per_task = 0
        self.merged = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop_flag.wait(5):
            for full_name, bare in self.repos.items():
                try:
                    self._look(full_name, bare)
                except Exception as exc:  # noqa: BLE001 - reported, not fatal
                    self.errors.append(f"{full_name}: {exc}")

    def _look(self, full_name: str, bare: Path) -> None:
        with self.fake.lock:
            pulls = [dict(p) for p in self.fake.open_pulls(full_name)]
        per_task = Counter(m.group("task") for p in pulls if (m := BRANCH.match(p["head"]["ref"])))
        self.max_open_per_task = max([self.max_open_per_task, *per_task.values()])
        for pr in pulls:
            if time.time() - iso_ts(pr["created_at"]) < self.after_s:
                continue
            head = run_git(["--git-dir", str(bare), "rev-parse", pr["head"]["ref"]]).stdout.strip()
            base = run_git(["--git-dir", str(bare), "rev-parse", "main"]).stdout.strip()
            ancestor = run_git(["--git-dir", str(bare), "merge-base", "--is-ancestor", base, head], check=False)
            if ancestor.returncode != 0:
                continue  # not a fast-forward: left for Leviathan's own refresh, not this reviewer
            run_git(["--git-dir", str(bare), "update-ref", "refs/heads/main", head, base])
            with self.fake.lock:
                self.fake.human_merge(full_name, pr["number"])
            self.merged += 1


def _targets(base: Path, fake: Any, n: int, deliveries: int) -> dict[str, Path]:
    idle = idle_repo(base / "repos" / "idle.git")
    repos: dict[str, Path] = {}
    for i in range(n):
        tid = f"s{i:03d}"
        text = (f"target_id: {tid}\nautonomy_enabled: true\nschedule_cron: \"*/2 * * * *\"\n"
                "worker_backend: local\nallowed_path_prefixes: [.leviathan/, docs/]\nattempt_timeout_seconds: 300\n")
        if i < deliveries:
            full_name = f"acme/soak{i}"
            bare = create_demo_repo(base / "repos" / f"{tid}.git")
            fake.add_repo(full_name, bare)
            repos[full_name] = bare
            text += (f"target_repo_url: {fake.repo_url(full_name)}\nforge: github\nforge_conn_id: {CONN_ID}\n"
                     "max_open_prs: 1\nmax_prs_per_hour: 30\n")
        else:
            text += f"target_repo_url: {idle}\nforge: local\n"
        (base / "targets" / f"{tid}.yaml").write_text(text, encoding="utf-8")
    return repos


def _evidence_check(stack: FleetStack, due_before: float) -> dict[str, Any]:
    """One evidence record per finished run due before ``due_before``: counted in the database, each record
    validated."""
    from leviathan_lib.evidence.records import CycleRecord

    conn = stack.pg.connect(stack.db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT dag_id, run_id, state, start_date, end_date FROM dag_run "
                        "WHERE dag_id LIKE 'leviathan\\_\\_%%' AND run_after < to_timestamp(%s)", (due_before,))
            runs = cur.fetchall()
            cur.execute("SELECT e.source_dag_id, e.source_run_id, e.extra FROM asset_event e "
                        "JOIN asset a ON a.id = e.asset_id WHERE a.uri LIKE 'leviathan://targets/%%/evidence'")
            events = cur.fetchall()
            cur.execute("SELECT state, count(*) FROM task_instance "
                        "WHERE dag_id LIKE 'leviathan\\_\\_%%' GROUP BY state")
            ti_states = dict(cur.fetchall())
            cur.execute("SELECT count(*) FROM task_instance WHERE dag_id LIKE 'leviathan\\_\\_%%' AND try_number > 1")
            retried = cur.fetchone()[0]
    finally:
        conn.close()
    judged = {(d, r) for d, r, *_ in runs}
    events = [e for e in events if (e[0], e[1]) in judged]
    per_run = Counter((dag, run) for dag, run, _ in events)
    invalid, reasons = 0, Counter()
    for _, _, extra in events:
        try:
            record = CycleRecord.model_validate(extra if isinstance(extra, dict) else json.loads(extra))
            reasons[record.stopped_reason or record.decision] += 1
        except Exception:  # noqa: BLE001 - an invalid record is exactly what this counts
            invalid += 1
    finished = [(d, r) for d, r, state, _, _ in runs if state in ("success", "failed")]
    return {
        "runs_by_state": dict(Counter(state for _, _, state, _, _ in runs)),
        "task_instances_by_state": {str(k): v for k, v in ti_states.items()},
        "task_instances_retried": retried,
        "evidence_records": len(events), "evidence_records_invalid": invalid,
        "finished_runs_without_record": sum(1 for key in finished if per_run[key] == 0),
        "runs_with_more_than_one_record": sum(1 for n in per_run.values() if n > 1),
        "records_by_stopped_reason": dict(reasons.most_common()),
        "runs": runs,
    }


def soak(minutes: float, n: int, deliveries: int, scheduler_every: float, merge_after_s: float) -> dict[str, Any]:
    from tests.fake_github import FakeGithub, connection_env

    token = os.environ.get(TOKEN_ENV) or "soak-" + os.urandom(12).hex()
    with tempfile.TemporaryDirectory(prefix="leviathan-soak-") as tmp, FakeGithub(token) as fake:
        base = Path(tmp)
        (base / "targets").mkdir(parents=True)
        repos = _targets(base, fake, n, deliveries)
        env = {f"AIRFLOW_CONN_{CONN_ID.upper()}": connection_env(fake)}
        with FleetStack(base, extra_env=env) as stack:
            stack.wait_dags(n, 900)
            stack.unpause_all()
            chaos, reviewer = Chaos(stack, fake, minutes, scheduler_every), Reviewer(fake, repos, merge_after_s)
            started = time.time()
            chaos.start()
            reviewer.start()
            deadline = time.monotonic() + minutes * 60
            while time.monotonic() < deadline:
                time.sleep(10)
                stack.check()
            chaos.stop_flag.set()
            chaos.join(timeout=120)
            with fake.lock:
                fake.faults.clear()
            # Drain: the runs due before now must all end (bounded by the DAG timeout); later ones are not
            # judged. Pausing instead would freeze the running ones (a paused DAG's tasks are not scheduled).
            drain_from = time.time()
            drain_deadline = time.monotonic() + 900
            while time.monotonic() < drain_deadline:
                active = [r for r in stack.all_runs() if r["state"] in ("running", "queued")
                          and r.get("run_after") and iso_ts(r["run_after"]) < drain_from]
                if not active:
                    break
                time.sleep(10)
            stack.call("PATCH", "/api/v2/dags?dag_id_pattern=leviathan__%25", {"is_paused": True})
            reviewer.stop_flag.set()
            reviewer.join(timeout=30)
            evidence = _evidence_check(stack, drain_from)
            stuck_after_s = (300 + 15 * 60)  # attempt_timeout_seconds + the factory's 15-minute margin
            now = time.time()
            stuck = [f"{d}/{r}" for d, r, state, start, _ in evidence.pop("runs")
                     if state in ("running", "queued") and start and now - start.timestamp() > stuck_after_s]
            runs = stack.all_runs()
            restarts = dict(stack.restarts)
        lags = [iso_ts(r["start_date"]) - iso_ts(r["run_after"]) for r in runs
                if r.get("start_date") and r.get("run_after") and r["run_type"] == "scheduled"]
        pulls = [(name, p) for name, repo in fake.repos.items() for p in repo.pulls]
        per_branch = Counter((name, p["head"]["ref"]) for name, p in pulls)
        statuses = Counter(s for _, _, s, _ in fake.requests)
        return {
            "bench": "soak", "minutes": minutes, "targets": n, "delivering_targets": deliveries,
            "started_at": started, "judged_runs_due_before": drain_from,
            "chaos": chaos.log, "chaos_errors": chaos.errors, "restarts": restarts,
            "github_requests": len(fake.requests), "github_by_status": {str(k): v for k, v in statuses.items()},
            "github_spec_errors": fake.errors[:20], "prs_opened": len(pulls),
            "prs_merged_by_reviewer": reviewer.merged, "reviewer_errors": reviewer.errors[:20],
            "duplicate_prs_same_branch": sum(1 for c in per_branch.values() if c > 1),
            "max_open_prs_for_one_task_seen": reviewer.max_open_per_task,
            "runs_stuck_past_dagrun_timeout": stuck,
            "start_lag_s": {"p50": pct(lags, 0.5), "p95": pct(lags, 0.95), "max": max(lags) if lags else None},
            **evidence,
            "load_average_at_end": os.getloadavg(),
            "per_task_prs": {f"{name}:{m.group('task')}": c for (name, ref), c in Counter(
                (name, p["head"]["ref"]) for name, p in pulls).items() if (m := BRANCH.match(ref))},
        }


def verdict(report: dict[str, Any]) -> list[str]:
    """The on-call summary: each promise and whether the run kept it."""
    checks = [
        ("zero duplicate PRs", report["duplicate_prs_same_branch"] == 0
         and report["max_open_prs_for_one_task_seen"] <= 1),
        ("zero lost evidence records", report["finished_runs_without_record"] == 0),
        ("zero duplicated evidence records", report["runs_with_more_than_one_record"] == 0),
        ("zero invalid (half-written) records", report["evidence_records_invalid"] == 0),
        ("no run stuck past its dagrun_timeout", not report["runs_stuck_past_dagrun_timeout"]),
        ("every GitHub request and response within the description", not report["github_spec_errors"]),
    ]
    return [f"{'PASS' if ok else 'FAIL'}  {name}" for name, ok in checks]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="soak and chaos run on PostgreSQL + LocalExecutor")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--deliveries", type=int, default=5)
    parser.add_argument("--scheduler-every", type=float, default=5, help="minutes between scheduler restarts")
    parser.add_argument("--merge-after", type=float, default=180, help="seconds before the reviewer merges a PR")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = soak(args.minutes, args.targets, args.deliveries, args.scheduler_every, args.merge_after)
    result["verdict"] = verdict(result)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    print("\n".join(result["verdict"]))
    raise SystemExit(0 if all(v.startswith("PASS") for v in result["verdict"]) else 1)
