"""What a human on the forge may ask of Leviathan about one of its PRs, and what is ignored and why.

Three things are requests: a review that requests changes, and the comment commands ``/leviathan retry``
(one more attempt from the PR's branch) and ``/leviathan rebase`` (one more attempt on the current base:
the PR brought up to date now).
Both count only from a user with write permission on the repository (write, maintain or admin); anything
else is recorded with a stable reason code and otherwise ignored. No other forge text is ever an
instruction: an ordinary comment is not read at all, and a review's text reaches the executor only as
untrusted data (:func:`bounded_feedback`).

The grammar is strict on purpose: a comment is a command only when its whole text, trimmed, is exactly
``/leviathan retry`` or ``/leviathan rebase``. A comment with any line starting with ``/leviathan`` that is
not exactly one of them is an
attempted command and is refused (``command_malformed``, or ``command_unknown`` for another verb) rather
than guessed at. Each review and comment is decided once: the ledger remembers the newest id decided per
PR (:class:`Seen`), and only newer ones are decided again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from leviathan_lib.core.guardrails import ReasonCode
from leviathan_lib.core.secrets_scan import redact_text

COMMAND_PREFIX = "/leviathan"
RETRY_COMMAND = "/leviathan retry"
REBASE_COMMAND = "/leviathan rebase"
#: The commands, by the verb :func:`parse_command` returns, and the request each one is.
COMMANDS: dict[str, Literal["retry_command", "rebase_command"]] = {"retry": "retry_command",
                                                                   "rebase": "rebase_command"}
#: Permissions that may command Leviathan (GitHub's base roles; ``maintain`` reports as ``write``).
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
#: Review text handed to an executor at most (bytes of UTF-8), after redaction.
MAX_FEEDBACK_BYTES = 8192
#: Reviews and comments decided per PR per cycle at most (the newest win; older ones are decided as seen).
MAX_ITEMS_PER_PR = 100

Permission = Literal["admin", "maintain", "write", "triage", "read", "none", "unknown"]
ReviewState = Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Trigger = Literal["changes_requested", "retry_command", "rebase_command"]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Review(_Item):
    """A review of a PR as any forge reports it."""

    id: int = Field(ge=1)
    author: str
    state: ReviewState
    body: str = ""
    submitted_at: datetime | None = None
    #: The commit the review was made on.
    commit_sha: str | None = None


class PrComment(_Item):
    """A comment on a PR's conversation (an issue comment on GitHub)."""

    id: int = Field(ge=1)
    author: str
    body: str
    created_at: datetime


class Seen(_Item):
    """The newest review and comment ids already decided on one PR (0: none yet)."""

    review_id: int = 0
    comment_id: int = 0


class Request(_Item):
    """A permitted request: the next attempt of the PR's task starts from its branch."""

    why: Trigger
    author: str
    #: The review's text, bounded and redacted; None for a command.
    feedback: str | None = None
    review_id: int | None = None
    comment_id: int | None = None


class Ignored(_Item):
    """A review or command that was not acted on, who sent it and why (a stable reason code)."""

    reason: ReasonCode
    author: str
    review_id: int | None = None
    comment_id: int | None = None
    detail: str = ""


class Decided(_Item):
    """What one PR's new reviews and comments amount to."""

    #: The newest permitted request, if any (older ones in the same batch are superseded by it).
    request: Request | None = None
    ignored: list[Ignored] = Field(default_factory=list)
    seen: Seen = Field(default_factory=Seen)


def parse_command(body: str) -> ReasonCode | Literal["retry", "rebase"] | None:
    """The verb of exactly ``/leviathan retry`` or ``/leviathan rebase``, a reason code for any other
    attempted command, else None.

    An attempted command is a comment any of whose lines, left-trimmed, starts with ``/leviathan`` as a word.
    """
    text = body.strip()
    if text == RETRY_COMMAND:
        return "retry"
    if text == REBASE_COMMAND:
        return "rebase"
    for line in text.splitlines():
        words = line.strip().split()
        if not words or words[0] != COMMAND_PREFIX:
            continue
        if len(words) > 1 and not words[1].startswith(("retry", "rebase")):  # "retry;..." is junk after it
            return ReasonCode.COMMAND_UNKNOWN
        return ReasonCode.COMMAND_MALFORMED
    return None


