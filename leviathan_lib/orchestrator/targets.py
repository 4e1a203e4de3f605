"""Where the target files are, as Airflow's configuration says (the pure rules: ``core.config``)."""

from __future__ import annotations

import os
from pathlib import Path

from leviathan_lib.core.config import TARGETS_DIR_ENV, TargetsLocation, locate_targets_dir


def targets_location(base: Path | None = None) -> TargetsLocation:
    """``$LEVIATHAN_TARGETS_DIR``, else ``[leviathan] targets_dir``; relative to ``base`` or ``[core] dags_folder``.

    No Airflow Variable: the DAG processor parses the DAG file every 30 s and a Variable read there is a
    metadata-DB (or secrets-backend) round trip each time; airflow.cfg and the environment cost nothing.
    """
    from airflow.sdk.configuration import conf

    option = conf.get("leviathan", "targets_dir", fallback="") or ""
    if base is None:
        dags_folder = conf.get("core", "dags_folder", fallback="") or ""
        base = Path(dags_folder) if dags_folder else None
    return locate_targets_dir(os.environ.get(TARGETS_DIR_ENV, ""), option, base)
