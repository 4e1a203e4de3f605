"""Repository URLs as git sees them: the one parser lives in :mod:`leviathan_lib.core.repo_url`.

Core (config validation) needs it without git, so it is implemented there and re-exported here for the
git, forge and worker code; there is no second implementation.
"""

from __future__ import annotations

from leviathan_lib.core.repo_url import RepoUrl, RepoUrlError, RepoUrlKind, check_repo_url, parse_repo_url

__all__ = ["RepoUrl", "RepoUrlError", "RepoUrlKind", "check_repo_url", "parse_repo_url"]
