"""``python bench/run.py [--quick]``: every Leviathan benchmark, as ratios against same-run baselines.

Prints a table and writes ``bench/results/latest.json``. ``--quick`` is a ~2-minute smoke run (fewer
sizes and repeats, no many-targets run); the full run stays under ~15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PYTHON, ROOT  # noqa: E402

RESULTS = ROOT / "bench" / "results"
#: Goals from issue 10 (and issue 15, 8(a): a task process's parse at 500 targets vs 1).
PARSE_GOAL, SELECTION_GOAL, TASK_PARSE_GOAL, HISTORY_GOAL = 1.2, 1.10, 1.3, 1.2


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()

    return {"nproc": os.cpu_count(), "free_h": out("free", "-h"), "python": platform.python_version(),
            "airflow": version("apache-airflow"), "pydantic": version("pydantic"), "pyyaml": version("PyYAML"),
            "platform": platform.platform(), "loadavg_at_start": os.getloadavg()}


def idle_cycle() -> dict[str, Any] | None:
    """The forge idle-cycle budget (benchmark 2): bench/idle_cycle.py (another owner) writes its own JSON."""
    script = ROOT / "bench" / "idle_cycle.py"
    if not script.exists():
        return None
    out = RESULTS / "idle_cycle.json"
    out.unlink(missing_ok=True)
    try:
        proc = subprocess.run([PYTHON, str(script)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"bench": "idle_cycle", "error": "timed out after 600 s"}
    if proc.returncode != 0 or not out.exists():
        return {"bench": "idle_cycle", "error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-500:]}"}
    return {"bench": "idle_cycle", "result": json.loads(out.read_text(encoding="utf-8"))}


def _r(row: dict[str, Any]) -> str:
    return f"{row['ratio']['min']:.2f} / {row['ratio']['median']:.2f}"


def _s(summary: dict[str, Any], scale: float = 1, unit: str = "s") -> str:
    return f"{summary['min'] * scale:.3g} / {summary['median'] * scale:.3g} {unit}"


def table(results: dict[str, Any]) -> str:
    lines = ["| benchmark | size | Leviathan (min / median) | baseline (min / median) | ratio min / median "
             "| goal | notes |", "|---|---|---|---|---|---|---|"]
    for row in results.get("parse", []):
        n = row["targets"]
        goal = f"≤ {PARSE_GOAL}" + (" **met**" if row["ratio"]["median"] <= PARSE_GOAL else " **missed**")
        marginal = row.get("marginal_ms_per_dag")
        note = (f"CPU s; wall ratio {row['wall_ratio']['min']:.2f}/{row['wall_ratio']['median']:.2f}; "
                f"peak RSS {row['maxrss_mb']['subject']:.0f} vs {row['maxrss_mb']['baseline']:.0f} MB")
        if marginal:
            note += f"; marginal {marginal['subject']:.1f} vs {marginal['baseline']:.1f} ms/DAG"
        lines.append(f"| 1 DAG parse (DagBag, fresh process) | {n} targets | {_s(row['subject_s'])} "
                     f"| {_s(row['baseline_s'])} static file | {_r(row)} | {goal if n >= 200 else 'linear'} "
                     f"| {note} |")
    task_parse = results.get("task_parse")
    if task_parse:
        ok = task_parse["ratio"]["median"] <= TASK_PARSE_GOAL
        before = task_parse["without_context_ratio"]
        lines.append(f"| 8a task-process parse (BundleDagBag, parsing context set) | {task_parse['targets']} vs 1 "
                     f"targets | {_s(task_parse['subject_s'])} | {_s(task_parse['baseline_s'])} 1 target "
                     f"| {_r(task_parse)} | ≤ {TASK_PARSE_GOAL} {'**met**' if ok else '**missed**'} "
                     f"| CPU s; without the context (all DAGs, as before): "
                     f"{_s(task_parse['without_context_s'])}, ratio {before['min']:.1f} / {before['median']:.1f} |")
    idle = results.get("idle_cycle")
    if idle is not None:
        lines.append(f"| 2 idle cycle (bench/idle_cycle.py) | 1 target | see JSON | | | at the floor "
                     f"| `{json.dumps(idle.get('result', idle))[:300]}` |")
    else:
        lines.append("| 2 idle cycle | – | not run (not asked for, or bench/idle_cycle.py absent) | | | | |")
    for row in results.get("selection", []):
        ok = row["ratio"]["median"] <= SELECTION_GOAL
        goal = f"≤ {SELECTION_GOAL}" + (" **met**" if ok else " **missed**")
        kind = "plan (parse+recipes+decide+JSON)" if row["tasks"] else ""
        inv = f", {row['invalid_tasks']} invalid" if row["invalid_tasks"] else ""
        lines.append(f"| 3 selection: {kind} | {row['tasks']} tasks{inv} | {_s(row['subject_s'], 1e3, 'ms')} "
                     f"| {_s(row['baseline_s'], 1e3, 'ms')} yaml.load | {_r(row)} | {goal} "
                     f"| {row['per_task_us']['subject']:.0f} vs {row['per_task_us']['baseline']:.0f} µs/task |")
    for row in results.get("history", []):
        ok = row["ratio"]["median"] <= HISTORY_GOAL
        lines.append(f"| 8d {row['measure']} | {row['events']} events | {_s(row['subject_s'], 1e3, 'ms')} "
                     f"| {_s(row['baseline_s'], 1e3, 'ms')} ({row['baseline_events']} events) | {_r(row)} "
                     f"| ≤ {HISTORY_GOAL} {'**met**' if ok else '**missed**'} | PostgreSQL |")
    for row in results.get("cycle", []):
        ends = ", ".join(f"{d} {s['median']:.1f}" for d, s in row["to_run_end_s"].items())
        lines.append(f"| 4 cycle trigger → record_evidence | skip cycle | {_s(row['subject_s'])} "
                     f"| {_s(row['baseline_s'])} {row['baseline_dag']} | {_r(row)} | – "
                     f"| median trigger → run end: {ends} s |")
    idle_cpu = results.get("idle_cpu")
    for subject in (v for v in (idle_cpu or {}).values() if isinstance(v, dict) and "ratio_raw" in v):
        raw, net = subject["ratio_raw"], subject["ratio_net"]
        lines.append(f"| 8b idle cycle CPU (whole stack) | {subject['idle_because']} "
                     f"| {_s(subject['idle_cycle_cpu_s'], 1, 'CPU-s')} "
                     f"| {_s(idle_cpu['floor_cpu_s'], 1, 'CPU-s')} one no-op @task | {raw['min']:.2f} / "
                     f"{raw['median']:.2f} | ≤ 1.5 | net of background: {net['min']:.2f} / {net['median']:.2f} |")
    many = results.get("many_targets")
    if many:
        lag = many["start_lag_s"]

        def fmt(value: float | None) -> str:
            return f"{value:.0f}" if value is not None else "–"

        lines.append(f"| 5 many targets (SCALED DOWN) | {many['targets']} targets / {many['interval_s']} s "
                     f"| lag p50 {fmt(lag['p50'])} s, p90 {fmt(lag['p90'])} s, max {fmt(lag['max'])} s | – "
                     f"| {many['finished_within_interval']}/{many['targets']} finished in the interval | "
                     f"all in interval | {many['runs_started']}/{many['runs_created']} runs started |")
    elif "many_targets_skipped" in results:
        lines.append(f"| 5 many targets | – | {results['many_targets_skipped']} | | | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="~2-minute smoke run")
    names = ["parse", "task_parse", "selection", "history", "cycle", "idle_cpu", "many", "idle"]
    parser.add_argument("--only", action="append", choices=names,
                        help="run only these benchmarks (repeatable)")
    args = parser.parse_args()
    from bench import history, parse_cost, selection, stack, task_parse

    wanted = set(args.only or names)
    results: dict[str, Any] = {"quick": args.quick, "machine": machine(), "started": time.time()}
    steps = [
        ("parse", lambda: parse_cost.run(args.quick)),
        ("task_parse", lambda: task_parse.run(args.quick)),
        ("selection", lambda: selection.run(args.quick)),
        ("history", lambda: history.run(args.quick)),
        ("cycle", lambda: stack.cycle_overhead(args.quick)),
        ("idle_cpu", lambda: stack.idle_cpu(2 if args.quick else 5)),
        ("idle", idle_cycle),
    ]
    if not args.quick:
        steps.append(("many", lambda: stack.many_targets(50, 2, 420)))
    else:
        results["many_targets_skipped"] = "skipped in --quick (needs a full cron interval)"
    for name, step in steps:
        if name not in wanted:
            continue
        start = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            key = {"idle": "idle_cycle", "many": "many_targets"}.get(name, name)
            results[key] = step()
        except Exception as exc:  # noqa: BLE001 — one failed benchmark must not hide the others
            results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"[-2000:]
        results.setdefault("seconds", {})[name] = round(time.monotonic() - start, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(table(results))
    for name, error in results.get("errors", {}).items():
        print(f"\nERROR in {name}: {error}")
    print(f"\nwrote {RESULTS / 'latest.json'}")
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
