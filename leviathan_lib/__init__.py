"""Leviathan: a closed-loop software-engineering robot on Apache Airflow 3.

The package holds all logic; ``dags/`` and ``plugins/`` stay thin so DAG parsing stays cheap.
"""

__version__ = "0.1.0"
