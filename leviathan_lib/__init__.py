"""Leviathan: a closed-loop software-engineering robot on Apache Airflow 3.

The package holds all logic and everything it reads at run time; Airflow finds the Spider plugin and the
provider info through its entry points, and the DAG file users copy is one import and one call.
"""

__version__ = "0.1.0"
