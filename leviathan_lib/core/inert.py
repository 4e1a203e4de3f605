"""The one way untrusted text reaches a human: inert, whatever it holds.

Backlog text, model output, check output, CI summaries, forge reviews and file names all end up in
Markdown (PR bodies, the dashboard issue, comments, Airflow's DAG docs). Rendered raw, such text can hide
what follows behind an unclosed ``<!--``, forge a table, open a link or an image, @mention a team, or turn
``RIGHTS‮txt.exe`` into something it is not. Every Markdown writer in Leviathan goes through these:

- :func:`md`: text as Markdown text (every ASCII punctuation backslash-escaped — CommonMark allows it for
  each, so no tag, comment, entity, link, emphasis, code span or table cell can open — plus no mention,
  issue reference or autolink, and invisible or bidirectional controls shown as ``<U+202E>``);
- :func:`code_span`: a short value (a path, an id) as one inline code span it cannot close;
- :func:`fenced`: longer text (an output tail) as a fenced block whose fence it cannot close.

HTML pages escape with Jinja's autoescape and use :func:`visible` for the invisible characters.
"""

from __future__ import annotations

import re

ZWSP = "\u200b"
#: Characters a reader cannot see, or that reorder what they see: shown as ``<U+XXXX>``, never kept.
INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def visible(text: str) -> str:
    """``text`` with every invisible or bidirectional control character shown as ``<U+XXXX>``."""
    return INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def _defuse(escaped: str) -> str:
    """No mention, issue reference or autolink in already backslash-escaped text."""
    escaped = escaped.replace("\\@", "\\@" + ZWSP)  # @user, @org/team, user@example.com
    escaped = re.sub(r"\\#(?=[0-9])", "\\#" + ZWSP, escaped)  # #12, owner/repo#12
    escaped = escaped.replace("\\:\\/\\/", "\\:" + ZWSP + "\\/\\/")  # scheme://
    return re.sub(r"(?i)\bwww(?=\\\.)", lambda m: m.group(0) + ZWSP, escaped)  # www.


def md(value: object, *, limit: int | None = None, multiline: bool = False) -> str:
    """``value`` as inert Markdown text (see the module docstring); one line unless ``multiline`` (then each
    line is escaped and line breaks stay), at most ``limit`` characters before escaping."""
    text = visible(_CONTROL.sub(" ", str(value)))
    if not multiline:
        text = re.sub(r"\s+", " ", text).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    lines = text.splitlines() if multiline else [text]
    return "\n".join(_defuse(_PUNCT.sub(r"\\\1", line)) for line in lines)


def code_span(text: str) -> str:
    """``text`` as one inline code span, whatever backticks, spaces or control characters it holds."""
    text = visible(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text.replace("\n", " ")))
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def fenced(text: str, *, info: str = "") -> str:
    """``text`` as a fenced code block it cannot close (the fence is longer than any backtick run in it)."""
    body = visible(_CONTROL.sub(" ", text)).rstrip("\n")
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", body)), default=0))
    return f"{fence}{info}\n{body}\n{fence}"
