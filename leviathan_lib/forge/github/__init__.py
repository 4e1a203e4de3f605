"""The GitHub forge: pull requests, reviews, CI and the dashboard issue through the REST API.

One module per concern: ``client`` (the token from the Airflow connection, retries, rate limits, the ETag
cache), ``pulls`` (pull requests and their branches), ``reviews`` (reviews, comments, permissions),
``issues`` (the dashboard) and ``ci`` (commit statuses and check runs). :class:`GithubForge` is all of
them behind the :class:`Forge` interface.
May import: ``forge`` (its base), ``git``, ``core``.
"""

from __future__ import annotations

from leviathan_lib.forge.base import Forge
from leviathan_lib.forge.github.ci import Ci
from leviathan_lib.forge.github.client import DEFAULT_CONN_ID, RetryPolicy, parse_repo_url
from leviathan_lib.forge.github.issues import Issues
from leviathan_lib.forge.github.pulls import Pulls
from leviathan_lib.forge.github.reviews import Reviews

__all__ = ["DEFAULT_CONN_ID", "GithubForge", "RetryPolicy", "parse_repo_url"]


class GithubForge(Pulls, Reviews, Issues, Ci, Forge):
    """One GitHub repository, with credentials from the Airflow connection ``conn_id``."""
