"""Parse once per task: the CPU of real skip cycles on a large backlog, parsing once vs as before.

Before, ``plan`` parsed the backlog text it had just read four times (its read, the task hashes, the
decision, the attempt spec); now :meth:`ReadResult.parsed_backlog` parses it once per task. Both ways run
in one invocation on the same target (real cycles, ``dag.test()``, SQLite, a throw-away AIRFLOW_HOME): the
baseline ("as before") makes every ``parsed_backlog`` call parse again, which is what each of those four
calls did. The target has autonomy off, so every cycle is ``plan`` deciding a skip over the whole backlog
(the common cycle). Measured: process CPU seconds per cycle (the scheduler is not in this process), and the
parses per cycle. Interleaved rounds, min and median. Writes ``bench/results/plan_parse.json``.

Run: ``.venv/bin/python bench/plan_parse.py [--tasks N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _big_backlog(bare: Path, work: Path, tasks: int) -> None:
    """Add ``tasks`` not-ready tasks to the demo backlog on main (valid entries: every one is decided)."""
    from tests.airflow_helpers import commit_file

    commit_file(bare, work, "README.md", "widgets\n", "touch")  # clones the work tree
    text = (work / ".leviathan/backlog.yaml").read_text(encoding="utf-8")
    entries = "".join(f"  - id: bulk-{i}\n    title: 'Bulk task {i}'\n    ready: false\n    priority: low\n"
                      f"    allowed_paths: [docs/bulk-{i}.md]\n    acceptance_criteria: ['page {i} exists']\n"
                      for i in range(tasks))
    commit_file(bare, work, ".leviathan/backlog.yaml", text.replace("\nmetadata:", f"\n{entries}\nmetadata:", 1),
                f"add {tasks} tasks")


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.common import isolate_in_process

    home = isolate_in_process()
    from leviathan_lib.contracts import xcom
    from leviathan_lib.core import backlog
    from leviathan_lib.demo import create_demo_target
    from tests.airflow_helpers import evidence_record, run_cycle, set_switch

    set_switch(True)
    target_file = create_demo_target(home, target_id="bench_parse", targets_dir=home / "targets")
    target_file.write_text(target_file.read_text().replace("autonomy_enabled: true", "autonomy_enabled: false"))
    _big_backlog(home / "repos" / "bench_parse.git", home / "work", args.tasks)

    parses = 0
    real_parse = backlog.parse_backlog

    def counted(*a, **k):  # type: ignore[no-untyped-def]
        nonlocal parses
        parses += 1
        return real_parse(*a, **k)

    xcom.parse_backlog = counted  # type: ignore[assignment]  # the one caller of parse_backlog in plan
    once = xcom.ReadResult.parsed_backlog

    def as_before(self):  # type: ignore[no-untyped-def]
        self._parsed = None  # every call parses again, as each caller did before
        return once(self)

    def cycle(mode: str) -> tuple[float, int]:
        nonlocal parses
        xcom.ReadResult.parsed_backlog = as_before if mode == "before" else once  # type: ignore[method-assign]
        parses, started = 0, time.process_time()
        dag_run, states = run_cycle(target_file)
        cpu = time.process_time() - started
        record = evidence_record(dag_run)
        assert record["stopped_reason"] == "autonomy_disabled" and record["tasks_total"] >= args.tasks, record
        return cpu, parses

    cycle("once")  # warm-up: imports, the DAG's first parse, the repository's first fetch
    samples: dict[str, list[float]] = {"before": [], "once": []}
    counts: dict[str, int] = {}
    for _ in range(args.rounds):
        for mode in ("before", "once"):
            cpu, counts[mode] = cycle(mode)
            samples[mode].append(cpu)
    result = {"tasks": args.tasks, "rounds": args.rounds, "parses_per_cycle": counts,
              "cpu_seconds": {m: {"min": min(v), "median": statistics.median(v), "samples": v}
                              for m, v in samples.items()}}
    result["ratio_once_vs_before"] = {k: result["cpu_seconds"]["once"][k] / result["cpu_seconds"]["before"][k]
                                      for k in ("min", "median")}
    for mode in ("before", "once"):
        cpu = result["cpu_seconds"][mode]
        print(f"{mode:<7} parses/cycle {counts[mode]}  CPU s/cycle min {cpu['min']:.3f}  median {cpu['median']:.3f}")
    print(f"once / before: min {result['ratio_once_vs_before']['min']:.2f}, "
          f"median {result['ratio_once_vs_before']['median']:.2f}")
    out = ROOT / "bench" / "results" / "plan_parse.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
