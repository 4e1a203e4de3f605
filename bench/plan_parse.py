"""Parse once, connect once per task: the CPU of real cycles on a large backlog, as now vs as before.

Before, ``plan`` parsed the backlog text it had just read four times (its read, the task hashes, the
decision, the attempt spec) and every step that talked to the forge opened it anew; now
:meth:`ReadResult.parsed_backlog` parses it once per task and :func:`leviathan_lib.forge.connect_once` shares
one forge per task. Both ways run in one invocation (real cycles, ``dag.test()``, SQLite, a throw-away
AIRFLOW_HOME): the baseline ("as before") makes every ``parsed_backlog`` call parse again and every forge
request connect again, which is what each of those calls did.

``--cycle skip`` (the common cycle): one target with autonomy off, so every cycle is ``plan`` deciding a
skip over the whole backlog. ``--cycle delivering``: a fresh target per cycle (autonomy on, the dashboard
on), so every cycle reads, runs the worker in its sandbox, opens a PR and records it. Measured: CPU seconds
per cycle of this process plus the children it waited for (git, the sandbox; the scheduler is not in this
process), and the parses and forge openings per cycle. Interleaved rounds, min and median. Writes
``bench/results/plan_parse.json`` (skip) or ``bench/results/cycle_delivering.json``.

Run: ``.venv/bin/python bench/plan_parse.py [--cycle skip|delivering] [--tasks N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cpu() -> float:
    """CPU seconds of this process and of the children it waited for (git, the worker's sandbox)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


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
    parser.add_argument("--cycle", choices=("skip", "delivering"), default="skip")
    parser.add_argument("--tasks", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    delivering = args.cycle == "delivering"
    sys.path.insert(0, str(ROOT))
    from bench.common import isolate_in_process

    home = isolate_in_process()
    from leviathan_lib import forge
    from leviathan_lib.contracts import xcom
    from leviathan_lib.core import backlog
    from leviathan_lib.demo import create_demo_target
    from tests.airflow_helpers import evidence_record, run_cycle, set_switch

    set_switch(True)
    made = 0

    def target() -> Path:
        """The skip cycle's one target, or a fresh delivering one (its PR must not hold the next cycle)."""
        nonlocal made
        made += 1
        target_id = f"bench_{args.cycle}_{made}" if delivering else "bench_parse"
        target_file = create_demo_target(home, target_id=target_id, targets_dir=home / "targets")
        text = target_file.read_text()
        target_file.write_text(text + "dashboard: true\n" if delivering
                               else text.replace("autonomy_enabled: true", "autonomy_enabled: false"))
        _big_backlog(home / "repos" / f"{target_id}.git", home / f"work-{target_id}", args.tasks)
        return target_file

    parses = opened = 0
    real_parse, real_open = backlog.parse_backlog, forge._open

    def counted(*a, **k):  # type: ignore[no-untyped-def]
        nonlocal parses
        parses += 1
        return real_parse(*a, **k)

    def counted_open(*a, **k):  # type: ignore[no-untyped-def]
        nonlocal opened
        opened += 1
        return real_open(*a, **k)

    xcom.parse_backlog = counted  # type: ignore[assignment]  # the one caller of parse_backlog in plan
    forge._open = counted_open  # type: ignore[assignment]
    once, shared = xcom.ReadResult.parsed_backlog, forge._OPENED

    def as_before(self):  # type: ignore[no-untyped-def]
        self._parsed = None  # every call parses again, as each caller did before
        return once(self)

    class NothingShared:
        """A forge per request, as before ``connect_once``."""

        def get(self) -> None:
            return None

        def set(self, _value: object) -> None:
            return None

        def reset(self, _token: object) -> None:
            return None

    def cycle(mode: str, target_file: Path) -> tuple[float, int, int]:
        nonlocal parses, opened
        xcom.ReadResult.parsed_backlog = as_before if mode == "before" else once  # type: ignore[method-assign]
        forge._OPENED = NothingShared() if mode == "before" else shared  # type: ignore[assignment]
        parses = opened = 0
        started = _cpu()
        dag_run, states = run_cycle(target_file)
        cpu = _cpu() - started
        record = evidence_record(dag_run)
        expected = "pr_opened" if delivering else "autonomy_disabled"
        assert record["stopped_reason"] == expected and record["tasks_total"] >= args.tasks, (record, states)
        return cpu, parses, opened

    skip_target = None if delivering else target()
    cycle("once", skip_target or target())  # warm-up: imports, the DAG's first parse, the repository's first fetch
    samples: dict[str, list[float]] = {"before": [], "once": []}
    counts: dict[str, int] = {}
    forges: dict[str, int] = {}
    for _ in range(args.rounds):
        for mode in ("before", "once"):
            cpu, counts[mode], forges[mode] = cycle(mode, skip_target or target())
            samples[mode].append(cpu)
    result = {"cycle": args.cycle, "tasks": args.tasks, "rounds": args.rounds, "parses_per_cycle": counts,
              "forges_opened_per_cycle": forges,
              "cpu_seconds": {m: {"min": min(v), "median": statistics.median(v), "samples": v}
                              for m, v in samples.items()}}
    result["ratio_once_vs_before"] = {k: result["cpu_seconds"]["once"][k] / result["cpu_seconds"]["before"][k]
                                      for k in ("min", "median")}
    for mode in ("before", "once"):
        cpu = result["cpu_seconds"][mode]
        print(f"{mode:<7} parses/cycle {counts[mode]}  forges/cycle {forges[mode]}  "
              f"CPU s/cycle min {cpu['min']:.3f}  median {cpu['median']:.3f}")
    print(f"once / before: min {result['ratio_once_vs_before']['min']:.2f}, "
          f"median {result['ratio_once_vs_before']['median']:.2f}")
    out = ROOT / "bench" / "results" / ("cycle_delivering.json" if delivering else "plan_parse.json")
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
