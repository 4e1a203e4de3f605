"""Guardrail-path cost of reading history: ``check_guardrails`` with 0, 1k and 10k evidence events.

``check_guardrails`` reads *all* inlet events of the target's evidence asset every cycle. One child
process on a throw-away AIRFLOW_HOME runs the real cycle DAG (autonomy off: the skip path) with
``dag.test()``, then adds synthetic ``CycleRecord`` events (copies of the record the first run wrote,
bulk-inserted as ``AssetEvent`` rows for speed; ``register_asset_change`` writes the same row) and runs
it again. Reported: the ``check_guardrails`` task duration, and ``parse_records`` alone on the same
extras, as ratios against the run with no history.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, airflow_env, ratio, summary

CHILD = r"""
import json, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from leviathan_lib.core import names
from leviathan_lib.core.config import load_target
from leviathan_lib.orchestrator.dag_factory import build_target_dag
from leviathan_lib.evidence.records import parse_records
from airflow.models.asset import AssetEvent, AssetModel
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import select

target_file, sizes, repeats = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
target = load_target(target_file)
dag = build_target_dag(target, target_file)

def cycle():
    run = dag.test()
    with create_session() as s:
        tis = {ti.task_id: ti for ti in s.scalars(select(TaskInstance).where(TaskInstance.run_id == run.run_id))}
        row = s.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, task_ids=names.TASK_RECORD_EVIDENCE,
                                           key=names.XCOM_RETURN_VALUE)).first()
        record = XComModel.deserialize_value(row)
        guard = tis["check_guardrails"]
        return (guard.end_date - guard.start_date).total_seconds(), str(guard.state), record

out = {}
template = None
have = 0
for n in sizes:
    with create_session() as s:
        asset_id = s.scalar(select(AssetModel.id).where(AssetModel.uri == f"leviathan://targets/{target.target_id}/evidence"))
        if n > have and asset_id is not None:
            base = datetime.now(UTC) - timedelta(days=30)
            rows = []
            for i in range(have, n):
                at = base + timedelta(seconds=i)
                extra = dict(template, dag_run_id=f"synthetic__{i}", recorded_at=at.isoformat())
                rows.append(AssetEvent(asset_id=asset_id, extra=extra, source_dag_id=dag.dag_id,
                                       source_run_id=f"synthetic__{i}", source_task_id="record_evidence",
                                       timestamp=base + timedelta(seconds=i)))
            s.add_all(rows)
            have = n
    times = []
    for _ in range(repeats):
        seconds, state, record = cycle()
        assert state == "success", state
        assert record["stopped_reason"] == "autonomy_disabled", record["stopped_reason"]
        template = template or record
        times.append(seconds)
    extras = [("r", dict(template, dag_run_id=f"synthetic__{i}")) for i in range(max(n, 1))]
    start = time.perf_counter()
    parse_records(extras)
    out[str(n)] = {"check_guardrails_s": times, "parse_records_s": time.perf_counter() - start}
print(json.dumps(out))
"""


def run(quick: bool) -> list[dict[str, Any]]:
    from leviathan_lib.demo import create_demo_target

    sizes, repeats = ([0, 1000], 1) if quick else ([0, 1000, 10000], 3)
    with tempfile.TemporaryDirectory(prefix="leviathan-bench-history-") as tmp:
        base = Path(tmp)
        home = base / "airflow"
        home.mkdir()
        target_file = create_demo_target(base, target_id="history")
        target_file.write_text(target_file.read_text().replace("autonomy_enabled: true", "autonomy_enabled: false"))
        env = airflow_env(home, LEVIATHAN_TARGETS_DIR=str(target_file.parent))
        subprocess.run([PYTHON, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True,
                       timeout=300)
        proc = subprocess.run([PYTHON, "-c", CHILD, str(target_file), json.dumps(sizes), str(repeats)],
                              env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"history child failed: {proc.stderr[-3000:]}")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    baseline = summary(data["0"]["check_guardrails_s"])
    rows = []
    for n in sizes:
        subject = summary(data[str(n)]["check_guardrails_s"])
        rows.append({"bench": "history", "events": n, "subject_s": subject, "baseline_s": baseline,
                     "ratio": ratio(subject, baseline), "parse_records_s": data[str(n)]["parse_records_s"]})
    return rows
