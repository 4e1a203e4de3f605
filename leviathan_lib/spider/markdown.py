"""Untrusted Markdown (PR bodies, reviews, comments) as inert HTML: markdown-it-py renders, nh3 sanitizes.

PR bodies quote backlog text and reviews and comments come from anyone, so nothing in them may become
markup of its own. Raw HTML is never parsed (``html=False``): ``<script>``, ``<img onerror=…>`` or an
unclosed ``<!--`` read as the text they are. Only ``http``, ``https`` and ``mailto`` links are links, and an
image is a link to its address (the CSP loads no image from elsewhere, and one from here would be a request
made with the reader's cookie). The renderer's output then passes nh3 (the ammonia sanitizer) with an
allowlist of tags, attributes, classes and link schemes, so a renderer bug cannot turn into markup either:
no script, style, event handler, iframe, form field or inline style survives (the CSP forbids inline style).
"""

from __future__ import annotations

from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markupsafe import Markup
from mdit_py_plugins.tasklists import tasklists_plugin

#: Longest text rendered (GitHub's own limit for a PR body or comment); the rest is cut, saying so.
MAX_CHARS = 65_536
SCHEMES = frozenset({"http", "https", "mailto"})
TAGS = frozenset({"a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "code", "pre",
                  "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "input"})


def _link_allowed(url: str) -> bool:
    scheme, colon, _ = url.partition(":")
    return bool(colon) and scheme.strip().lower() in SCHEMES


def _image_as_link(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    return f'<a href="{escapeHtml(str(token.attrGet("src") or ""))}">{escapeHtml(f"image: {alt}")}</a>'


def _renderer() -> MarkdownIt:
    """CommonMark plus GitHub's tables, strikethrough and task lists; no raw HTML, no images."""
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).use(tasklists_plugin)
    md.validateLink = _link_allowed  # type: ignore[method-assign]
    md.add_render_rule("image", _image_as_link)
    return md


_MD = _renderer()
_CLEANER = nh3.Cleaner(
    tags=set(TAGS),
    clean_content_tags={"script", "style"},
    attributes={"a": {"href", "title"}, "ol": {"start"}},
    # Task-list boxes are shown, never used: always disabled checkboxes (and outside any form).
    tag_attribute_values={"input": {"checked": {"checked"}}},
    set_tag_attribute_values={"input": {"type": "checkbox", "disabled": "disabled"},
                              "a": {"target": "_blank", "data-leave": "new"}},  # view.js opens it outside
    allowed_classes={"ul": {"contains-task-list"}, "li": {"task-list-item"}},
    link_rel="nofollow noopener noreferrer",
    url_schemes=set(SCHEMES),
    url_relative="deny",
)


def to_html(text: str) -> Markup:
    """``text`` rendered as Markdown and sanitized: safe to put in a page as it is."""
    if len(text) > MAX_CHARS:
        text = f"{text[:MAX_CHARS]}\n\n*(cut at {MAX_CHARS:,} characters)*"
    return Markup(_CLEANER.clean(_MD.render(text)))  # sanitized just now: the one place markup is trusted
