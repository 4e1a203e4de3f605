"""Leviathan's replies on its PRs: every review and command it reads is answered once, never quoted.

What is owed lives in the ledger (:attr:`~leviathan_lib.evidence.records.LedgerPR.replies`, folded by
:func:`~leviathan_lib.evidence.records.with_replies`): a refusal is owed by the cycle that read it, a served
(or failed) request by the attempt that served it. Each cycle's PR sync posts what its PRs owe, at most one
comment per PR answering up to :data:`MAX_PER_COMMENT` events, through the forge's usual write pacing. The
comment ends with a hidden marker naming the events it answers; before posting, the PR's comments are read
and an event already answered there (a crash after the post, a cleared run) is settled without a post. A
refused post (5xx, a locked conversation) stays owed for the next cycle, at most ``MAX_REPLY_TRIES`` times,
and never holds up anything else. Names are rendered with :func:`leviathan_lib.core.inert.md` (no live
mention); the reviewer's or commenter's text is never repeated. Airflow-free.
"""

from __future__ import annotations

import logging
import re

from leviathan_lib.core import inert
from leviathan_lib.core.reasons import explain
from leviathan_lib.cycle.ticks import UNNAMED
from leviathan_lib.evidence.records import LedgerPR, LifecycleAction, OwedReply, with_replies
from leviathan_lib.forge.base import Forge, ForgeError

log = logging.getLogger("leviathan")

#: Events one reply comment answers at most; PRs answered per cycle at most (the rest wait a cycle).
MAX_PER_COMMENT = 20
MAX_PRS_PER_CYCLE = 10
_MARKER = re.compile(r"<!-- leviathan-reply: ([rct0-9 ]{1,400}) -->")

_WHAT_NOW = {
    "command_not_permitted": "ask someone with write permission on the repository to comment `/leviathan retry`",
    "review_not_permitted": "ask someone with write permission on the repository to request changes",
    "command_malformed": "comment exactly `/leviathan retry` (or `/leviathan rebase`), nothing else",
    "command_unknown": "the commands are `/leviathan retry` and `/leviathan rebase`",
    "feedback_human_edited": "the branch is yours now: push the change yourself, or close the PR",
    "feedback_attempts_exhausted": "push the change yourself, or close the PR and change the task in the "
                                   "backlog (a new definition starts over)",
    "review_rounds_exhausted": "merge or close the PR, push the change yourself, or change the task in the "
                               "backlog (a new definition starts over)",
}


def _line(reply: OwedReply) -> str:
    what = {"r": "review", "t": "tick on the dashboard"}.get(reply.key[:1], "command")
    event = f"{inert.md(f'@{reply.author}', limit=60)}'s {what}" if reply.author else f"a {what} by {UNNAMED}"
    if reply.kind == "served":
        paths = ", ".join(inert.code_span(p) for p in reply.paths) or "no file"
        return f"- Pushed {inert.code_span((reply.head_sha or '')[:12])} for {event}; it changes {paths}."
    if reply.kind == "failed":
        code = inert.code_span(reply.reason or "unknown")
        return (f"- The attempt for {event} pushed nothing ({code}, see the cycle's evidence); "
                "comment `/leviathan retry` to try again.")
    reason = reply.reason or "unknown"
    now = _WHAT_NOW.get(reason, "see the cycle's evidence")
    return f"- {event[0].upper()}{event[1:]} was not acted on ({inert.code_span(reason)}: {explain(reason)}). " \
           f"Instead: {now}."


def render(replies: list[OwedReply]) -> str:
    """One reply comment answering ``replies``; its marker names them. No line starts with a command."""
    lines = "\n".join(_line(r) for r in replies)
    keys = " ".join(r.key for r in replies)
    return f"Leviathan read this PR's new reviews and commands:\n\n{lines}\n\n<!-- leviathan-reply: {keys} -->"


def answered(forge: Forge, number: int) -> set[str]:
    """The events a reply comment on PR ``number`` already answers (ForgeError: cannot tell now)."""
    keys: set[str] = set()
    for comment in forge.list_comments(number):
        for match in _MARKER.finditer(comment.body):
            keys.update(match.group(1).split())
    return keys


def post_replies(forge: Forge, known: list[LedgerPR], actions: list[LifecycleAction],
                 open_numbers: set[int]) -> list[LifecycleAction]:
    """Post what the open PRs in ``known`` owe after this cycle's ``actions``: ``reply_posted`` or
    ``reply_failed`` per PR. Bounded by :data:`MAX_PRS_PER_CYCLE` PRs and :data:`MAX_PER_COMMENT` events each."""
    out: list[LifecycleAction] = []
    for pr in known:
        if len(out) >= MAX_PRS_PER_CYCLE:
            break
        owed = with_replies(pr.replies, [a for a in actions if a.number == pr.number])[:MAX_PER_COMMENT]
        if pr.number not in open_numbers or not owed:
            continue
        common = {"number": pr.number, "task_id": pr.task_id, "branch": pr.branch}
        try:
            done = answered(forge, pr.number)
            todo = [r for r in owed if r.key not in done]
            if todo:
                forge.comment(pr.number, render(todo))
                for reply in todo:
                    _react(forge, reply)
        except ForgeError as exc:
            log.warning("PR #%s: reply not posted (%s); trying again next cycle", pr.number, exc.code)
            out.append(LifecycleAction(kind="reply_failed", reply_keys=[r.key for r in owed],
                                       detail=f"{exc.code}: could not reply", **common))
            continue
        log.info("PR #%s: replied to %s", pr.number, ", ".join(r.key for r in owed))
        out.append(LifecycleAction(kind="reply_posted", reply_keys=[r.key for r in owed], commented=bool(todo),
                                   detail="" if todo else "already answered on the forge", **common))
    return out


def _react(forge: Forge, reply: OwedReply) -> None:
    """A reaction on the command comment (GitHub): ``rocket`` served, ``confused`` otherwise; best effort."""
    if reply.comment_id is None:
        return
    try:
        forge.react(reply.comment_id, "rocket" if reply.kind == "served" else "confused")
    except ForgeError as exc:
        log.info("comment %s: no reaction (%s)", reply.comment_id, exc.code)
