"""What Leviathan does with its own PRs: branches once humans decided, superseded and conflicted PRs.

The one rule: Leviathan only deletes, closes or rewrites an ``agent/`` branch whose tip is still the
commit it pushed itself. A branch someone else pushed to is a human's work and is never touched; the
evidence says why (``branch_kept``), and an open PR someone else pushed to gets one comment
(``human_edited``). An open PR whose task definition changed is closed as superseded; one that conflicts
with its moved base is brought up to date by the cycle's attempt (``continue_pr``, start ``base``).
Airflow-free, called from the PR sync of the guardrail step.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field

from leviathan_lib.contracts.attempt import ContinuePr
from leviathan_lib.evidence.records import LedgerPR, LifecycleAction
from leviathan_lib.forge.base import Forge, ForgeError, LeaseLost, PullRequest

log = logging.getLogger("leviathan")

#: Why a branch was kept (stable codes, in ``PrStateChange.branch_kept``).
HUMAN_EDITED = "human_edited"
PUSHED_HEAD_UNKNOWN = "pushed_head_unknown"
DELETE_MERGED_OFF = "delete_merged_branches_off"


def settle_branch(forge: Forge, pr: LedgerPR, state: Literal["merged", "closed"], *,
                  delete_merged: bool) -> tuple[bool, str | None]:
    """Delete the branch of a merged or closed PR when that is safe: ``(deleted, why kept)``.

    A branch that is already gone (deleted by hand or by the forge's own auto-delete) is neither.
    Raises ForgeError when the forge cannot answer; the caller retries next cycle.
    """
    if state == "merged" and not delete_merged:
        return False, DELETE_MERGED_OFF
    tip = forge.branch_sha(pr.branch)
    if tip is None:
        return False, None
    if pr.head_sha is None:
        if state == "merged":
            return False, PUSHED_HEAD_UNKNOWN
        # Records from before the pushed commit was recorded: a closed PR's branch goes, as it always did.
    elif tip != pr.head_sha:
        return False, HUMAN_EDITED
    try:
        forge.delete_branch(pr.branch, lease=pr.head_sha or tip)
    except LeaseLost:  # a human pushed between the read and the delete: their commit stays
        return False, HUMAN_EDITED
    return True, None


HUMAN_EDITED_COMMENT = (
    "Someone other than Leviathan pushed to this branch, so Leviathan will not rewrite, close or delete it. "
    "It is yours now: merge or close it as you see fit. (Leviathan comments on this once.)"
)


def notice_human_edits(forge: Forge, open_prs: list[PullRequest], known: list[LedgerPR]) -> list[LifecycleAction]:
    """Open Leviathan PRs whose branch tip moved off the pushed commit; each gets one comment, ever.

    A comment the forge refused is recorded uncommented and tried again next cycle (the ledger remembers
    only comments that were made). Bounded by the PRs the ledger holds open.
    """
    current = {pr.number: pr for pr in open_prs}
    actions = []
    for pr in known:
        now = current.get(pr.number)
        if pr.human_edited or pr.head_sha is None or now is None or now.head_sha in (None, pr.head_sha):
            continue
        action = LifecycleAction(kind="human_edited", number=pr.number, task_id=pr.task_id, branch=pr.branch,
                                 head_sha=now.head_sha)
        try:
            forge.comment(pr.number, HUMAN_EDITED_COMMENT)
            action.commented = True
        except ForgeError as exc:
            log.warning("PR #%s: could not comment (%s); trying again next cycle", pr.number, exc)
            action.detail = f"{exc.code}: could not comment"
        log.info("PR #%s (%s): %s pushed by someone else; Leviathan leaves it alone", pr.number, pr.branch,
                 now.head_sha)
        actions.append(action)
    return actions


SUPERSEDED_COMMENT = (
    "The definition of this task changed in the backlog while this pull request was open, so this attempt is "
    "superseded: Leviathan closes it and works on the task as it is defined now (in a new pull request, under "
    "the usual attempt limits)."
)
BRANCH_DELETED_COMMENT = (
    "The branch of this pull request was deleted, so Leviathan leaves this pull request alone: it will not "
    "push to, close or replace it. (Leviathan comments on this once.)"
)


class Review(BaseModel):
    """What the lifecycle did to, and plans for, Leviathan's open PRs this cycle."""

    actions: list[LifecycleAction] = Field(default_factory=list)
    #: PRs closed as superseded this cycle: no longer open for the guardrails.
    closed: list[int] = Field(default_factory=list)
    #: The PR to bring up to date on the new base (at most one per cycle) and its task.
    refresh: ContinuePr | None = None
    refresh_task: str | None = None


def review_open_prs(forge: Forge, open_prs: list[PullRequest], known: list[LedgerPR], *, hashes: dict[str, str],
                    base_sha: str | None, refreshes: Counter[str], max_refreshes: int) -> Review:
    """Supersede the open PRs whose task definition changed and pick a conflicted one to bring up to date.

    Only PRs whose branch is still the commit Leviathan pushed are touched (a human's push is sacred and
    :func:`notice_human_edits` reports it). ``hashes`` are the definition hashes of the backlog's tasks at
    ``base_sha``, the commit the target branch points at now; a PR is checked for conflicts only when that
    base moved since its head was built and it was not handled at that base before (at most one refresh
    per base commit, ``max_refreshes`` per task). A forge that cannot answer leaves the PR for next cycle.
    """
    current = {pr.number: pr for pr in open_prs}
    review = Review()
    for pr in known:
        now = current.get(pr.number)
        if pr.human_edited or pr.head_sha is None or now is None or now.head_sha != pr.head_sha:
            continue
        task_hash = hashes.get(pr.task_id)
        if task_hash is None:  # the task left the backlog (or is invalid there): the PR is the humans' to judge
            continue
        try:
            if task_hash != pr.task_hash:
                _supersede(forge, pr, review)
            elif review.refresh is None and base_sha and base_sha != pr.base_sha and base_sha not in pr.conflict_bases:
                _check_conflict(forge, pr, review, base_sha=base_sha, refreshed=refreshes[pr.task_id],
                                max_refreshes=max_refreshes)
        except ForgeError as exc:
            log.warning("PR #%s: lifecycle left for the next cycle: %s", pr.number, exc)
    return review


def _still_ours(forge: Forge, pr: LedgerPR, review: Review) -> bool:
    """The branch is still the commit Leviathan pushed (read from the forge, not from a list that may lag);
    a deleted branch is recorded (one comment) and the PR left alone."""
    tip = forge.branch_sha(pr.branch)
    if tip is None:
        action = LifecycleAction(kind="pr_branch_deleted", number=pr.number, task_id=pr.task_id, branch=pr.branch)
        _comment(forge, action, BRANCH_DELETED_COMMENT)
        review.actions.append(action)
        log.info("PR #%s: branch %s was deleted; Leviathan leaves the PR alone", pr.number, pr.branch)
    return tip == pr.head_sha


def _supersede(forge: Forge, pr: LedgerPR, review: Review) -> None:
    """Close the PR of a task whose definition changed, comment why, delete its (unchanged) branch."""
    if pr.head_sha is None or not _still_ours(forge, pr, review):
        return
    action = LifecycleAction(kind="pr_superseded", number=pr.number, task_id=pr.task_id, branch=pr.branch,
                             head_sha=pr.head_sha)
    review.actions.append(action)
    try:
        forge.close_pr(pr.number)
    except ForgeError as exc:  # still open: it keeps blocking its task, so no second PR; tried again next cycle
        action.detail = f"{exc.code}: could not close"
        log.warning("PR #%s: could not close the superseded PR (%s); trying again next cycle", pr.number, exc)
        return
    action.closed = True
    review.closed.append(pr.number)
    _comment(forge, action, SUPERSEDED_COMMENT)
    try:
        forge.delete_branch(pr.branch, lease=pr.head_sha)
    except ForgeError as exc:  # LeaseLost included: a human's push since the read is kept
        log.warning("PR #%s: superseded branch %s not deleted: %s", pr.number, pr.branch, exc)
    log.info("PR #%s (%s): superseded by a new definition of the task; closed", pr.number, pr.task_id)


def _check_conflict(forge: Forge, pr: LedgerPR, review: Review, *, base_sha: str, refreshed: int,
                    max_refreshes: int) -> None:
    """A PR that conflicts with the moved base is brought up to date (once per base, within the bound); one
    that merges cleanly is left alone, however far behind."""
    mergeable = forge.mergeable(pr.number)
    if mergeable is True or not _still_ours(forge, pr, review) or mergeable is None:
        return
    if refreshed >= max_refreshes:
        review.actions.append(LifecycleAction(
            kind="pr_refresh_limit", number=pr.number, task_id=pr.task_id, branch=pr.branch, head_sha=pr.head_sha,
            base_sha=base_sha, detail=f"conflicts with its base; {refreshed} refresh(es) of {max_refreshes} used"))
        log.info("PR #%s conflicts with its base %s but max_pr_refreshes (%s) is reached", pr.number, base_sha,
                 max_refreshes)
        return
    assert pr.head_sha is not None  # review_open_prs skips PRs without a recorded push
    review.refresh = ContinuePr(number=pr.number, branch=pr.branch, head_sha=pr.head_sha, start="base",
                                why="pr_conflicted")
    review.refresh_task = pr.task_id
    log.info("PR #%s conflicts with its base %s: bringing it up to date", pr.number, base_sha)


def _comment(forge: Forge, action: LifecycleAction, body: str) -> None:
    if action.number is None:  # a branch without a PR: nowhere to comment
        return
    try:
        forge.comment(action.number, body)
        action.commented = True
    except ForgeError as exc:
        log.warning("PR #%s: could not comment (%s)", action.number, exc)
        action.detail = f"{exc.code}: could not comment"
