"""What Leviathan does with its own PRs' branches once humans have decided (merged or closed).

The one rule: Leviathan only deletes an ``agent/`` branch whose tip is still the commit it pushed
itself. A branch someone else pushed to is a human's work and is never deleted; the evidence says why
(``branch_kept``). Airflow-free, called from the PR sync of the guardrail step.
"""

from __future__ import annotations

from typing import Literal

from leviathan_lib.evidence.records import LedgerPR
from leviathan_lib.forge.base import Forge

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
