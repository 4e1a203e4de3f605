"""Branches pushed before their PR (``pr_creation: checks_pass``): each cycle's PR sync decides when it opens.

Like Renovate's ``prCreation: status-success``: the cycle that made the change pushes the ``agent/`` branch
and the ledger holds it (it counts toward ``max_open_prs``). Each later cycle reads CI on the commit
Leviathan pushed:

- green: the PR opens (``pr_created``), with the title and body delivery built and checked;
- no CI at all ``ci_wait_minutes`` after the push: the PR opens with a note saying no CI reported;
- red: a fix attempt on the branch (as on an open PR, at most ``max_ci_fix_attempts``), or, with no fix
  left, the branch is deleted (a lease: only while it is still Leviathan's push) and the task waits for a
  new definition (``ci_branch_deleted``, task reason ``ci_failed``);
- pending, unknown (the forge could not say), or no CI yet within the wait: it keeps waiting. Nothing
  opens on an unknown state.

A branch someone else pushed to, or deleted, is left alone and no longer held. A PR opens only while
autonomy is on (the target's and the global switch). Airflow-free.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from leviathan_lib.contracts.attempt import ContinuePr
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.guardrails import Budgets, ClosedPR, TaskCount
from leviathan_lib.cycle.ci_sync import read_ci, reading
from leviathan_lib.cycle.steps import ContinueRequest
from leviathan_lib.evidence.records import CI_FIX_WHY, LedgerHeld, LifecycleAction
from leviathan_lib.forge.base import Forge, ForgeConflict, ForgeError

log = logging.getLogger("leviathan")


class HeldInputs(BaseModel):
    """The held branches (the ledger's), when the cycle runs, whether a PR may open (autonomy on), failed attempts
    per task definition (``max_attempts_per_task``), and what this very run already pushed per branch (a "clear")."""

    branches: list[LedgerHeld]
    now: datetime
    may_open: bool
    failures: dict[str, TaskCount] = Field(default_factory=dict)
    own_heads: dict[str, str] = Field(default_factory=dict)


class HeldSync(BaseModel):
    """What this cycle did with the held branches: its actions, the branches still held, the fix to attempt."""

    actions: list[LifecycleAction] = Field(default_factory=list)
    still_held: list[LedgerHeld] = Field(default_factory=list)
    fixes: list[ContinueRequest] = Field(default_factory=list)


def ci_failed_closures(actions: list[LifecycleAction], held: list[LedgerHeld]) -> list[ClosedPR]:
    """The tasks whose held branch this cycle deleted for red CI: they wait for a new definition now."""
    hashes = {h.branch: h.task_hash for h in held}
    return [ClosedPR(task_id=a.task_id, task_hash=hashes[a.branch], by_ci=True) for a in actions
            if a.kind == "ci_branch_deleted" and a.branch in hashes]


def no_ci_note(sha: str, minutes: int) -> str:
    return (f"\n> **No CI reported** on `{sha}` within {minutes} minutes (`ci_wait_minutes`) of the push, so "
            f"Leviathan opened this pull request without a CI result.\n")


def sync_held(forge: Forge, target: TargetConfig, inputs: HeldInputs) -> HeldSync:
    """Open, fix, delete or keep each held branch (see the module docstring). A forge that cannot answer keeps
    the branch for the next cycle."""
    result = HeldSync()
    for branch in inputs.branches:
        try:
            _sync_one(forge, target, branch, result, inputs)
        except ForgeError as exc:
            log.warning("held branch %s: left for the next cycle: %s", branch.branch, exc)
            result.still_held.append(branch)
    return result


def _sync_one(forge: Forge, target: TargetConfig, held: LedgerHeld, result: HeldSync, inputs: HeldInputs) -> None:
    ident = {"number": None, "task_id": held.task_id, "branch": held.branch}
    tip = forge.branch_sha(held.branch)
    if tip is None or tip not in (held.head_sha, inputs.own_heads.get(held.branch)):
        # Deleted, or someone else pushed: theirs now, never opened, deleted or rewritten by Leviathan.
        kind = "pr_branch_deleted" if tip is None else "human_edited"
        log.info("held branch %s: %s; Leviathan leaves it alone", held.branch, kind)
        result.actions.append(LifecycleAction.model_validate({**ident, "kind": kind, "head_sha": tip}))
        return
    status = read_ci(forge, held.head_sha)
    action = reading(status, held.ci, **ident)
    if action is not None:
        result.actions.append(action)
        held = held.model_copy(update={"ci": held.ci.with_reading(action)})
    waited = inputs.now - held.pushed_at >= timedelta(minutes=target.ci_wait_minutes)
    if status.state == "success" or (status.state == "none" and waited):
        if inputs.may_open:
            note = no_ci_note(held.head_sha, target.ci_wait_minutes) if status.state == "none" else ""
            result.actions.append(_open(forge, target, held, note, ident))
            return
        log.info("held branch %s: CI %s, but autonomy is off: its PR waits", held.branch, status.state)
    elif status.state == "failure":
        fix = fix_or_spent(target, held, inputs.failures)
        if isinstance(fix, ContinueRequest):
            result.fixes.append(fix)
        else:  # no fix left: the branch goes (it is still Leviathan's push, read above)
            forge.delete_branch(held.branch, lease=tip)  # LeaseLost: a human pushed since; kept
            log.info("held branch %s: CI failed, no fix left (%s): deleted", held.branch, fix)
            result.actions.append(LifecycleAction.model_validate(
                {**ident, "kind": "ci_branch_deleted", "head_sha": held.head_sha, "detail": fix}))
            return
    result.still_held.append(held)


def fix_or_spent(target: TargetConfig, held: LedgerHeld, failures: dict[str, TaskCount]) -> ContinueRequest | str:
    """The fix attempt for a held branch whose CI failed (on its head), or why no fix is left."""
    if held.ci.fix_attempts >= target.max_ci_fix_attempts:
        return f"{held.ci.fix_attempts} of max_ci_fix_attempts ({target.max_ci_fix_attempts}) used"
    if Budgets.used(failures, held.task_id, held.task_hash) >= target.max_attempts_per_task:
        return f"the task definition failed max_attempts_per_task ({target.max_attempts_per_task}) times"
    return ContinueRequest(task_id=held.task_id, pr=ContinuePr(
        number=None, branch=held.branch, head_sha=held.head_sha, start="branch", why=CI_FIX_WHY,
        feedback=held.ci.report))


def ledger_fix(target: TargetConfig, held: list[LedgerHeld], failures: dict[str, TaskCount]) -> ContinueRequest | None:
    """The fix attempt a held branch's red CI asks for, as far as the ledger tells (the view, which does
    not ask the forge, decides with it like the DAG)."""
    for branch in held:
        if branch.ci.state == "failure" and branch.ci.head_sha == branch.head_sha:
            fix = fix_or_spent(target, branch, failures)
            if isinstance(fix, ContinueRequest):
                return fix
    return None


def _open(forge: Forge, target: TargetConfig, held: LedgerHeld, note: str, ident: Mapping[str, object]
          ) -> LifecycleAction:
    """Open the held branch's PR (a rerun finds the one it opened); ForgeError leaves it for next cycle."""
    try:
        pr = forge.create_pr(head=held.branch, base=target.target_branch, title=held.title, body=held.body + note)
    except ForgeConflict:
        found = forge.find_pr_by_head(held.branch)
        if found is None or found.state != "open":
            raise
        pr = found
    log.info("held branch %s: PR #%s opened (%s)", held.branch, pr.number, "no CI reported" if note else "CI passed")
    return LifecycleAction.model_validate({**ident, "kind": "pr_created", "number": pr.number,
                                           "head_sha": held.head_sha,
                                           "detail": "no CI reported within ci_wait_minutes" if note else pr.url})
