"""Issue #15 8(d): the history read and ``/leviathan/metrics`` with 100k evidence events, divided by 100.

One child process on a throw-away AIRFLOW_HOME and a throw-away PostgreSQL database (production's
backend; ``LEVIATHAN_TEST_PG``, default ``postgres@127.0.0.1:5432``) holds two demo targets, autonomy
off (the skip path): ``small`` with 100 evidence events and ``large`` with 100,000 (10,000 with
``--quick``). The events are copies of the record a real cycle wrote, each carrying the ledger and
running totals a cycle would have folded, bulk-inserted as ``AssetEvent`` rows (what
``register_asset_change`` writes). Then, alternating the two targets in the same run:

- ``plan``: the real cycle DAG with ``dag.test()``; measured are the guardrails' history read
  (``history_window`` over Airflow's inlet events, the step ``check_guardrails`` decides on) and the
  whole ``plan`` task;
- ``GET /leviathan/metrics`` on the Spider app (in process, ``metrics_public``), with only that target
  configured.

Reported as ratios large / small (min and median), plus the PostgreSQL plan of Spider's newest-events
query (it should walk ``idx_asset_id_timestamp`` backwards, not the table).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, airflow_env, ratio, summary

CHILD = r"""
import json, os, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.models.asset import AssetEvent, AssetModel
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from sqlalchemy import delete, insert, select, text
from starlette.testclient import TestClient

from leviathan_lib.core.config import load_target
from leviathan_lib.cycle import history as history_module
from leviathan_lib.core.names import evidence_asset_uri
from leviathan_lib.evidence.records import CycleRecord
from leviathan_lib.orchestrator.dag_factory import build_target_dag
from leviathan_lib.spider.app import create_app

files, sizes, repeats = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
dag_ids = {name: load_target(Path(f)).dag_id for name, f in files.items()}

read_seconds = []
real_window = history_module.history_window
def timed_window(*args, **kwargs):
    start = time.perf_counter()
    try:
        return real_window(*args, **kwargs)
    finally:
        read_seconds.append(time.perf_counter() - start)
history_module.history_window = timed_window  # plan imports it from the module at call time

def plan(name):
    os.environ["LEVIATHAN_TARGETS_DIR"] = str(Path(files[name]).parent)
    read_seconds.clear()
    run = build_target_dag(load_target(Path(files[name])), Path(files[name])).test()  # fresh, as the tests do
    with create_session() as s:
        ti = s.scalar(select(TaskInstance).where(TaskInstance.run_id == run.run_id, TaskInstance.task_id == "plan"))
        assert str(ti.state) == "success", ti.state
        return (ti.end_date - ti.start_date).total_seconds(), read_seconds[-1]

def fill(name, n):
    # The record the first real cycle wrote, made small (no verdicts), stands in for n older cycles,
    # each with the totals a cycle would have carried; the real one is removed (it counted only itself).
    uri = evidence_asset_uri(name)
    with create_session() as s:
        asset_id = s.scalar(select(AssetModel.id).where(AssetModel.uri == uri))
        event_id, newest = s.execute(select(AssetEvent.id, AssetEvent.extra)
                                     .where(AssetEvent.asset_id == asset_id)).one()
        s.execute(delete(AssetEvent).where(AssetEvent.id == event_id))
    record = CycleRecord.model_validate(newest)
    step = timedelta(minutes=5)  # a */5 target: 100,000 events are about a year
    base = datetime.now(UTC) - step * (n + 2)
    totals = record.totals.model_copy(update={"since": base, "cycles": {}, "skips": {}})
    batch = []
    for i in range(n):
        at = base + step * i
        copy = record.model_copy(update={"dag_run_id": f"synthetic__{i}", "recorded_at": at, "tasks": [], "checks": []})
        totals = totals.with_cycle(copy)
        copy.totals = totals
        batch.append({"asset_id": asset_id, "extra": copy.model_dump(mode="json"), "source_dag_id": dag_ids[name],
                      "source_run_id": copy.dag_run_id, "source_task_id": "plan", "timestamp": at})
        if len(batch) == 5000 or i == n - 1:
            with create_session() as s:
                s.execute(insert(AssetEvent), batch)
            batch = []
    with create_session() as s:
        return s.scalar(select(text("count(*)")).select_from(AssetEvent).where(AssetEvent.asset_id == asset_id))

