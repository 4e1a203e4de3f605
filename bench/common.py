"""Shared helpers for the benchmarks: repeated timing, ratios against a baseline, child environments.

Every number is a ratio against a baseline measured in the same run, interleaved with it, so noise from
other work on the machine hits both sides alike. Repeats report min (least disturbed) and median.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def summary(values: list[float]) -> dict[str, Any]:
    return {"min": min(values), "median": statistics.median(values), "n": len(values), "all": values}


def ratio(subject: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """Ratios of min to min and median to median."""
    return {
        "min": subject["min"] / baseline["min"] if baseline["min"] else float("inf"),
        "median": subject["median"] / baseline["median"] if baseline["median"] else float("inf"),
    }


def time_pair(subject: Callable[[], Any], baseline: Callable[[], Any], repeats: int) -> tuple[list, list]:
    """Time two callables alternately (baseline first on even rounds), seconds per call."""
    subject_times, baseline_times = [], []
    for i in range(repeats):
        order = [(baseline, baseline_times), (subject, subject_times)]
        for fn, out in order if i % 2 == 0 else reversed(order):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return subject_times, baseline_times


def clean_env(**extra: str) -> dict[str, str]:
    """The parent's environment without Airflow/Leviathan settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEVIATHAN"))}
    env.update(extra)
    return env


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """Settings for an Airflow child process on a throw-away AIRFLOW_HOME (never ~/airflow)."""
    return clean_env(**{
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"),
        "LEVIATHAN_HOME": str(ROOT),
        "LEVIATHAN_STATE_DIR": str(home / "leviathan"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-only-jwt-secret-not-used-elsewhere-64-bytes-long-for-hs512",
        "AIRFLOW__API__SECRET_KEY": "bench-only-secret-key",
        "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    })


def family_cpu_seconds(pid: int) -> float:
    """CPU a process and its descendants used so far, reaped children included (0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in family:
        try:
            t = member.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def isolate_in_process() -> Path:
    """A throw-away AIRFLOW_HOME (SQLite, migrated) for benches that run cycles in this process (``dag.test()``)."""
    import subprocess
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="leviathan-bench-"))
    (home / "targets").mkdir()
    os.environ.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"), "LEVIATHAN_HOME": str(ROOT),
        "LEVIATHAN_TARGETS_DIR": str(home / "targets"), "LEVIATHAN_STATE_DIR": str(home / "leviathan"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-only-jwt-secret", "AIRFLOW__API__SECRET_KEY": "bench-only",
    })
    os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    subprocess.run([PYTHON, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return home
