# Leviathan's Airflow DAGs, one per target file in [leviathan] targets_dir (docs/install.md).
from leviathan_lib.orchestrator.dags import targets_dags

targets_dags(globals())
