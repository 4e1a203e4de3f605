"""A rule table of credential patterns, applied to the lines a change adds.

A small table instead of a scanner library: the generic entropy detectors of such libraries flag
ordinary prose (and would block harmless docs PRs), while the provider-specific shapes below are what
must never reach a pull request. Findings carry the rule name and line only, never the matched text,
so reporting a secret cannot leak it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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

RULES: tuple[Rule, ...] = (
    Rule("github_token", re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b")),
    Rule("github_fine_grained_pat", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,255}")),
    Rule("aws_access_key_id", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")),
    Rule(
        "aws_secret_access_key",
        re.compile(r"(?i)aws_?secret_?(?:access_?)?key\W{0,3}\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
    ),
    Rule("private_key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    Rule("slack_token", re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{10,}")),
    Rule("slack_webhook", re.compile(r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/\w+")),
    Rule("anthropic_api_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    Rule("openai_api_key", re.compile(r"\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    Rule("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    Rule("stripe_live_key", re.compile(r"\b(?:sk|rk)_live_[0-9A-Za-z]{24,}")),
    Rule(
        "url_credentials",
        re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@\"']+:(?P<value>[^/\s@\"']+)@[^/\s@]+"),
    ),
    Rule(
        "password_assignment",
        re.compile(
            r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)"
            r"[\"']?\s*(?::=|=>|[:=])\s*(?P<q>[\"'])(?P<value>[^\"'\s]{6,})(?P=q)"
        ),
    ),
)


def scan_lines(lines: Iterable[tuple[int, str]]) -> list[Finding]:
    """Findings for ``(line_number, text)`` pairs: one per rule per line, in line order."""
    findings = []
    for number, line in lines:
        findings.extend(Finding(rule.name, number) for rule in RULES if rule.matches(line))
    return findings


def scan_text(text: str) -> list[Finding]:
    return scan_lines(enumerate(text.splitlines(), start=1))