for name in files:
    plan(name)  # creates the asset and the first real record (with ledger and totals)
counts = {name: fill(name, sizes[name]) for name in files}

os.environ["AIRFLOW__LEVIATHAN__METRICS_PUBLIC"] = "True"
client = TestClient(create_app())
def metrics(name):
    os.environ["LEVIATHAN_TARGETS_DIR"] = str(Path(files[name]).parent.parent / f"only_{name}")
    start = time.perf_counter()
    response = client.get("/metrics")
    seconds = time.perf_counter() - start
    assert response.status_code == 200, response.text
    return seconds, response.text

out = {name: {"plan_s": [], "history_read_s": [], "metrics_s": []} for name in files}
for i in range(repeats):
    for name in (["small", "large"] if i % 2 == 0 else ["large", "small"]):
        task_s, read_s = plan(name)
        out[name]["plan_s"].append(task_s)
        out[name]["history_read_s"].append(read_s)
        for _ in range(5):
            seconds, body = metrics(name)
            out[name]["metrics_s"].append(seconds)
for name in files:
    out[name]["events"] = counts[name]
    body = metrics(name)[1].splitlines()
    out[name]["metrics_cycles_skip"] = [x for x in body if x.startswith("leviathan_cycles_total{") and "skip" in x]
with create_session() as s:
    ids = [s.scalar(select(AssetModel.id).where(AssetModel.uri == evidence_asset_uri(n))) for n in files]
    plan_text = [row[0] for row in s.execute(text(
        "EXPLAIN SELECT a.uri, e.source_run_id FROM asset a JOIN LATERAL (SELECT id, timestamp, source_run_id "
        "FROM asset_event WHERE asset_id = a.id ORDER BY timestamp DESC, id DESC LIMIT 16) e ON true "
        "WHERE a.id = ANY(:ids)"), {"ids": ids})]
out["explain"] = plan_text
print(json.dumps(out))
"""


def run(quick: bool) -> list[dict[str, Any]]:
    from leviathan_lib.demo import create_demo_target
    from tests.metadata_db import PostgresDatabase

    sizes, repeats = ({"small": 100, "large": 10_000}, 4) if quick else ({"small": 100, "large": 100_000}, 16)
    database = PostgresDatabase.for_this_run()
    database.create()
    try:
        with tempfile.TemporaryDirectory(prefix="leviathan-bench-history-") as tmp:
            base = Path(tmp)
            home = base / "airflow"
            home.mkdir()
            files = {}
            for name in sizes:  # both in one folder: dag.test() re-parses the DAG file, which reads it
                target_file = create_demo_target(base / name, target_id=name, targets_dir=base / "targets")
                text = target_file.read_text().replace("autonomy_enabled: true", "autonomy_enabled: false")
                target_file.write_text(text)
                only = base / f"only_{name}"  # Spider sees one target at a time
                only.mkdir()
                (only / target_file.name).write_text(text)
                files[name] = str(target_file)
            env = airflow_env(home, LEVIATHAN_TARGETS_DIR=str(base / "targets"), **database.airflow_env())
            subprocess.run([PYTHON, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True,
                           timeout=600)
            proc = subprocess.run([PYTHON, "-c", CHILD, json.dumps(files), json.dumps(sizes), str(repeats)],
                                  env=env, capture_output=True, text=True, timeout=3600, cwd=ROOT)
            if proc.returncode != 0:
                raise RuntimeError(f"history child failed: {proc.stderr[-3000:]}")
            data = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        database.drop()
    rows = []
    for key, label in (("history_read_s", "history read (plan)"), ("plan_s", "plan task"),
                       ("metrics_s", "GET /leviathan/metrics")):
        subject, baseline = summary(data["large"][key]), summary(data["small"][key])
        rows.append({"bench": "history", "measure": label, "events": data["large"]["events"],
                     "baseline_events": data["small"]["events"], "subject_s": subject, "baseline_s": baseline,
                     "ratio": ratio(subject, baseline)})
    rows[0]["explain"] = data["explain"]
    rows[0]["metrics_cycles_skip"] = {name: data[name]["metrics_cycles_skip"] for name in ("small", "large")}
    return rows
