"""What Leviathan does with its own PRs' branches once humans have decided (merged or closed).

The one rule: Leviathan only deletes an ``agent/`` branch whose tip is still the commit it pushed
itself. A branch someone else pushed to is a human's work and is never deleted; the evidence says why
(``branch_kept``), and an open PR someone else pushed to gets one comment (``human_edited``).
Airflow-free, called from the PR sync of the guardrail step.
"""

from __future__ import annotations

import logging
from typing import Literal

from leviathan_lib.evidence.records import LedgerPR, LifecycleAction
from leviathan_lib.forge.base import Forge, ForgeError, PullRequest

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
    forge.delete_branch(pr.branch)
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
