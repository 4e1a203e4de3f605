"""The cycle's steps without Airflow: read the backlog at a pinned commit, check the guardrails, sync PR
state, deliver (final-diff check, backlog status edit, push, PR) and build the evidence record.

These functions do git and forge I/O but never touch Airflow; ``leviathan_lib.orchestrator`` calls them
from thin task bodies, and the CLI's ``plan`` calls the same ones. May import: ``core``, ``evidence``,
``git``, ``forge``, ``worker`` (the result contract).
"""
