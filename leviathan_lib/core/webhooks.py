"""Forge webhook deliveries, read without I/O: the signature, what a delivery means, which targets it concerns.

A delivery is only a hint that something changed: nothing in it becomes an instruction. It wakes the
target's cycle early (an asset event on ``leviathan://targets/<id>/changed``) and the cycle reads the
forge and the repository itself, exactly as a scheduled cycle does. So the receiver needs to know only
the repository and, for branch events, the branch: the target branch and ``agent/…`` branches of that
same repository concern a target; anything else is ignored with a reason.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from leviathan_lib.core.names import is_agent_branch
from leviathan_lib.core.repo_url import RepoUrlError, parse_repo_url

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
_PREFIX = "sha256="

#: The events (and their actions) that may change what a cycle decides; ``ping`` is answered, never recorded.
ACTIONS: dict[str, frozenset[str] | None] = {
    "push": None,
    "pull_request": frozenset({"closed", "synchronize"}),
    "pull_request_review": frozenset({"submitted"}),
    "issue_comment": frozenset({"created"}),
    "check_suite": frozenset({"completed"}),
    "check_run": frozenset({"completed"}),
}
PING = "ping"


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """True only for the exact signature of ``body``; compared in constant time (no timing oracle)."""
    if not secret or not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode("utf-8", "replace"))


@dataclass(frozen=True)
class RepoKey:
    """How a repository is recognised: ``host/owner/name`` (lower case) of a forge, or a local path."""

    value: str


def repo_key(url: str) -> RepoKey | None:
    """The key of a repository URL, or None when it names no repository (never raises)."""
    try:
        parsed = parse_repo_url(url)
    except RepoUrlError:
        return None
    if parsed.is_local:
        return RepoKey("local:" + parsed.path.rstrip("/"))
    pair = parsed.owner_name
    if pair is None or not parsed.host:
        return None
    host = parsed.host.lower()
    host = "github.com" if host in ("github.com", "www.github.com", "ssh.github.com") else host
    return RepoKey(f"{host}/{pair[0].lower()}/{pair[1].lower()}")


@dataclass(frozen=True)
class Change:
    """What a delivery says changed: the repository (every URL it gives) and the branch, when it names one."""

    event: str
    action: str | None
    repository: str
    keys: frozenset[RepoKey]
    branch: str | None


@dataclass(frozen=True)
class Ignored:
    """A delivery that concerns no target; ``reason`` is a short code (shown in the answer, counted)."""

    reason: str


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _repository(payload: dict[str, Any]) -> tuple[str, frozenset[RepoKey]]:
    repo = _dict(payload.get("repository"))
    urls = [repo.get(k) for k in ("clone_url", "html_url", "ssh_url", "git_url", "url")]
    keys = {key for url in urls if isinstance(url, str) and (key := repo_key(url)) is not None}
    name = repo.get("full_name")
    return (name if isinstance(name, str) else ""), frozenset(keys)


def _same_repository(head_repo: Any, full_name: str) -> bool:
    name = _dict(head_repo).get("full_name")
    return isinstance(name, str) and name.lower() == full_name.lower()


def _branch(event: str, payload: dict[str, Any], full_name: str) -> str | None | Ignored:
    """The branch the delivery is about (None: any branch of the repository may be concerned)."""
    if event == "push":
        ref = payload.get("ref")
        if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
            return Ignored("not_a_branch")
        return ref.removeprefix("refs/heads/")
    pull = _dict(payload.get("pull_request"))
    if event in ("pull_request", "pull_request_review"):
        head = _dict(pull.get("head"))
        ref = head.get("ref")
        if isinstance(ref, str) and is_agent_branch(ref):
            if not _same_repository(head.get("repo"), full_name):
                return Ignored("agent_branch_of_another_repository")
            return ref
        base = _dict(pull.get("base")).get("ref")
        return base if isinstance(base, str) else Ignored("no_branch")
    if event in ("check_suite", "check_run"):
        suite = _dict(payload.get(event)) if event == "check_suite" else _dict(_dict(payload.get(event)).get(
            "check_suite"))
        ref = suite.get("head_branch")
        return ref if isinstance(ref, str) else None
    return None  # issue_comment: a command or feedback on any PR or the dashboard issue


def read_delivery(event: str, payload: Any) -> Change | Ignored:
    """What a delivery of ``event`` (the ``X-GitHub-Event`` header) means, or why it is ignored.

    A ``ping`` (sent when a webhook is created, and by ``leviathan webhooks test``) names only its repository."""
    if event not in ACTIONS and event != PING:
        return Ignored("event_not_used")
    if not isinstance(payload, dict):
        return Ignored("payload_not_an_object")
    action = payload.get("action")
    allowed = ACTIONS.get(event)
    if allowed is not None and action not in allowed:
        return Ignored("action_not_used")
    full_name, keys = _repository(payload)
    if not keys:
        return Ignored("no_repository")
    branch = None if event == PING else _branch(event, payload, full_name)
    if isinstance(branch, Ignored):
        return branch
    return Change(event=event, action=action if isinstance(action, str) else None, repository=full_name,
                  keys=keys, branch=branch)


def concerns(change: Change, key: RepoKey | None, target_branch: str) -> bool:
    """Whether a change concerns a target on repository ``key`` working on ``target_branch``."""
    if key is None or key not in change.keys:
        return False
    return change.branch is None or change.branch == target_branch or is_agent_branch(change.branch)
