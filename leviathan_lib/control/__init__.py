"""Operator actions and reads on Airflow's state, shared by the CLI and Spider: the autonomy switch, the
breaker reset, the emergency stop, the fleet overview, the approval gates waiting for an answer, health, and
the evidence in the metadata DB.

The only place that uses Airflow internals (the ORM, ``create_session``); Spider and the CLI reach Airflow
state only through here. Task code never imports it (tasks may not touch the DB). May import: ``cycle``,
``evidence``, ``core``, ``forge``.
"""