def may_command(permission: str) -> bool:
    """Write, maintain and admin may; read, triage, none and unknown (the forge could not say) may not."""
    return permission in WRITE_PERMISSIONS


def bounded_feedback(text: str) -> str:
    """Review text safe to hand an executor: credentials redacted, at most :data:`MAX_FEEDBACK_BYTES`."""
    redacted = redact_text(text.replace("\r\n", "\n")).strip()
    data = redacted.encode()
    if len(data) <= MAX_FEEDBACK_BYTES:
        return redacted
    marker = "\n[... feedback truncated]"
    cut = data[: MAX_FEEDBACK_BYTES - len(marker)].decode(errors="ignore")
    return cut + marker


def decide_feedback(reviews: list[Review], comments: list[PrComment], permissions: dict[str, str], *,
                    seen: Seen, own_logins: frozenset[str] = frozenset()) -> Decided:
    """Decide the reviews and comments newer than ``seen``: the newest permitted request and what is ignored.

    ``permissions`` maps each author to their permission (a missing author is ``unknown``: not permitted).
    Reviews other than "changes requested" and comments that are no attempted command are not requests
    and leave no trace; ``own_logins`` (Leviathan's own forge users) are never read at all.
    """
    new_reviews = sorted((r for r in reviews if r.id > seen.review_id), key=lambda r: r.id)[-MAX_ITEMS_PER_PR:]
    new_comments = sorted((c for c in comments if c.id > seen.comment_id), key=lambda c: c.id)[-MAX_ITEMS_PER_PR:]
    candidates: list[tuple[datetime | None, Request]] = []
    ignored: list[Ignored] = []
    for review in new_reviews:
        if review.author in own_logins or review.state != "CHANGES_REQUESTED":
            continue
        permission = permissions.get(review.author, "unknown")
        if not may_command(permission):
            ignored.append(Ignored(reason=ReasonCode.REVIEW_NOT_PERMITTED, author=review.author,
                                   review_id=review.id, detail=f"permission {permission}"))
            continue
        candidates.append((review.submitted_at, Request(why="changes_requested", author=review.author,
                                                        feedback=bounded_feedback(review.body) or None,
                                                        review_id=review.id)))
    for comment in new_comments:
        if comment.author in own_logins:
            continue
        parsed = parse_command(comment.body)
        if parsed is None:
            continue
        if parsed not in COMMANDS:
            ignored.append(Ignored(reason=parsed, author=comment.author, comment_id=comment.id,
                                   detail=_first_line(comment.body)))
            continue
        permission = permissions.get(comment.author, "unknown")
        if not may_command(permission):
            ignored.append(Ignored(reason=ReasonCode.COMMAND_NOT_PERMITTED, author=comment.author,
                                   comment_id=comment.id, detail=f"permission {permission}"))
            continue
        candidates.append((comment.created_at, Request(why=COMMANDS[parsed], author=comment.author,
                                                       comment_id=comment.id)))
    newest = max(candidates, key=lambda c: c[0] or _EPOCH, default=None)  # ties: the later in the list
    new_seen = Seen(review_id=max([seen.review_id, *(r.id for r in new_reviews)]),
                    comment_id=max([seen.comment_id, *(c.id for c in new_comments)]))
    return Decided(request=newest[1] if newest else None, ignored=ignored, seen=new_seen)


def authors_to_check(reviews: list[Review], comments: list[PrComment], *, seen: Seen,
                     own_logins: frozenset[str] = frozenset()) -> list[str]:
    """The authors whose permission :func:`decide_feedback` needs (so the forge is asked only about them)."""
    names = {r.author for r in reviews if r.id > seen.review_id and r.state == "CHANGES_REQUESTED"}
    names |= {c.author for c in comments if c.id > seen.comment_id and parse_command(c.body) in COMMANDS}
    return sorted(names - own_logins)


def _first_line(body: str) -> str:
    """The first line of an attempted command, bounded (evidence quotes it; it is never executed)."""
    line = next((ln.strip() for ln in body.strip().splitlines() if ln.strip()), "")
    return redact_text(line)[:200]
