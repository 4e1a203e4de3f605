"""What the forge says about Leviathan's PRs: which are open, which humans merged or closed since, their CI.

A PR a human closed without merging is a "no": the task waits for a changed definition. The branches of
closed and (unless ``delete_merged_branches`` is off) merged PRs are deleted when nobody but Leviathan
pushed to them (:mod:`leviathan_lib.cycle.lifecycle`). A forge that cannot be read makes the open PRs
unknown (None): the guardrails then fail closed. A re-run of a cycle ("clear") must not be stopped by the
PR that same run already opened.
"""

from __future__ import annotations

import logging
from collections import Counter

from pydantic import BaseModel, Field

from leviathan_lib.contracts.attempt import ContinuePr
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.guardrails import ClosedPR, OpenPR
from leviathan_lib.core.names import AGENT_BRANCH_PREFIX, branch_task_id
from leviathan_lib.cycle import ci_sync
from leviathan_lib.cycle.feedback import read_feedback
from leviathan_lib.cycle.held import HeldInputs, HeldSync, sync_held
from leviathan_lib.cycle.lifecycle import Review, notice_human_edits, review_open_prs, settle_branch
from leviathan_lib.cycle.replies import post_replies
from leviathan_lib.cycle.ticks import read_ticks
from leviathan_lib.evidence.records import (
    AttemptEvidence,
    DashboardState,
    History,
    LedgerPR,
    LifecycleAction,
    PrStateChange,
)
from leviathan_lib.forge import target_forge
from leviathan_lib.forge.base import Forge, ForgeError, PullRequest

log = logging.getLogger("leviathan")


class ForgeState(BaseModel):
    """What the forge said about Leviathan's PRs this cycle, and what the lifecycle did and plans."""

    #: Open ``agent/`` PRs without those closed as superseded this cycle; None when the forge is unknown.
    open_prs: list[OpenPR] | None
    changes: list[PrStateChange] = Field(default_factory=list)
    actions: list[LifecycleAction] = Field(default_factory=list)
    review: Review = Field(default_factory=Review)
    #: The branches held for green CI: opened, fixed, deleted or still waiting (``pr_creation: checks_pass``).
    held: HeldSync = Field(default_factory=HeldSync)


def forge_state(target: TargetConfig, repo_url: str, known: list[LedgerPR], *, hashes: dict[str, str] | None = None,
                base_sha: str | None = None, refreshes: Counter[str] | None = None,
                rerun: AttemptEvidence | None = None, held: HeldInputs | None = None,
                dashboard: DashboardState | None = None) -> ForgeState:
    """:func:`sync_pr_states` and the lifecycle of the still open PRs on the target's forge (human edits, then
    superseded and conflicted PRs given the backlog's task ``hashes`` at ``base_sha``, then review feedback,
    then the dashboard's ticked boxes (``dashboard``: its ledger state, when the target has one), then CI, then
    the replies owed);
    None open PRs when the forge cannot be opened or read. ``rerun`` is the attempt this very run already
    made on an open PR (a "clear" runs ``plan`` again): its push is Leviathan's own, and the same attempt is
    planned again, so delivery finds its commit already there. ``held``: the branches waiting for green CI
    (:mod:`leviathan_lib.cycle.held`); a PR opened for one this cycle is open for the guardrails too."""
    try:
        forge = target_forge(target, repo_url)
        listed = forge.list_open_prs(head_prefix=AGENT_BRANCH_PREFIX)
    except ForgeError as exc:
        log.error("forge state unknown for %s: %s", target.target_id, exc)
        return ForgeState(open_prs=None)
    open_prs, changes = sync_pr_states(forge, known, target_id=target.target_id,
                                       delete_merged=target.delete_merged_branches, listed=listed)
    lease = {pr.number: pr for pr in known}
    if rerun is not None and rerun.pr_head_sha:  # what this run pushed is not a human's push
        known = [pr.model_copy(update={"head_sha": rerun.pr_head_sha}) if pr.number == rerun.continued_pr else pr
                 for pr in known]
    actions = notice_human_edits(forge, listed, known)
    review = Review()
    before = lease.get(rerun.continued_pr) if rerun is not None and rerun.continued_pr is not None else None
    if rerun is not None and rerun.continue_start == "base" and before is not None and before.head_sha:
        review = Review(refresh=ContinuePr(number=before.number, branch=before.branch, head_sha=before.head_sha,
                                           start="base", why=rerun.continue_why or "pr_conflicted"),
                        refresh_task=before.task_id)
    elif hashes is not None:
        review = review_open_prs(forge, listed, known, hashes=hashes, base_sha=base_sha,
                                 refreshes=refreshes or Counter(), max_refreshes=target.max_pr_refreshes)
    if open_prs is not None:
        open_prs = [pr for pr in open_prs if pr.number not in review.closed]
    still_open = [pr for pr in known if pr.number not in review.closed]
    actions += review.actions + read_feedback(forge, listed, still_open)
    if dashboard is not None:
        actions += read_ticks(forge, dashboard, still_open, {pr.number for pr in listed})
    actions += ci_sync.read_open_prs(forge, listed, still_open)
    actions += post_replies(forge, still_open, actions, {pr.number for pr in listed})
    waiting = sync_held(forge, target, held) if held is not None and held.branches else HeldSync()
    if open_prs is not None:
        open_prs += [OpenPR(number=a.number, branch=a.branch, task_id=a.task_id, head_sha=a.head_sha)
                     for a in waiting.actions if a.kind == "pr_created" and a.number is not None]
    return ForgeState(open_prs=open_prs, changes=changes, actions=actions + waiting.actions, review=review,
                      held=waiting)


