"""Benchmarks 4, 5 and 8(b) on the real stack: api-server + scheduler + dag-processor (LocalExecutor).

4. Cycle overhead: trigger → ``record_evidence`` done for a no-op cycle (autonomy off → skip path),
   against DAGs of the same shape in the same dags folder: all-EmptyOperator (as the issue asks; the
   scheduler marks those done without running them) and no-op ``@task`` functions (the floor for
   Python tasks on this executor). Runs alternate; timestamps are the server's (queued_at, end_date).
5. Many targets: N targets with autonomy off on one cron; unpause them all, then for the runs of the
   first full interval report the lag ``start_date - run_after`` and whether each finished within it.
8(b). Idle cycle at the floor: the CPU the whole stack (every process of api-server, scheduler with its
   executor's task processes, dag-processor) spends on one idle Leviathan cycle against one run of a DAG
   with a single no-op ``@task`` (the floor), runs alternating. Two idle cycles: autonomy off, and the
   open-PR limit reached (a PR of the target open on the local forge: production's common idle case).
   Reported raw and net of the stack's background rate measured over a quiet window, per component too.

The stack runs on SQLite (the embedded default) or, with ``--db postgresql``, on a PostgreSQL database
of its own (``tests/metadata_db.py``: created for the run, dropped after). Its processes write and use
bytecode caches (under the run's folder) as an installed package does, whatever the caller's
``PYTHONDONTWRITEBYTECODE``: a task process forked without them compiles Leviathan's sources every time.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, family_cpu_seconds, ratio, summary
from leviathan_lib.core import names

SHAPE = '''
    plan >> [worker, skip, pr, record, outcome]
    worker >> pr >> record >> outcome
'''

BASELINES = '''"""Baselines for bench/stack.py: the Leviathan cycle's shape with nothing in it (generated)."""

from datetime import UTC, datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TriggerRule, task

