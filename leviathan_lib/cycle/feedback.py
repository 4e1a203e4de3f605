"""Review feedback on Leviathan's open PRs: read it from the forge, decide it, and serve it with an attempt.

Each cycle's PR sync reads the reviews and comments of the PRs the ledger holds open, newer than what
was already decided (:func:`leviathan_lib.core.commands.decide_feedback`), and records every request and
every ignored review or command as a lifecycle action (evidence and an event). A permitted request stays
pending in the ledger until an attempt serves it: that attempt starts from the PR's branch and pushes to
the same PR (:class:`~leviathan_lib.contracts.attempt.ContinuePr`), is one review round (``max_review_rounds``; a
failure of it counts toward ``max_attempts_per_task`` too), and never happens on a branch someone else pushed
to. Airflow-free.
"""

from __future__ import annotations

import logging
from typing import Literal

from leviathan_lib.contracts.attempt import ContinuePr
from leviathan_lib.core.commands import Request, Seen, authors_to_check, decide_feedback
from leviathan_lib.core.guardrails import Budgets, ReasonCode
from leviathan_lib.evidence.records import LedgerPR, LifecycleAction
from leviathan_lib.forge.base import Forge, ForgeError, PullRequest

log = logging.getLogger("leviathan")

#: Distinct authors whose permission is asked per PR per cycle at most (any others count as unknown: not
#: permitted, recorded).
MAX_AUTHORS = 20


def read_feedback(forge: Forge, open_prs: list[PullRequest], known: list[LedgerPR]) -> list[LifecycleAction]:
    """The requests and ignored items among the new reviews and comments of the open PRs ``known`` holds.

    A PR whose reviews, comments or authors cannot be read is left for the next cycle (nothing is marked
    seen). Bounded by the open PRs the ledger holds and :data:`MAX_AUTHORS` per PR.
    """
    current = {pr.number for pr in open_prs}
    actions: list[LifecycleAction] = []
    for pr in known:
        if pr.number not in current:
            continue
        seen = Seen(review_id=pr.seen_review_id, comment_id=pr.seen_comment_id)
        try:
            reviews, comments = forge.list_reviews(pr.number), forge.list_comments(pr.number)
            authors = authors_to_check(reviews, comments, seen=seen)[:MAX_AUTHORS]
            permissions = {author: forge.permission(author) for author in authors}
        except ForgeError as exc:
            log.warning("PR #%s: cannot read its reviews and comments yet (%s)", pr.number, exc)
            continue
        decided = decide_feedback(reviews, comments, permissions, seen=seen)
        common = {"number": pr.number, "task_id": pr.task_id, "branch": pr.branch,
                  "seen_review_id": decided.seen.review_id, "seen_comment_id": decided.seen.comment_id}
        for item in decided.ignored:
            log.info("PR #%s: %s by %s ignored (%s)", pr.number, "review" if item.review_id else "command",
                     item.author, item.reason.value)
            actions.append(LifecycleAction(kind="feedback_ignored", reason=item.reason.value, author=item.author,
                                           review_id=item.review_id, comment_id=item.comment_id, detail=item.detail,
                                           **common))
        if decided.request is not None:  # approvals and plain comments leave no trace
            actions.append(_request_action(decided.request, common))
            _seen(forge, decided.request)
    return actions


def _seen(forge: Forge, request: Request) -> None:
    """``eyes`` on a command comment as soon as it is read (GitHub; the reply adds ``rocket`` once it is served);
    best effort: a reaction is never a reason to hold anything up."""
    if request.comment_id is None:
        return
    try:
        forge.react(request.comment_id, "eyes")
    except ForgeError as exc:
        log.info("comment %s: no reaction (%s)", request.comment_id, exc.code)


def _request_action(request: Request, common: dict[str, object]) -> LifecycleAction:
    log.info("PR #%s: %s by %s; the next attempt starts from its branch", common["number"], request.why,
             request.author)
    return LifecycleAction.model_validate({
        "kind": request.why, "author": request.author, "review_id": request.review_id,
        "comment_id": request.comment_id, "feedback": request.feedback, **common})


def pending_requests(known: list[LedgerPR], actions: list[LifecycleAction], heads: dict[int, str | None],
                     budgets: Budgets, *, own_heads: dict[int, str] | None = None
                     ) -> tuple[dict[int, LifecycleAction], list[LifecycleAction]]:
    """The requests an attempt may serve now (by PR number) and the ones dropped, with a reason code.

    ``heads`` maps the open PRs to their branch tips now; ``actions`` are this cycle's lifecycle actions;
    ``own_heads`` what this very run already pushed (a "clear" re-plans its own attempt, which is no human's
    push: delivery then finds its commit already there).
    A request on a branch whose tip is not what Leviathan pushed (someone else pushed: never rewritten), or
    for a task definition with no failures or review rounds left, is dropped and recorded; the ledger then
    forgets it (the PR stays open for humans).
    """
    servable: dict[int, LifecycleAction] = {}
    dropped: list[LifecycleAction] = []
    for pr in known:
        if pr.number not in heads:
            continue
        folded = pr
        for action in actions:
            if action.number == pr.number and action.kind != "human_edited":
                folded = folded.with_feedback(action)
        request = folded.pending
        if request is None:
            continue
        reason = None
        if pr.human_edited or pr.head_sha is None or heads[pr.number] not in (
                pr.head_sha, (own_heads or {}).get(pr.number)):
            reason = ReasonCode.FEEDBACK_HUMAN_EDITED
        elif budgets.failures_spent(pr.task_id, pr.task_hash):
            reason = ReasonCode.FEEDBACK_ATTEMPTS_EXHAUSTED
        elif budgets.rounds_spent(pr.task_id, pr.task_hash):
            reason = ReasonCode.REVIEW_ROUNDS_EXHAUSTED
        if reason is None:
            servable[pr.number] = request
            continue
        log.info("PR #%s: %s by %s not served (%s)", pr.number, request.kind, request.author, reason.value)
        dropped.append(request.model_copy(update={
            "kind": "feedback_ignored", "reason": reason.value, "feedback": None,
            "detail": f"{request.kind} by {request.author}"}))
    return servable, dropped


def continue_prs(known: list[LedgerPR], servable: dict[int, LifecycleAction]) -> dict[str, ContinuePr]:
    """By task: the PR its next attempt continues, from the branch Leviathan last pushed (the lease)."""
    out: dict[str, ContinuePr] = {}
    for pr in known:
        request = servable.get(pr.number)
        if request is None or pr.head_sha is None:
            continue
        start: Literal["base", "branch"] = "base" if request.kind == "rebase_command" else "branch"
        out[pr.task_id] = ContinuePr(number=pr.number, branch=pr.branch, head_sha=pr.head_sha, start=start,
                                     why=request.kind, feedback=request.feedback)
    return out

