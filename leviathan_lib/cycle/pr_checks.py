"""The pull request's "Checked before review" section: the repository's own checks, as the worker ran them.

Check names come from the recipes file and output from the repository's code, so both are untrusted: names
are code spans (their alphabet has no Markdown anyway), output tails sit in fenced code blocks no line of
them can close, inside collapsed ``<details>`` whose only HTML is Leviathan's own. In a code block nothing
is a link, a mention, an image or HTML; invisible and bidi controls are shown as escapes so the text reads
as it is. The tails were redacted by the worker (and again when its result was stored); delivery scans the
finished body for secrets before anything is pushed.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from leviathan_lib.contracts.attempt import CheckResult
from leviathan_lib.core.inert import code_span, fenced


def _status(result: CheckResult | None, excused: bool = False) -> str:
    if result is None:
        return "–"
    if result.passed:
        return "pass (cached)" if result.cached else "pass"
    word = ("changed files" if result.modified_tree else "could not run" if result.error
            else "timed out" if result.timed_out else "fail")
    return f"**{word}**" + (" (red at base: not required)" if excused else "")


def _details(result: CheckResult, where: str) -> list[str]:
    size = f"last {len(result.output_tail.encode())} of {result.output_bytes} bytes, redacted"
    summary = f"Output of <code>{html.escape(result.name)}</code> {where} ({size})"
    body = result.output_tail if result.output_tail.strip() else "(no output)"
    return [f"<details><summary>{summary}</summary>", "", fenced(body, info="text"), "", "</details>", ""]


def checks_section(checks: Sequence[CheckResult], red_at_base: Sequence[str]) -> list[str]:
    """The section's Markdown lines; none when the attempt ran no check."""
    if not checks:
        return []
    base = {c.name: c for c in checks if c.phase == "base"}
    change = {c.name: c for c in checks if c.phase == "change"}
    lines = ["## Checked before review", ""]
    if red_at_base:
        names = ", ".join(code_span(n) for n in red_at_base)
        lines += ["> [!WARNING]",
                  f"> Already failing on the pinned commit, before this change: {names}. That is the "
                  "repository's state, not this change's doing; those checks were not required to pass here.", ""]
    lines += ["The repository's own checks (its recipes file), run in the worker's sandbox without network on the "
              "pinned commit and on this change:", "",
              "| Check | Pinned commit | This change | Exit code | Seconds |", "|---|---|---|---|---|"]
    for name in dict.fromkeys([*base, *change]):
        after = change.get(name)
        shown = after or base[name]
        code = "–" if shown.exit_code is None else str(shown.exit_code)
        lines.append(f"| {code_span(name)} | {_status(base.get(name))} | "
                     f"{_status(after, excused=name in red_at_base)} | {code} | {shown.duration_seconds:g} |")
    lines.append("")
    for result in change.values():
        lines += _details(result, "on this change")
    for name in red_at_base:
        if name in base:
            lines += _details(base[name], "on the pinned commit")
    return lines
