"""core/inert: untrusted text rendered by a real Markdown renderer stays text (GitHub's flavour: raw HTML on)."""

from __future__ import annotations

from markdown_it import MarkdownIt

from leviathan_lib.core.inert import code_span, fenced, md, visible

RENDER = MarkdownIt("gfm-like").render
HOSTILE = ("<!-- hide the rest <script>alert(1)</script> [x](javascript:alert(1)) ![i](http://e/x.png) "
           "**bold** | cell | @octo-org/admins see #12 https://evil.example www.evil.example `code`")


def test_text_stays_text_and_mentions_and_links_die():
    html = RENDER(md(HOSTILE))
    for live in ("<script", "<!--", "<a ", "<img", "<strong", "<code", "<table"):
        assert live not in html, live
    assert "@\u200bocto-org" in html and "#\u200b12" in html  # no mention, no issue reference


def test_multiline_keeps_lines_and_a_limit_cuts_before_escaping():
    assert md("a\n<b>", multiline=True) == "a\n\\<b\\>"
    assert md("x" * 10, limit=4) == "xxx…"


def test_invisible_and_bidi_characters_are_shown():
    name = "invoice\u202egnp.exe"
    assert visible(name) == "invoice<U+202E>gnp.exe"
    assert "\u202e" not in md(name) and "&lt;U+202E&gt;" in RENDER(md(name))
    assert "\u202e" not in code_span(name)


def test_code_spans_and_fences_cannot_be_closed_from_inside():
    span = code_span("a ``` b")
    assert RENDER(span).count("<code>") == 1 and "b" in RENDER(span).split("</code>")[0]
    block = fenced("```\n</pre><script>x</script>\n````")
    assert RENDER(block).count("<pre>") == 1 and "<script>" not in RENDER(block)
