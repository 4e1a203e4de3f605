"""The one call a DAG file makes: ``from leviathan_lib.orchestrator.dags import targets_dags; targets_dags(globals())``.

The DAG file is the only Leviathan file in the DAGs folder, so it is the same on every platform (a
source checkout, the official chart's image, Astronomer, MWAA, Cloud Composer); everything else comes
from the installed package and the targets folder (:func:`leviathan_lib.orchestrator.targets.targets_location`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from leviathan_lib.core.config import TargetsDirError
from leviathan_lib.core.names import invalid_dag_id
from leviathan_lib.orchestrator.dag_factory import build_all, config_error_dag
from leviathan_lib.orchestrator.targets import targets_location

log = logging.getLogger(__name__)

#: The one DAG shown when the targets folder itself is wrong (no target file can be read).
TARGETS_DIR_ERROR_DAG_ID = invalid_dag_id("targets_dir")


def targets_dags(namespace: dict[str, Any]) -> None:
    """Put one DAG per target file into the DAG file's ``namespace`` (its ``globals()``).

    A relative ``targets_dir`` is taken from the DAG file's folder. A folder that is not set, missing or
    unreadable gives one error DAG saying which setting to fix and where it looked, not an import error.
    """
    dag_file = namespace.get("__file__")
    base = Path(dag_file).resolve().parent if isinstance(dag_file, str) else None
    try:
        location = targets_location(base)
        location.check()
    except TargetsDirError as exc:
        log.error("Leviathan targets folder: %s", exc.message)
        namespace[TARGETS_DIR_ERROR_DAG_ID] = build_targets_dir_error_dag(exc.message)
        return
    namespace.update(build_all(location.path))


def build_targets_dir_error_dag(problem: str) -> DAG:
    """A paused, unscheduled DAG whose description and single failing task name the setting to fix."""
    shown = problem.replace("`", "'")
    return config_error_dag(
        TARGETS_DIR_ERROR_DAG_ID,
        description="INVALID Leviathan targets folder: no target runs",
        doc_md=f"### Leviathan cannot read its targets folder\n\n`{shown}`\n\n"
        "See docs/install.md (the targets folder); this DAG disappears once the folder can be read.",
        problems=[problem],
    )
