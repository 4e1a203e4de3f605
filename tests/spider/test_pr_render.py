"""The PR page's renderers: untrusted Markdown to sanitized HTML (spider.markdown), a diff to classified lines
(spider.diff), charts drawn at their own size (spider.charts)."""

from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser

import pytest

from leviathan_lib.spider.charts import horizontal_bars, stacked_bars
from leviathan_lib.spider.diff import diff_lines
from leviathan_lib.spider.markdown import to_html

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<iframe src=https://evil.example></iframe>",
    "<form action=/leviathan/ui/actions/autonomy><input name=enabled value=false></form>",
    '<a href="javascript:alert(1)" onclick="alert(2)">x</a>',
    "<style>body{display:none}</style>",
    "<!-- an unclosed comment hides nothing",
    "[js](javascript:alert(1)) [JS]( JaVaScRiPt:alert(1)) [vb](vbscript:x) [file](file:///etc/passwd)",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) [rel](/leviathan/ui/actions/autonomy)",
    "![pixel](https://evil.example/p.png) ![inline](data:image/png;base64,AAAA) ![local](/leviathan/ui)",
    "<svg onload=alert(1)><math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<div style="position:fixed">x</div> <span class="badge yes">ok</span>',
]


class _Elements(HTMLParser):
    """Every element a browser would build from the HTML, with its attributes."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_renders_inert(text):
    html = str(to_html(text))
    elements = _Elements(html).found
    assert {tag for tag, _ in elements} <= {"p", "a"}, html
    for _, attrs in elements:
        assert set(attrs) <= {"href", "rel", "target", "data-leave"}, html
        assert (attrs.get("href") or "https:").startswith(("https:", "http:")), html  # a link goes to the web


def test_raw_html_is_shown_as_the_text_it_is():
    html = str(to_html("<script>alert(1)</script> and <!-- a comment"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;!-- a comment" in html


def test_links_are_marked_and_leave_the_airflow_frame():
    html = str(to_html("[site](https://example.com/a?b=1&c=2) <mailto:a@example.com> plain https://x.example"))
    links = [attrs for tag, attrs in _Elements(html).found if tag == "a"]
    assert links[0] == {"href": "https://example.com/a?b=1&c=2", "target": "_blank", "data-leave": "new",
                        "rel": "nofollow noopener noreferrer"}
    assert 'href="mailto:a@example.com"' in html
    assert "plain https://x.example" in html  # a bare address stays text (no linkify)


def test_an_image_is_a_link_to_its_address_never_an_image():
    html = str(to_html("![the chart](https://example.com/c.png)"))
    assert "<img" not in html and ">image: the chart</a>" in html and 'href="https://example.com/c.png"' in html


def test_github_flavoured_markdown_of_a_pr_body():
    html = str(to_html("## Task\n\nDo **it**.\n\n- [ ] first\n- [x] second\n\n| a | b |\n|:--|--:|\n| 1 | `2` |\n"
                       "\n~~old~~ @someone\n\n```python\nprint('<b>')\n```\n"))
    assert "<h2>Task</h2>" in html and "<strong>it</strong>" in html and "<s>old</s> @someone" in html
    assert '<ul class="contains-task-list">' in html and html.count('<li class="task-list-item">') == 2
    boxes = re.findall(r"<input[^>]*>", html)
    assert len(boxes) == 2 and all('type="checkbox"' in b and 'disabled="disabled"' in b for b in boxes)
    assert 'checked="checked"' in boxes[1] and "checked" not in boxes[0]
    assert "<th>a</th>" in html and "<td><code>2</code></td>" in html  # alignment styles are dropped
    assert "<pre><code>print('&lt;b&gt;')\n</code></pre>" in html  # no language class: nothing highlights it


def test_a_huge_text_is_cut_saying_so():
    html = str(to_html("word " * 20_000))
    assert html.endswith("<p><em>(cut at 65,536 characters)</em></p>\n") and len(html) < 70_000


DIFF = """diff --git a/docs/a.md b/docs/a.md
index 1111111..2222222 100644
--- a/docs/a.md
+++ b/docs/a.md
@@ -1,3 +1,3 @@ # Title
 same
--- a removed line that looks like a header
+++ an added line that looks like a header
\\ No newline at end of file
diff --git a/img.png b/img.png
new file mode 100644
Binary files /dev/null and b/img.png differ
"""


def test_a_diff_is_split_into_classified_lines():
    assert diff_lines(DIFF) == [
        ("file", "diff --git a/docs/a.md b/docs/a.md"), ("file", "index 1111111..2222222 100644"),
        ("file", "--- a/docs/a.md"), ("file", "+++ b/docs/a.md"), ("hunk", "@@ -1,3 +1,3 @@ # Title"),
        ("ctx", " same"), ("del", "--- a removed line that looks like a header"),
        ("add", "+++ an added line that looks like a header"), ("ctx", "\\ No newline at end of file"),
        ("file", "diff --git a/img.png b/img.png"), ("file", "new file mode 100644"),
        ("file", "Binary files /dev/null and b/img.png differ"),
    ]
    assert diff_lines("") == [] and diff_lines("+x\r\n") == [("add", "+x\r")]  # lines end at \n only


def test_charts_are_drawn_at_their_own_size_so_text_is_never_scaled_down():
    days = [date(2026, 11, 1), date(2026, 11, 2)]
    for svg in (stacked_bars("Cycles", days, {"run": [1, 2]}),
                horizontal_bars("Lead", [("#1 a-task-with-a-rather-long-identifier-indeed", 12.5)], "h")):
        width, height, box = re.search(r'width="(\d+)" height="(\d+)" viewBox="0 0 (\d+ \d+)"', svg).groups()
        assert box == f"{width} {height}"
    assert '<text x="4" y="23" class="legend">#1 a-task-with-a-rather-lo</text>' in svg  # fits before the bar
