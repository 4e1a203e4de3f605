"""Branch names Leviathan hands to git: a strict subset of ``git check-ref-format``.

A branch name reaches git inside refspecs and ``refs/heads/<name>`` arguments, so it must never start
with ``-``, contain a refspec character (``:``, ``+``, ``*``, ``^``, ``~``) or anything git would refuse
later with a less helpful message. Pure: no git.
"""

from __future__ import annotations

import re

_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def check_branch_name(name: str) -> str:
    """``name`` unchanged if it is a safe branch name; ValueError saying why it is not."""
    if not _BRANCH.match(name):
        raise ValueError(
            "must be a branch name: letters, digits, '.', '_', '-' and '/', starting with a letter or digit"
        )
    components = name.split("/")
    if any(not part for part in components):
        raise ValueError("must not contain an empty path component ('//' or a trailing '/')")
    if any(part.startswith(".") or part.endswith(".lock") for part in components):
        raise ValueError("no component may start with '.' or end with '.lock'")
    if ".." in name or name.endswith(".") or name == "HEAD":
        raise ValueError("must not contain '..', end with '.' or be 'HEAD'")
    return name
