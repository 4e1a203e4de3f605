"""Leviathan: one Airflow DAG per target file (``dags/targets/*.yaml`` or ``$LEVIATHAN_TARGETS_DIR``).

Thin on purpose: all logic lives in the ``leviathan_lib`` package; parsing reads only the target files.
"""

from leviathan_lib.orchestrator.dag_factory import build_all

globals().update(build_all())
