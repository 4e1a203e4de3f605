"""The PR body's "Checked before review" section: every check, inert whatever its output holds."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from leviathan_lib.contracts.attempt import CheckResult
from leviathan_lib.cycle.pr_checks import checks_section

HOSTILE = ("</details><script>alert(1)</script> <img src=x onerror=alert(1)> [click](https://evil.example) "
           "@admin @org/team #12 **bold** ```` ``` \u202egnp.exe \x1b[31mred\x1b[0m\n</code></pre>done\n")


def _run(name: str, phase: str, *, passed: bool = True, exit_code: int | None = 0, tail: str = "ok\n",
         **extra) -> CheckResult:
    return CheckResult(name=name, phase=phase, passed=passed, exit_code=exit_code, duration_seconds=0.25,
                       output_tail=tail, output_bytes=len(tail.encode()), **extra)


def _html(lines: list[str]) -> str:
    return MarkdownIt("gfm-like").render("\n".join(lines))  # tables, raw HTML and autolinks on, like GitHub


def test_the_table_has_every_check_on_the_pinned_commit_and_on_the_change():
    lines = checks_section([_run("lint-docs", "base", cached=True), _run("style", "base"),
                            _run("lint-docs", "change"), _run("style", "change", passed=False, exit_code=2)], [])
    text = "\n".join(lines)
    assert lines[0] == "## Checked before review"
    assert "| `lint-docs` | pass (cached) | pass | 0 | 0.25 |" in text
    assert "| `style` | pass | **fail** | 2 | 0.25 |" in text
    assert "WARNING" not in text and text.count("<details>") == 2
    assert checks_section([], []) == []


def test_checks_red_at_base_are_a_visible_warning_naming_them():
    lines = checks_section([_run("lint-docs", "base", passed=False, exit_code=1, tail="TODO in docs/x.md\n"),
                            _run("lint-docs", "change", passed=False, exit_code=1)], ["lint-docs"])
    text = "\n".join(lines)
    assert "> [!WARNING]\n> Already failing on the pinned commit, before this change: `lint-docs`." in text
    assert "| `lint-docs` | **fail** | **fail** (red at base: not required) | 1 | 0.25 |" in text
    assert "on the pinned commit (last 18 of 18 bytes, redacted)" in text and "TODO in docs/x.md" in text


def test_hostile_output_is_inert_in_the_rendered_body():
    html = _html(checks_section([_run("lint", "base"), _run("lint", "change", tail=HOSTILE)], []))
    # Only Leviathan's own HTML: one details block, the summary, the table; the output is escaped text in code.
    assert "<script>" not in html and "<img" not in html and "<a " not in html
    assert re.findall(r"</?details>", html) == ["<details>", "</details>"]
    body = html.split("<pre><code", 1)[1].split("</code></pre>", 1)[0]
    assert "&lt;/details&gt;&lt;script&gt;" in body and "&lt;/code&gt;&lt;/pre&gt;done" in body
    assert "@admin" in body and "[click](https://evil.example)" in body  # plain text in a code block
    assert "&lt;U+202E&gt;gnp.exe" in body and "\x1b" not in body  # hidden controls shown, not obeyed
    assert "\u202e" not in html and "\x1b" not in html
