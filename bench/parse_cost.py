"""Benchmark 1: DAG parse cost vs number of targets — the factory file vs the same DAGs written statically.

Each measurement is a fresh Python process that fills a ``DagBag`` from a folder holding only one file:
either a copy of ``dags/leviathan_targets.py`` (reading N generated target files) or a generated file
that builds the same N DAGs with the same decorators, task ids, dependencies and DAG arguments, with
every value written out as a literal (no YAML, no pydantic). The child reports the DagBag fill time,
its CPU time (the primary metric: on a shared machine wall time mostly measures the neighbours),
its peak RSS and a fingerprint of the DAGs so both sides are checked to be the same DAGs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, airflow_env, ratio, summary

TARGET_YAML = """\
target_id: {tid}
target_repo_url: /srv/git/{tid}.git
target_branch: main
autonomy_enabled: false
allowed_path_prefixes: [".leviathan/", "docs/"]
schedule_cron: "*/5 * * * *"
forge: local
worker_backend: local
"""

CHILD = r"""
import hashlib, json, resource, sys, time
from airflow.dag_processing.dagbag import DagBag
start, cpu = time.perf_counter(), time.process_time()
bag = DagBag(dag_folder=sys.argv[1])
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
shape = {d.dag_id: sorted((t.task_id, sorted(t.downstream_task_ids)) for t in d.tasks) for d in bag.dags.values()}
print(json.dumps({
    "bag_s": elapsed, "cpu_s": cpu, "dags": len(bag.dags), "errors": {k: v[:300] for k, v in bag.import_errors.items()},
    "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "fingerprint": hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16],
}))
"""

STATIC_HEADER = '''\
"""Baseline for bench/parse_cost.py: {n} Leviathan cycle DAGs written out statically (generated)."""

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetAlias, TriggerRule, task

from leviathan_lib.orchestrator import tasks as t

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_ARGS = {{"owner": "leviathan", "retries": 2, "retry_delay": timedelta(seconds=30)}}
'''

STATIC_DAG = '''
asset = Asset(name={asset_name!r}, uri={asset_uri!r}, group="leviathan")
alias = AssetAlias(name={alias_name!r}, group="leviathan")
config = {config!r}
repo_url = {repo_url!r}
with DAG(
    dag_id={dag_id!r},
    description={description!r},
    schedule={schedule!r},
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(seconds={dagrun_timeout}),
    deadline=None,
    default_args=DEFAULT_ARGS,
    tags={tags!r},
    doc_md={doc!r},
    is_paused_upon_creation=True,
    params={{}},
) as dag_{index}:
    plan = task.branch(task_id="plan", inlets=[asset], outlets=[alias], max_active_tis_per_dag=1,
                       do_xcom_push=False)(t.plan)(
        config=config, repo_url=repo_url, asset=asset, alias=alias, switch_variable="leviathan_autonomy_enabled",
        run_task_id="run_worker",
    )
    worker = task(task_id="run_worker", retries=0, execution_timeout=timedelta(seconds={exec_timeout}))(
        t.run_worker
    )(config=config)
    EmptyOperator(task_id="skip", doc_md="The guardrails decided not to run the worker this cycle.")
    pr = task(task_id="open_pull_request")(t.open_pull_request)(config=config)
    record = task(task_id="record_evidence", outlets=[asset], trigger_rule=TriggerRule.NONE_SKIPPED)(
        t.record_evidence
    )(config=config, asset=asset)
    outcome = task(task_id="cycle_outcome", retries=0, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)(
        t.cycle_outcome
    )()
    pr >> record >> outcome
    worker >> pr
    plan >> [t for t in dag_{index}.tasks if t.task_id != "plan"]
for operator in dag_{index}.tasks:
    if operator.task_id != "skip":
        operator.template_fields = ()
'''


def write_targets(directory: Path, n: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        path = directory / f"t{i:04d}.yaml"
        path.write_text(TARGET_YAML.format(tid=f"t{i:04d}"), encoding="utf-8")
        files.append(path)
    return files


def write_static(path: Path, target_files: list[Path]) -> None:
    """The baseline DAG file: what build_target_dag produces for each target, as literals."""
    from leviathan_lib.core.config import load_target
    from leviathan_lib.orchestrator.dag_factory import _doc, evidence_alias, evidence_asset

    parts = [STATIC_HEADER.format(n=len(target_files))]
    for index, config_file in enumerate(target_files):
        target = load_target(config_file)
        asset = evidence_asset(target.target_id)
        timeout = target.attempt_timeout_seconds
        parts.append(STATIC_DAG.format(
            index=index, asset_name=asset.name, asset_uri=asset.uri, alias_name=evidence_alias(target.target_id).name,
            config=target.model_dump(mode="json"),
            dag_id=target.dag_id, schedule=target.effective_schedule, dagrun_timeout=timeout + 900,
            description=f"Leviathan cycle for {target.target_id}: backlog task -> worker -> pull request",
            tags=["leviathan", f"target:{target.target_id}", f"forge:{target.forge}"],
            doc=_doc(target, config_file), repo_url=target.repo_location(config_file), exec_timeout=timeout + 120,
        ))
    path.write_text("".join(parts), encoding="utf-8")


def _child(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([PYTHON, "-c", CHILD, str(folder)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"parse child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[dict[str, Any]]:
    sizes, repeats = ([1, 50], 2) if quick else ([1, 50, 200, 500], 3)
    rows = []
    with tempfile.TemporaryDirectory(prefix="leviathan-bench-parse-") as tmp:
        base = Path(tmp)
        home = base / "airflow"
        home.mkdir()
        for n in sizes:
            targets = base / f"targets-{n}"
            files = write_targets(targets, n)
            factory_dir, static_dir = base / f"factory-{n}", base / f"static-{n}"
            factory_dir.mkdir()
            static_dir.mkdir()
            shutil.copy(ROOT / "dags" / "leviathan_targets.py", factory_dir / "leviathan_targets.py")
            write_static(static_dir / "leviathan_static.py", files)
            env = airflow_env(home, LEVIATHAN_TARGETS_DIR=str(targets))
            factory, static = [], []
            for i in range(repeats):
                pair = [(factory_dir, factory), (static_dir, static)]
                for folder, out in pair if i % 2 else reversed(pair):
                    result = _child(folder, env)
                    if result["errors"] or result["dags"] != n:
                        raise RuntimeError(f"parse of {folder} gave {result['dags']} DAGs: {result['errors']}")
                    out.append(result)
            if {r["fingerprint"] for r in factory + static} != {factory[0]["fingerprint"]}:
                raise RuntimeError(f"factory and static baseline differ in shape at {n} targets")
            subject = summary([r["cpu_s"] for r in factory])
            baseline = summary([r["cpu_s"] for r in static])
            wall = summary([r["bag_s"] for r in factory]), summary([r["bag_s"] for r in static])
            rows.append({
                "bench": "parse", "targets": n, "subject_s": subject, "baseline_s": baseline,
                "ratio": ratio(subject, baseline), "wall_s": {"subject": wall[0], "baseline": wall[1]},
                "wall_ratio": ratio(*wall),
                "maxrss_mb": {"subject": max(r["maxrss_kb"] for r in factory) / 1024,
                              "baseline": max(r["maxrss_kb"] for r in static) / 1024},
            })
    first = rows[0]
    for row in rows[1:]:
        extra = row["targets"] - first["targets"]
        row["marginal_ms_per_dag"] = {
            "subject": (row["subject_s"]["min"] - first["subject_s"]["min"]) / extra * 1e3,
            "baseline": (row["baseline_s"]["min"] - first["baseline_s"]["min"]) / extra * 1e3,
        }
    return rows
