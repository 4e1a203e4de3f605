"""Where Leviathan keeps its scratch state on an Airflow worker (mirrors, workspaces).

Nothing here is evidence — the metadata DB holds that — so losing this folder only costs a re-fetch.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    explicit = os.environ.get("LEVIATHAN_STATE_DIR")
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    path = Path(explicit) if explicit else airflow_home / "leviathan"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    path = state_dir() / "mirrors"
    path.mkdir(parents=True, exist_ok=True)
    return path


def scratch_dir() -> Path:
    path = state_dir() / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checks_cache_dir() -> Path:
    """Where the local worker caches the repository's checks on a commit (see leviathan_lib.worker.checks)."""
    return state_dir() / "checks-cache"
