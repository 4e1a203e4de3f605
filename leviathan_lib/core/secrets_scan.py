"""A rule table of credential patterns, applied to text and to raw bytes of any encoding.

A small table instead of a scanner library: the generic entropy detectors of such libraries flag
ordinary prose (and would block harmless docs PRs), while the provider-specific shapes below are what
must never reach a pull request. Findings carry the rule name and line only, never the matched text,
so reporting a secret cannot leak it.

Bytes are scanned whatever they claim to be (binary, ``-diff``, NUL bytes, UTF-16): they are read as
Latin-1 (one character per byte, so nothing fails to decode), and a second time with NUL bytes dropped
(UTF-16/32 text of ASCII shapes). Patterns match ASCII word boundaries only, so a non-ASCII letter
glued to a token does not hide it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """A named pattern; when it has a ``value`` group, placeholder values (``<token>``, ``${X}``) pass."""

    name: str
    pattern: re.Pattern[str]

    def matches(self, line: str) -> bool:
        if "value" not in self.pattern.groupindex:
            return self.pattern.search(line) is not None
        return any(not _PLACEHOLDER.search(m.group("value")) for m in self.pattern.finditer(line))


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int


#: Values of generic ``password = "…"`` assignments that are obviously placeholders, not secrets.
_PLACEHOLDER = re.compile(
    r"^(?:[$<{%]|\*+$|x+$|\.+$|pass(?:word)?$)|example|placeholder|changeme|change_me|redacted|dummy|your[_-]|<|>",
    re.IGNORECASE,
)


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


RULES: tuple[Rule, ...] = (
    Rule("github_token", _rx(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b")),
    Rule("github_fine_grained_pat", _rx(r"\bgithub_pat_[A-Za-z0-9_]{22,255}")),
    Rule("aws_access_key_id", _rx(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")),
    Rule(
        "aws_secret_access_key",
        _rx(r"(?i)aws_?secret_?(?:access_?)?key\W{0,3}\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
    ),
    Rule("private_key", _rx(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    Rule("slack_token", _rx(r"\bxox[abposre]-[A-Za-z0-9-]{10,}")),
    Rule("slack_webhook", _rx(r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/\w+")),
    Rule("anthropic_api_key", _rx(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    Rule("openai_api_key", _rx(r"\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    Rule("google_api_key", _rx(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    Rule("stripe_live_key", _rx(r"\b(?:sk|rk)_live_[0-9A-Za-z]{24,}")),
    Rule(
        "url_credentials",
        _rx(r"\b[a-z][a-z0-9+.-]*://[^/\s:@\"']+:(?P<value>[^/\s@\"']+)@[^/\s@]+"),
    ),
    Rule(
        "password_assignment",
        _rx(
            r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)"
            r"[\"']?\s*(?::=|=>|[:=])\s*(?P<q>[\"'])(?P<value>[^\"'\s]{6,})(?P=q)"
        ),
    ),
)


def _values(rule: Rule, line: str) -> Iterator[str]:
    """The matched texts of ``rule`` in ``line`` (placeholders excluded); never to be reported."""
    for match in rule.pattern.finditer(line):
        if "value" not in rule.pattern.groupindex or not _PLACEHOLDER.search(match.group("value")):
            yield match.group(0)


def _byte_views(data: bytes) -> list[str]:
    text = data.decode("latin-1")
    return [text, text.replace("\x00", "")] if "\x00" in text else [text]


def scan_bytes(data: bytes, *, known: bytes = b"") -> list[Finding]:
    """Findings in raw ``data`` (any encoding), one per rule per line, leaving out matches ``known`` holds.

    ``known`` is the previous version of a file: a credential shape it already has is not new, so an
    edit next to an example key in a document is not reported (only what the change brings in is).
    """
    seen: set[tuple[str, str]] = set()
    for view in _byte_views(known):
        for line in view.split("\n"):
            seen.update((rule.name, value) for rule in RULES for value in _values(rule, line))
    found: dict[tuple[str, int], None] = {}
    for view in _byte_views(data):
        for number, line in enumerate(view.split("\n"), start=1):
            for rule in RULES:
                if any((rule.name, value) not in seen for value in _values(rule, line)):
                    found[(rule.name, number)] = None
    return [Finding(rule, line) for rule, line in sorted(found, key=lambda k: (k[1], _ORDER[k[0]]))]


#: The user-info part of a URL (``user:token`` between ``://`` and the host), up to its last ``@``: whatever it
#: holds is a credential.
_URL_USERINFO = re.compile(r"(?<=://)[^/\s]+@")


def redact_text(text: str) -> str:
    """``text`` with every credential shape replaced by ``[REDACTED:<rule>]`` and a URL's user info by ``***@``.

    The one redaction function: git errors, terminal output, pages and results all go through it. Text that
    hides a shape behind NUL bytes (UTF-16 read as UTF-8) is replaced entirely.
    """
    text = _URL_USERINFO.sub("***@", text)
    for rule in RULES:
        text = rule.pattern.sub(f"[REDACTED:{rule.name}]", text)
    if "\x00" in text:
        hidden = sorted({f.rule for f in scan_text(text.replace("\x00", ""))})
        if hidden:
            return "[REDACTED:" + ",".join(hidden) + "]"
    return text


def scan_lines(lines: Iterable[tuple[int, str]]) -> list[Finding]:
    """Findings for ``(line_number, text)`` pairs: one per rule per line, in line order."""
    findings: list[Finding] = []
    for number, line in lines:
        findings.extend(Finding(rule.name, number) for rule in RULES if rule.matches(line))
    return findings


def scan_text(text: str) -> list[Finding]:
    return scan_lines(enumerate(text.splitlines(), start=1))


_ORDER = {rule.name: index for index, rule in enumerate(RULES)}
