"""Everything Airflow imports at parse or task time: the DAG factory, the thin task bodies, the
listeners and the StatsD metrics.

Task bodies read the Airflow context and call the plain steps of ``leviathan_lib.cycle`` and the worker
backends. May import every lower layer (``cycle``, ``worker``, ``forge``, ``git``, ``evidence``,
``core``); nothing below imports this package.
"""
