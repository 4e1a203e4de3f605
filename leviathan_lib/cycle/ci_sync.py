"""CI on Leviathan's open PRs: each cycle's PR sync reads the CI state of every open PR's head.

One reading per PR per cycle (on GitHub two conditional requests, free when nothing changed). A state that
differs from what the ledger holds becomes a lifecycle action (``ci_passed``, ``ci_failed``, ``ci_pending``,
``ci_unknown``): the evidence, the events (``pr.ci_failed``, ...) and, through the ledger, the view, the
dashboard and the metrics. A head with no CI reported (``none``, as every head is right after a push) is no
event: the ledger's reading then names an older head. A forge that cannot answer makes the state ``unknown``
for that PR only: it is recorded, blocks nothing else and is never taken for success. What CI says is
untrusted text: redacted and bounded here, escaped wherever it is shown.

A red head Leviathan pushed gets a fix attempt (:func:`fix_requests`), like review feedback: the task's next
attempt starts from the PR's branch and pushes one commit on top, told the failing checks' report as
untrusted data, at most ``max_ci_fix_attempts`` times per PR. Airflow-free.
"""

from __future__ import annotations

import logging

from leviathan_lib.contracts.attempt import ContinuePr
from leviathan_lib.core.ci import CiStatus, failure_report, unknown
from leviathan_lib.core.guardrails import Budgets
from leviathan_lib.core.secrets_scan import redact_text
from leviathan_lib.cycle.steps import ContinueRequest
from leviathan_lib.evidence.records import CI_FIX_WHY, CI_KINDS, LedgerPR, LifecycleAction, PrCi
from leviathan_lib.forge.base import Forge, ForgeError, PullRequest

log = logging.getLogger("leviathan")

#: Failing check names listed in an action's ``detail`` at most.
MAX_NAMED = 10


def read_ci(forge: Forge, sha: str) -> CiStatus:
    """The CI state of ``sha``; ``unknown`` (with the forge's reason) when the forge cannot answer."""
    try:
        return forge.ci_status(sha)
    except ForgeError as exc:
        log.warning("CI of %s unknown: %s", sha, exc)
        return unknown(sha, redact_text(f"{exc.code}: {exc.message}"))


def reading(status: CiStatus, ci: PrCi, **ident: object) -> LifecycleAction | None:
    """The lifecycle action for a new reading of a head, or None when the ledger already holds it or CI
    reported nothing on it."""
    if status.state == "none" or (status.state, status.sha) == (ci.state, ci.head_sha):
        return None
    detail = status.detail
    if status.state == "failure":
        names = [c.name for c in status.failing]
        more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
        detail = redact_text("failing: " + ", ".join(names[:MAX_NAMED]) + more)
    report = failure_report(status) if status.state == "failure" else None
    return LifecycleAction.model_validate({**ident, "kind": CI_KINDS[status.state], "head_sha": status.sha,
                                           "ci_state": status.state, "detail": detail, "feedback": report})


def read_open_prs(forge: Forge, open_prs: list[PullRequest], known: list[LedgerPR]) -> list[LifecycleAction]:
    """The CI changes of the open PRs the ledger holds, read on the head the forge reports now (a human's
    push too: its CI is shown, though Leviathan never fixes it). Bounded by the ledger's open PRs."""
    current = {pr.number: pr for pr in open_prs}
    actions = []
    for pr in known:
        now = current.get(pr.number)
        if now is None or now.head_sha is None:
            continue
        action = reading(read_ci(forge, now.head_sha), pr.ci, number=pr.number, task_id=pr.task_id,
                         branch=pr.branch)
        if action is not None:
            log.info("PR #%s: CI %s on %s %s", pr.number, action.ci_state, action.head_sha, action.detail)
            actions.append(action)
    return actions


def fix_requests(known: list[LedgerPR], actions: list[LifecycleAction], heads: dict[int, str | None],
                 budgets: Budgets, *, max_fixes: int,
                 own_heads: dict[int, str] | None = None) -> tuple[list[ContinueRequest], list[LifecycleAction]]:
    """The open PRs whose red CI an attempt may fix now (ledger order), and a ``ci_fix_limit`` action for each
    PR that turned red this cycle with no fix left (``max_ci_fix_attempts`` per PR, or the task definition's
    ``max_attempts_per_task`` failures; a CI fix is no review round). Only the head Leviathan pushed is fixed: a
    branch someone else pushed to is never rewritten (its CI is the pusher's); ``own_heads`` is what this very run
    already pushed (a "clear")."""
    fixes: list[ContinueRequest] = []
    limits: list[LifecycleAction] = []
    for pr in known:
        if pr.number not in heads or pr.human_edited or pr.head_sha is None:
            continue
        ci = pr.ci
        for action in actions:
            if action.number == pr.number and action.ci_state is not None:
                ci = ci.with_reading(action)
        ours = heads[pr.number] in (pr.head_sha, (own_heads or {}).get(pr.number))
        if ci.state != "failure" or ci.head_sha != pr.head_sha or not ours:
            continue
        spent = (f"{ci.fix_attempts} of max_ci_fix_attempts ({max_fixes}) used" if ci.fix_attempts >= max_fixes
                 else f"the task definition failed max_attempts_per_task ({budgets.max_failures}) times"
                 if budgets.failures_spent(pr.task_id, pr.task_hash) else None)
        if spent is None:
            fixes.append(ContinueRequest(task_id=pr.task_id, pr=ContinuePr(
                number=pr.number, branch=pr.branch, head_sha=pr.head_sha, start="branch", why=CI_FIX_WHY,
                feedback=ci.report)))
        elif any(a.number == pr.number and a.kind == "ci_failed" for a in actions):  # once, when it turns red
            log.info("PR #%s: CI failed, no fix attempt left (%s)", pr.number, spent)
            limits.append(LifecycleAction(kind="ci_fix_limit", number=pr.number, task_id=pr.task_id,
                                          branch=pr.branch, head_sha=pr.head_sha, detail=spent))
    return fixes, limits
