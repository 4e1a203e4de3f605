"""Git: the one runner (with its safety profiles and timeouts), the one ``--raw`` diff parser, repository-URL
parsing and git auth.

May import: ``leviathan_lib.core``. Never Airflow: the worker image uses this package too.
"""
