"""Leviathan's ``apache_airflow_provider`` entry point: ``airflow providers list`` shows the package.

Airflow calls :func:`get_provider_info` in every process that lists providers, so this module imports
nothing but the package version. Leviathan defines no connection type of its own (targets use the
GitHub provider's ``github`` connection; the model API key is a generic connection's password).
"""

from __future__ import annotations

from typing import Any

from leviathan_lib import __version__


def get_provider_info() -> dict[str, Any]:
    """The runtime provider info (airflow/provider_info.schema.json); ``package-name`` is the distribution's."""
    return {
        "package-name": "leviathan",
        "name": "Leviathan",
        "description": "Closed-loop software-engineering robot: backlog task -> worker -> pull request.",
        "versions": [__version__],
    }
