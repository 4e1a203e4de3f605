"""Benchmark 8(a): what a TASK process pays to parse its DAG file, at 500 target files vs 1.

Airflow's task runner fills a ``BundleDagBag`` from the task's DAG file before every task, with the
parsing context naming the DAG (``_AIRFLOW_PARSING_CONTEXT_DAG_ID``). Each measurement is a fresh
Python process that imports Airflow's DagBag first (the runner has Airflow loaded already), sets the
context for one target's DAG and times the fill of a folder holding only a copy of
``dags/leviathan_targets.py``, as the runner does. CPU time is the metric (wall time mostly measures the
neighbours on a shared machine). The subject is the fill with 500 target files, the baseline the same
fill with 1, interleaved in the same run. A third, informative side is the fill at 500 files without the
context: what every task process paid before it built only its own DAG (and what the DAG processor pays).

Each side keeps its state folder (``LEVIATHAN_STATE_DIR``) across its repeats, as a worker does across its
tasks: the first fill after the folder changed reads every file and writes the index (reported as
``cold``, not in the ratio); later fills read one file. Every target file mentions the measured target's id
(a comment naming the repository it shares), the case where a byte scan for the id finds every file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, airflow_env, ratio, summary
from bench.parse_cost import write_targets
from leviathan_lib.core import target_scan

DAG_ID = "leviathan__t0000"  # the first generated target: present at every size
CHILD = r"""
import json, os, resource, sys, time
from airflow.dag_processing.dagbag import BundleDagBag
start, cpu = time.perf_counter(), time.process_time()
bag = BundleDagBag(dag_folder=sys.argv[1], safe_mode=False, load_op_links=False, bundle_path=sys.argv[2],
                   bundle_name="dags-folder")
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"bag_s": elapsed, "cpu_s": cpu, "dags": sorted(bag.dags)[:3], "n_dags": len(bag.dags),
                  "errors": {k: v[:300] for k, v in bag.import_errors.items()},
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _child(dag_file: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([PYTHON, "-c", CHILD, str(dag_file), str(dag_file.parent)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"task-parse child failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(f"task-parse child had import errors: {result['errors']}")
    return result


def run(quick: bool, many: int = 500) -> dict[str, Any]:
    repeats, before_repeats = (3, 1) if quick else (7, 2)
    with tempfile.TemporaryDirectory(prefix="leviathan-bench-task-parse-") as tmp:
        base = Path(tmp)
        (base / "airflow").mkdir()
        dags = base / "dags"
        dags.mkdir()
        dag_file = dags / "leviathan_targets.py"
        shutil.copy(ROOT / "dags" / "leviathan_targets.py", dag_file)
        envs = {}
        for n in (1, many):
            for path in write_targets(base / f"targets-{n}", n):
                path.write_text(path.read_text(encoding="utf-8") + "# shares tooling with t0000\n", encoding="utf-8")
            envs[n] = airflow_env(base / "airflow", LEVIATHAN_TARGETS_DIR=str(base / f"targets-{n}"),
                                  LEVIATHAN_STATE_DIR=str(base / f"state-{n}"),
                                  _AIRFLOW_PARSING_CONTEXT_DAG_ID=DAG_ID,
                                  _AIRFLOW_PARSING_CONTEXT_TASK_ID="plan")
        time.sleep(target_scan.RACY_NS / 1e9 + 0.5)  # a folder written just now is not trusted yet (racy)
        cold = {n: _child(dag_file, envs[n]) for n in (1, many)}  # reads every file, writes the index
        one, all_ = [], []
        for i in range(repeats):
            pair = [(envs[1], one), (envs[many], all_)]
            for env, out in pair if i % 2 else reversed(pair):
                result = _child(dag_file, env)
                if result["dags"] != [DAG_ID]:
                    raise RuntimeError(f"a task process built {result['n_dags']} DAGs: {result['dags']}")
                out.append(result)
        no_context = {k: v for k, v in envs[many].items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
        before = [_child(dag_file, no_context) for _ in range(before_repeats)]
        if any(r["n_dags"] != many for r in before):
            raise RuntimeError(f"the parse without context did not build {many} DAGs")
    subject, baseline = summary([r["cpu_s"] for r in all_]), summary([r["cpu_s"] for r in one])
    before_cpu = summary([r["cpu_s"] for r in before])
    return {
        "bench": "task_parse", "targets": many, "subject_s": subject, "baseline_s": baseline,
        "ratio": ratio(subject, baseline),
        "wall_ratio": ratio(summary([r["bag_s"] for r in all_]), summary([r["bag_s"] for r in one])),
        "without_context_s": before_cpu, "without_context_ratio": ratio(before_cpu, baseline),
        "maxrss_mb": {"subject": max(r["maxrss_kb"] for r in all_) / 1024,
                      "baseline": max(r["maxrss_kb"] for r in one) / 1024},
        "cold_s": {"subject": cold[many]["cpu_s"], "baseline": cold[1]["cpu_s"]},
    }