def sync_pr_states(forge: Forge, known: list[LedgerPR], *, target_id: str = "", delete_merged: bool = True,
                   listed: list[PullRequest] | None = None) -> tuple[list[OpenPR] | None, list[PrStateChange]]:
    """Open ``agent/`` PRs (None when unreadable; ``listed`` if already read) and the merges/closes of
    ``known`` PRs, deleting the branches Leviathan alone pushed to. A PR whose state cannot be read yet is
    left for the next cycle."""
    try:
        prs = forge.list_open_prs(head_prefix=AGENT_BRANCH_PREFIX) if listed is None else listed
    except ForgeError as exc:
        log.error("forge state unknown for %s: %s", target_id, exc)
        return None, []
    open_numbers = {pr.number for pr in prs}
    changes = []
    for pr in known:
        if pr.number in open_numbers:
            continue
        try:
            change = _state_change(forge, pr, delete_merged=delete_merged)
        except ForgeError as exc:
            log.warning("cannot sync PR #%s yet: %s", pr.number, exc)
            continue
        if change is not None:
            changes.append(change)
            log.info("PR #%s (%s) was %s by a human", pr.number, pr.task_id, change.state)
    return [OpenPR(number=pr.number, branch=pr.head, task_id=branch_task_id(pr.head), head_sha=pr.head_sha)
            for pr in prs], changes


def _state_change(forge: Forge, pr: LedgerPR, *, delete_merged: bool) -> PrStateChange | None:
    current = forge.get_pr(pr.number)
    if current.state == "open":
        return None
    deleted, kept = settle_branch(forge, pr, current.state, delete_merged=delete_merged)
    if kept:
        log.info("PR #%s: branch %s kept (%s)", pr.number, pr.branch, kept)
    return PrStateChange(number=pr.number, task_id=pr.task_id, branch=pr.branch, state=current.state,
                         task_hash=pr.task_hash, branch_deleted=deleted, branch_kept=kept,
                         merge_sha=current.merge_sha if current.state == "merged" else None,
                         opened_at=current.created_at, decided_at=current.merged_at or current.closed_at,
                         ci_first_push=pr.ci.first_push)


def own_continued_attempt(history: History, run_id: str) -> AttemptEvidence | None:
    """The attempt run ``run_id`` itself already made on an open PR, if any (its record exists on a "clear")."""
    for record in history.cycles:
        if record.dag_run_id == run_id and record.attempt and record.attempt.continued_pr is not None:
            return record.attempt
    return None


def own_held_heads(history: History, run_id: str) -> dict[str, str]:
    """What run ``run_id`` itself already pushed to branches held for green CI (its record exists on a "clear")."""
    return {r.attempt.branch: r.attempt.pr_head_sha for r in history.cycles
            if r.dag_run_id == run_id and r.attempt and r.attempt.awaiting_ci and r.attempt.pr_head_sha}


def without_own_prs(open_prs: list[OpenPR], history: History, run_id: str) -> list[OpenPR]:
    """Leave out the PRs run ``run_id`` itself opened (on the branch of its own recorded attempt)."""
    own = {r.attempt.branch for r in history.cycles
           if r.dag_run_id == run_id and r.attempt and r.attempt.continued_pr is None}
    if not own:
        return open_prs
    return [pr for pr in open_prs if pr.branch not in own]


def closed_by_humans(changes: list[PrStateChange]) -> list[ClosedPR]:
    """The task definitions whose PRs were closed without merging in this sync."""
    return [ClosedPR(task_id=c.task_id, task_hash=c.task_hash) for c in changes if c.state == "closed" and c.task_hash]