with DAG(dag_id="bench_empty", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False,
         max_active_runs=1, is_paused_upon_creation=True):
    plan = EmptyOperator(task_id="plan")
    worker = EmptyOperator(task_id="run_worker")
    skip = EmptyOperator(task_id="skip")
    pr = EmptyOperator(task_id="open_pull_request")
    record = EmptyOperator(task_id="record_evidence", trigger_rule=TriggerRule.NONE_SKIPPED)
    outcome = EmptyOperator(task_id="cycle_outcome", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
''' + SHAPE + '''

def _noop(*args, **kwargs):
    return None


with DAG(dag_id="bench_noop", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False,
         max_active_runs=1, is_paused_upon_creation=True):
    plan = task.branch(task_id="plan")(lambda: ["skip"])()
    worker = task(task_id="run_worker")(_noop)()
    skip = EmptyOperator(task_id="skip")
    pr = task(task_id="open_pull_request")(_noop)()
    record = task(task_id="record_evidence", trigger_rule=TriggerRule.NONE_SKIPPED)(_noop)()
    outcome = task(task_id="cycle_outcome", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)(_noop)()
''' + SHAPE + '''

with DAG(dag_id="bench_floor", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False,
         max_active_runs=1, is_paused_upon_creation=True):
    task(task_id="noop")(_noop)()
'''

TERMINAL = ("success", "failed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class _Airflow:
    """A real stack on a throw-away folder, with a dags folder of our own."""

    def __init__(self, base: Path, dag_files: dict[str, str], targets: dict[str, str], db: str = "sqlite",
                 own_repo: dict[str, str] | None = None, settings: dict[str, str] | None = None):
        """``targets``: target id → cron, autonomy off, on one shared repository; ``own_repo``: target id →
        extra target-file lines, for targets with a repository (and so a local forge) of their own;
        ``settings``: Airflow environment settings over the shipped ones."""
        from leviathan_lib.demo import create_demo_repo
        from leviathan_lib.demo.runner import Api, Stack, _environment

        self.port = _free_port()
        dags, target_dir = base / "dags", base / "targets"
        dags.mkdir(parents=True)
        target_dir.mkdir()
        shutil.copy(ROOT / "dags" / "leviathan_targets.py", dags / "leviathan_targets.py")
        for name, text in dag_files.items():
            (dags / name).write_text(text, encoding="utf-8")
        bare = create_demo_repo(base / "repos" / "bench.git")
        for tid, schedule in targets.items():
            extra, repo = "autonomy_enabled: false\n", bare
            if own_repo and tid in own_repo:
                extra, repo = own_repo[tid], create_demo_repo(base / "repos" / f"{tid}.git")
            (target_dir / f"{tid}.yaml").write_text(
                f"target_id: {tid}\ntarget_repo_url: {repo}\n{extra}"
                f'schedule_cron: "{schedule}"\nschedule_jitter: false\nforge: local\nworker_backend: local\n',
                encoding="utf-8")  # one cron for all, unspread: the herd benchmark 5 measures
        self.repos = base / "repos"
        env = _environment(base, self.port)
        env.update(AIRFLOW__CORE__DAGS_FOLDER=str(dags), LEVIATHAN_TARGETS_DIR=str(target_dir),
                   AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5", PYTHONPYCACHEPREFIX=str(base / "pycache"))
        env.update(settings or {})
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.database = None
        if db == "postgresql":
            from tests.metadata_db import PostgresDatabase

            self.database = PostgresDatabase.for_this_run()
            self.database.create()
            env.update(self.database.airflow_env())
        elif db != "sqlite":
            raise ValueError(f"--db {db!r}: expected sqlite or postgresql")
        subprocess.run([PYTHON, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True,
                       timeout=300)
        # A new metadata DB has no switch (off); an operator switches it on, as production does once.
        subprocess.run([PYTHON, "-m", "leviathan_lib.cli.main", "resume", "--reason", "benchmark stack"], env=env,
                       check=True, capture_output=True, timeout=120)
        self.base, self.env = base, env
        self.stack = Stack(env, base / "logs")
        self.api = Api(f"http://127.0.0.1:{self.port}")

    def __enter__(self) -> _Airflow:
        from leviathan_lib.demo.runner import _password, _wait

        self.stack.start()
        try:
            _wait("the API server", lambda: self.api.call("GET", "/api/v2/monitor/health"), 180, self.stack)
            password = _wait("the admin password", lambda: _password(self.base / "airflow"), 60, self.stack)
            self.api.login("admin", password)
        except BaseException:
            self.stack.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stack.stop()
        if self.database is not None:
            self.database.drop()

    def wait_dags(self, dag_ids: list[str], timeout: float) -> None:
        from leviathan_lib.demo.runner import _wait

        def parsed():
            found = self.api.call("GET", "/api/v2/dags?limit=1000")["dags"]
            return {d["dag_id"] for d in found} >= set(dag_ids)

        _wait(f"{len(dag_ids)} DAGs to be parsed", parsed, timeout, self.stack)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=1000")["dag_runs"]

    def wait_idle(self, dag_id: str, timeout: float) -> None:
        from leviathan_lib.demo.runner import _wait

        _wait(f"{dag_id} to be idle", lambda: all(r["state"] in TERMINAL for r in self.runs(dag_id)) or None,
              timeout, self.stack)

    def cycle(self, dag_id: str, timeout: float = 300) -> dict[str, float]:
        """Trigger one run and wait for it; trigger → record_evidence end and → run end (server clock)."""
        from leviathan_lib.demo.runner import _wait

        run_id = self.api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
        run = _wait(f"run {run_id}", lambda: (r := self.api.call("GET", path))["state"] in TERMINAL and r,
                    timeout, self.stack)
        if run["state"] != "success":
            raise RuntimeError(f"{dag_id} run {run_id} ended {run['state']}")
        tis = {t["task_id"]: t for t in self.api.call("GET", path + "/taskInstances")["task_instances"]}
        queued = _ts(run["queued_at"])
        # The record is written by record_evidence after an attempt, by plan on a skip.
        writer = tis.get(names.TASK_RECORD_EVIDENCE)
        if not writer or writer["state"] != "success":
            writer = tis.get(names.TASK_PLAN) or writer
        return {"to_record_s": _ts(writer["end_date"]) - queued if writer else float("nan"),
                "to_end_s": _ts(run["end_date"]) - queued}

    def cpu_seconds(self) -> float:
        """CPU used so far by every process of the stack, reaped children included (psutil)."""
        return sum(self.cpu_by_component().values())

    def cpu_by_component(self) -> dict[str, float]:
        """CPU used so far by each component's processes (a scheduler's include its task processes)."""
        return {name: family_cpu_seconds(proc.pid) for name, proc in self.stack.procs.items()}


def cycle_overhead(quick: bool) -> list[dict[str, Any]]:
    repeats = 1 if quick else 5
    dag_ids = [names.dag_id("bench"), "bench_empty", "bench_noop"]  # bench_floor: see idle_cpu
    with tempfile.TemporaryDirectory(prefix="leviathan-bench-stack-") as tmp, \
            _Airflow(Path(tmp), {"bench_baselines.py": BASELINES}, {"bench": "0 0 1 1 *"}) as af:
        af.wait_dags(dag_ids, 240)
        for dag_id in dag_ids:
            af.api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        time.sleep(3)
        af.wait_idle(names.dag_id("bench"), 300)  # unpausing may start the latest scheduled run: let it finish
        af.cycle(names.dag_id("bench"))  # warm-up: first task processes pay imports and caches
        times: dict[str, list[dict[str, float]]] = {d: [] for d in dag_ids}
        for i in range(repeats):
            for dag_id in dag_ids if i % 2 == 0 else list(reversed(dag_ids)):
                times[dag_id].append(af.cycle(dag_id))
    rows = []
    subject = summary([t["to_record_s"] for t in times[names.dag_id("bench")]])
    for baseline_id in dag_ids[1:]:
        baseline = summary([t["to_record_s"] for t in times[baseline_id]])
        rows.append({"bench": "cycle", "baseline_dag": baseline_id, "subject_s": subject, "baseline_s": baseline,
                     "ratio": ratio(subject, baseline),
                     "to_run_end_s": {d: summary([t["to_end_s"] for t in times[d]]) for d in dag_ids}})
    return rows


#: The idle cycles 8(b) measures: target id → what keeps it idle (its target-file lines, on its own repo).
IDLE_TARGETS = {
    "bench": ("autonomy off", "autonomy_enabled: false\n"),
    "benchpr": ("open-PR limit reached", "autonomy_enabled: true\nmax_open_prs: 1\n"),
}


def _open_agent_pr(repo: Path) -> None:
    """One open ``agent/`` PR on the local forge of ``repo``: with ``max_open_prs: 1`` the limit is reached."""
    from leviathan_lib.forge.local import LocalForge
    from leviathan_lib.git.runner import run_git

    run_git(["--git-dir", str(repo), "update-ref", "refs/heads/agent/bench-1", "refs/heads/main"])
    LocalForge(repo).create_pr(head="agent/bench-1", base="main", title="bench: an open PR",
                               body="Keeps the target's open-PR limit reached.")


IDLE_REPARSE_S = 3600  # longer than the benchmark runs


def idle_cpu(repeats: int, db: str = "sqlite") -> dict[str, Any]:
    """8(b): stack CPU per idle Leviathan cycle over stack CPU per one-no-op-task run (target <= 1.5)."""
    subjects = {names.dag_id(t): label for t, (label, _) in IDLE_TARGETS.items()}
    floor_id = "bench_floor"
    dag_ids = [*subjects, floor_id]
    # The dag-processor parses each file once: its re-parse every 30 s costs per file, not per run (benchmarks
    # 1 and 8a measure it), and landing in some measured runs and not others it made the medians a lottery.
    with tempfile.TemporaryDirectory(prefix="leviathan-bench-idle-") as tmp, \
            _Airflow(Path(tmp), {"bench_baselines.py": BASELINES}, dict.fromkeys(IDLE_TARGETS, "0 0 1 1 *"), db=db,
                     own_repo={t: extra for t, (_, extra) in IDLE_TARGETS.items()},
                     settings={"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(IDLE_REPARSE_S)}) as af:
        _open_agent_pr(af.repos / "benchpr.git")
        af.wait_dags(dag_ids, 240)
        for dag_id in dag_ids:
            af.api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        time.sleep(3)
        for dag_id in subjects:
            af.wait_idle(dag_id, 300)
        for dag_id in dag_ids:
            af.cycle(dag_id)  # warm-up: the first task processes pay cold caches and write bytecode
        load = os.getloadavg()
        quiet_start, quiet_cpu = time.monotonic(), af.cpu_seconds()
        time.sleep(20)
        background = (af.cpu_seconds() - quiet_cpu) / (time.monotonic() - quiet_start)
        raw: dict[str, list[float]] = {d: [] for d in dag_ids}
        net: dict[str, list[float]] = {d: [] for d in dag_ids}
        parts: dict[str, list[dict[str, float]]] = {d: [] for d in dag_ids}
        for i in range(repeats):
            for dag_id in dag_ids if i % 2 == 0 else list(reversed(dag_ids)):
                start, cpu = time.monotonic(), af.cpu_by_component()
                af.cycle(dag_id)
                time.sleep(2)  # let the executor reap the task processes and the scheduler settle
                after, wall = af.cpu_by_component(), time.monotonic() - start
                used = sum(after.values()) - sum(cpu.values())
                raw[dag_id].append(used)
                net[dag_id].append(max(0.0, used - background * wall))
                parts[dag_id].append({k: round(after[k] - cpu.get(k, 0.0), 3) for k in after})
        checked = {}
        for dag_id in subjects:  # what each idle cycle decided (the plan task's record), after measuring
            run = af.runs(dag_id)[-1]
            states = {t["task_id"]: t["state"] for t in af.api.call(
                "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]}
            record = af.api.cycle_record(dag_id, run["dag_run_id"])
            checked[dag_id] = {"task_states": states, "stopped_reason": record["stopped_reason"]}
            if {t for t, s in states.items() if s == "success"} != {names.TASK_PLAN, names.TASK_SKIP}:
                raise RuntimeError(f"{dag_id} did not skip: {states} {record['stopped_reason']}")
    def run_bound(dag_id: str) -> dict[str, Any]:  # the dag-processor re-parses on its own clock, not per run
        return summary([p["api-server"] + p["scheduler"] for p in parts[dag_id]])

    floor_raw, floor_net = summary(raw[floor_id]), summary(net[floor_id])
    result: dict[str, Any] = {"bench": "idle_cpu", "db": db, "repeats": repeats,
                              "dag_processor_reparse_s": IDLE_REPARSE_S, "load_average_at_start": load,
                              "background_cpu_per_s": background, "floor_cpu_s": floor_raw,
                              "floor_net_cpu_s": floor_net, "floor_cpu_by_component": parts[floor_id]}
    for dag_id, label in subjects.items():
        subject_raw, subject_net = summary(raw[dag_id]), summary(net[dag_id])
        result[dag_id] = {"idle_because": label, **checked[dag_id], "idle_cycle_cpu_s": subject_raw,
                          "ratio_raw": ratio(subject_raw, floor_raw), "idle_cycle_net_cpu_s": subject_net,
                          "ratio_net": ratio(subject_net, floor_net), "cpu_by_component": parts[dag_id],
                          "ratio_scheduler_and_api_server": ratio(run_bound(dag_id), run_bound(floor_id))}
    return result


def many_targets(n: int, interval_minutes: int, timeout_s: float) -> dict[str, Any]:
    """N skip-cycle targets on ``*/interval`` cron: lag and completion of the first full interval's runs."""
    targets = {f"m{i:03d}": f"*/{interval_minutes} * * * *" if interval_minutes > 1 else "* * * * *"
               for i in range(n)}
    dag_ids = [names.dag_id(t) for t in targets]
    period = interval_minutes * 60
    with tempfile.TemporaryDirectory(prefix="leviathan-bench-many-") as tmp, _Airflow(Path(tmp), {}, targets) as af:
        af.wait_dags(dag_ids, 300)
        af.api.call("PATCH", f"/api/v2/dags?dag_id_pattern={names.DAG_ID_PREFIX}%25", {"is_paused": False})
        unpaused = time.time()
        # The first tick at least 30 s after the unpause, so the catch-up runs the unpause starts are mostly done.
        boundary = ((unpaused + 30) // period + 1) * period
        deadline = min(boundary + period + 30, unpaused + timeout_s)
        while time.time() < deadline:
            time.sleep(5)
            af.stack.check()
        runs = []
        for dag_id in dag_ids:
            runs += [r for r in af.runs(dag_id) if abs(_ts(r["run_after"]) - boundary) < 1]
    lags = sorted((_ts(r["start_date"]) - boundary) for r in runs if r.get("start_date"))
    done = [r for r in runs if r["state"] in TERMINAL and r.get("end_date") and _ts(r["end_date"]) <= boundary + period]

    def pct(p: float) -> float | None:
        return lags[min(len(lags) - 1, int(p * len(lags)))] if lags else None

    return {"bench": "many_targets", "targets": n, "interval_s": period, "runs_created": len(runs),
            "runs_started": len(lags), "finished_within_interval": len(done),
            "start_lag_s": {"p50": pct(0.5), "p90": pct(0.9), "max": lags[-1] if lags else None},
            "observed_until_s_after_boundary": deadline - boundary}


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="bench 8(b): idle-cycle CPU vs a one-no-op-task DAG")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="metadata DB: SQLite (the embedded default) or a PostgreSQL database of the run's own")
    args = parser.parse_args()
    print(json.dumps(idle_cpu(args.repeats, args.db), indent=2))
