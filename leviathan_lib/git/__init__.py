"""Git: the one runner (with its safety profiles and timeouts), repository-URL parsing and git auth.

May import: ``leviathan_lib.core``. Never Airflow: the worker image uses this package too.
"""
