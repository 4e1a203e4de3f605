"""The pure core: target config, backlog, scope, guardrails, names, errors and YAML helpers.

Everything here is a function of its inputs: no Airflow, no subprocess, no network (an import-linter
contract in ``pyproject.toml`` enforces it). Every other subpackage may import the core. May import:
nothing else of Leviathan (it is the bottom layer).
"""
