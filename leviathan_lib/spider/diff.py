"""A unified diff as classified lines, so the PR page can colour it with CSS (every line stays text).

A line's first character alone is ambiguous: ``--- a/x`` opens a file's header, but inside a hunk it is a
removed line reading ``-- a/x``. So the header of each file (``diff --git`` up to its first ``@@``) is told
apart from its hunks.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["file", "hunk", "add", "del", "ctx"]
_IN_HUNK: dict[str, Kind] = {"+": "add", "-": "del"}


def diff_lines(diff: str) -> list[tuple[Kind, str]]:
    """Each line of ``diff`` with its kind: ``file`` (a file's header), ``hunk`` (``@@``), ``add``, ``del`` or
    ``ctx`` (context, ``\\ No newline at end of file``). Lines end at ``\\n`` only, as git's do."""
    out: list[tuple[Kind, str]] = []
    in_header = False
    for line in diff.removesuffix("\n").split("\n") if diff else []:
        if line.startswith("diff --git "):
            in_header = True
        elif line.startswith("@@"):
            in_header = False
            out.append(("hunk", line))
            continue
        out.append(("file" if in_header else _IN_HUNK.get(line[:1], "ctx"), line))
    return out
