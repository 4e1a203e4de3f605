"""Leviathan's ``apache_airflow_provider`` entry point: ``airflow providers list`` shows the package, and
``airflow config list`` / ``airflow config get-value leviathan <option>`` know the ``[leviathan]`` section.

Airflow calls :func:`get_provider_info` in every process that lists providers, so this module imports
nothing but the package version. Leviathan defines no connection type of its own (targets use the
GitHub provider's ``github`` connection; the model API key is a generic connection's password).

The ``config`` section declares every ``[leviathan]`` option the code reads, as the Kubernetes provider
declares ``[kubernetes_executor]``; Airflow then uses these defaults when airflow.cfg leaves an option out.
An option without a default (``None``) stays unset. ``tests/test_provider.py`` keeps this in step with the
code's reads, its defaults and docs/configuration.md.
"""

from __future__ import annotations

from typing import Any

from leviathan_lib import __version__


def _option(description: str, kind: str, default: str | None, example: str | None) -> dict[str, Any]:
    return {"description": description, "version_added": "0.1.0", "type": kind, "example": example,
            "default": default}


def _cap(what: str, default: int, example: int) -> dict[str, Any]:
    return _option(f"The deployment's cap on {what} of every recipe step on the local backend (a target's "
                   "``limits`` may only lower it). A value that is not a whole number in range fails the "
                   "attempt's task naming the option.", "integer", str(default), str(example))


CONFIG: dict[str, dict[str, Any]] = {
    "leviathan": {
        "description": "Leviathan's deployment-wide settings (docs/configuration.md, section (d)).",
        "options": {
            "targets_dir": _option(
                "The folder of target files; a relative path is taken from the DAG file's folder. "
                "``$LEVIATHAN_TARGETS_DIR`` wins over it.", "string", None, "targets"),
            "metrics_public": _option(
                "``True`` serves ``/leviathan/metrics`` without authentication.", "boolean", "False", "True"),
            "worker_image": _option(
                "Kubernetes backend: the worker image of targets whose file sets no ``worker_image``.",
                "string", None, "registry.example.com/leviathan-worker:0.1.0"),
            "worker_namespace": _option(
                "Kubernetes backend: the worker pods' namespace for targets whose file sets no "
                "``worker_namespace``.", "string", None, "leviathan"),
            "max_attempt_processes": _cap("the tasks and threads alive at once in one step's sandbox", 256, 128),
            "max_attempt_memory_mb": _cap("the memory (MiB) of one step's sandbox", 2048, 1024),
            "max_attempt_cpu_seconds": _cap("the CPU seconds of one attempt's steps together", 900, 600),
            "max_attempt_disk_mb": _cap("what one attempt may add to the checkout (MiB)", 1024, 512),
            "max_attempt_open_files": _cap("the open files per process", 1024, 512),
            "webhook_max_body_bytes": _option(
                "The largest webhook delivery body ``POST /leviathan/webhooks/github`` reads (at least 1024); "
                "a bigger one is refused with 413.", "integer", "1048576", "262144"),
            "webhook_rate_per_minute": _option(
                "Webhook deliveries accepted per minute from one source address, per API-server process; "
                "more are refused with 429.", "integer", "3000", "600"),
            "deadline_margin_seconds": _option(
                "A cycle still running this many seconds after its expected time misses its deadline "
                "(only when ``deadline_notifier`` is set).", "integer", "600", "300"),
            "deadline_notifier": _option(
                "The Airflow ``BaseNotifier`` subclass (dotted path, constructed without arguments) a missed "
                "deadline is sent to; unset: no deadline alerts.", "string", None,
                "leviathan_lib.orchestrator.deadline.DeadlineNotifier"),
        },
    },
}


def get_provider_info() -> dict[str, Any]:
    """The runtime provider info (airflow/provider_info.schema.json); ``package-name`` is the distribution's."""
    return {
        "package-name": "leviathan",
        "name": "Leviathan",
        "description": "Closed-loop software-engineering robot: backlog task -> worker -> pull request.",
        "versions": [__version__],
        "config": CONFIG,
    }
