"""One cycle's guardrail check with everything it depends on: the read, the history, the forge's PRs.

The task body hands in what it read from Airflow (the read XCom, the evidence window, the global
switch); this module decides what the guardrails see, so the precedence (a read error or an unreadable
history stops the cycle; a replay never asks the forge) is testable without a scheduler.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from leviathan_lib.contracts.xcom import CycleError, GuardrailResult, ReadResult
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.fleet import FleetState
from leviathan_lib.core.guardrails import OpenPR
from leviathan_lib.cycle import ci_sync, feedback, pr_sync, reverts
from leviathan_lib.cycle.decision import (
    DecisionInputs,
    build_decision,
    ledger_budgets,
    ledger_open_prs,
    state_from_ledger,
)
from leviathan_lib.cycle.held import HeldInputs, ci_failed_closures
from leviathan_lib.cycle.history import HISTORY_UNREADABLE
from leviathan_lib.cycle.lifecycle import Review
from leviathan_lib.cycle.steps import ContinueRequest
from leviathan_lib.evidence.records import History, Ledger, LedgerHeld, LifecycleAction, PrStateChange, Totals

log = logging.getLogger("leviathan")


def history_error(history: History) -> CycleError | None:
    """An unreadable evidence record holds the breaker open: the cycle stops (fails closed)."""
    if not history.unreadable:
        return None
    for bad in history.unreadable:
        log.error("unreadable evidence record from run %s: %s", bad.run_id, bad.problem)
    return CycleError(
        code=HISTORY_UNREADABLE,
        message=f"{len(history.unreadable)} evidence record(s) cannot be read; the breaker is treated as open",
    )


def task_hashes(read: ReadResult) -> dict[str, str]:
    """The definition hash of every valid task of the backlog read at the pinned commit."""
    if read.error or read.backlog_text is None:
        return {}
    backlog, _ = read.parsed_backlog()
    return {task.id: task.definition_hash() for task in backlog.tasks}


def refresh_counts(ledger: Ledger) -> Counter[str]:
    """Refresh attempts (``pr_conflicted``) per task, whatever their outcome: ``max_pr_refreshes`` bounds them."""
    return Counter(ledger.refresh_counts)


def pr_continuation(target: TargetConfig, ledger: Ledger, actions: list[LifecycleAction],
                    heads: dict[int, str | None], *, own_heads: dict[int, str] | None = None,
                    ) -> tuple[ContinueRequest | None, list[LifecycleAction]]:
    """The open PR the next attempt continues, review feedback first (the first servable request), then red
    CI; and the requests dropped (a human pushed, no failures or review rounds left) and the red PRs with no fix left.
    ``heads``: the open PRs' branch tips (the forge's, or the ledger's where the forge is not asked)."""
    budgets = ledger_budgets(target, ledger)
    servable, dropped = feedback.pending_requests(ledger.open_prs, actions, heads, budgets, own_heads=own_heads)
    fixes, limits = ci_sync.fix_requests(ledger.open_prs, actions, heads, budgets,
                                         max_fixes=target.max_ci_fix_attempts, own_heads=own_heads)
    found = next(iter(feedback.continue_prs(ledger.open_prs, servable).items()), None)
    request = ContinueRequest(task_id=found[0], pr=found[1]) if found else next(iter(fixes), None)
    return request, dropped + limits


def check_cycle(  # noqa: PLR0913 — keyword-only: what the DAG's plan read, each named
                target: TargetConfig, read: ReadResult, *, history: History, ledger: Ledger, run_id: str,
                repo_url: str, global_autonomy: bool, now: datetime | None = None,
                totals: Totals | None = None,
                fleet_reader: Callable[[], FleetState] | None = None) -> GuardrailResult:
    """The guardrail result of run ``run_id``, with the ledger it used and the PR states it synced.

    ``now`` (default: the clock; a replay: its as-of time) is when the hourly PR limit is counted back from.
    ``fleet_reader`` reads the fleet state when the cycle would attempt (None: not evaluated, a replay).
    """
    if not read.error:
        read.error = history_error(history)
    changes: list[PrStateChange] = []
    actions: list[LifecycleAction] = []
    review = Review()
    own_heads: dict[int, str] = {}
    held: list[LedgerHeld] | None = None  # None: as the ledger holds them (the forge was not asked)
    held_fixes: list[ContinueRequest] = []
    scanned: str | None = None
    open_prs: list[OpenPR] | None
    if read.error:
        open_prs = []
    elif read.as_of:
        open_prs = ledger_open_prs(ledger)
    else:
        rerun = pr_sync.own_continued_attempt(history, run_id)
        if rerun is not None and rerun.continued_pr is not None and rerun.pr_head_sha:
            own_heads[rerun.continued_pr] = rerun.pr_head_sha
        waiting = HeldInputs(branches=ledger.held_branches, now=now or datetime.now(UTC),
                             may_open=global_autonomy and target.autonomy_enabled,
                             failures=dict(ledger.failures),
                             own_heads=pr_sync.own_held_heads(history, run_id))
        forge = pr_sync.forge_state(target, repo_url, ledger.open_prs, hashes=task_hashes(read),
                                    base_sha=read.commit_sha, refreshes=refresh_counts(ledger), rerun=rerun,
                                    held=waiting, dashboard=ledger.dashboard if target.dashboard else None)
        changes, actions, review = forge.changes, forge.actions, forge.review
        found = forge.open_prs
        open_prs = pr_sync.without_own_prs(found, history, run_id) if found is not None else None
        if found is not None:
            held, held_fixes = forge.held.still_held, forge.held.fixes
        reverted, scanned = reverts.check_reverts(target, read, ledger, changes)
        changes = changes + reverted
    continue_pr = ContinueRequest(task_id=review.refresh_task, pr=review.refresh) \
        if review.refresh and review.refresh_task else None
    if open_prs:
        served, dropped = pr_continuation(target, ledger, actions, {pr.number: pr.head_sha for pr in open_prs},
                                          own_heads=own_heads)
        actions = actions + dropped
        # A conflicted PR is brought up to date first; review feedback and red CI wait for the next cycle.
        continue_pr = continue_pr or served
    continue_pr = continue_pr or next(iter(held_fixes), None)  # then red CI on a branch held before its PR
    moment = read.as_of or now or datetime.now(UTC)
    state = state_from_ledger(ledger.with_reverts(changes, moment), global_autonomy=global_autonomy, now=moment,
                              open_prs=open_prs, held=held, commit_sha=read.commit_sha,
                              closed=pr_sync.closed_by_humans(changes) + ci_failed_closures(actions,
                                                                                            ledger.held_branches))
    result = build_decision(DecisionInputs(
        target=target, read=read, state=state, continue_request=continue_pr, fleet_reader=fleet_reader))
    result.ledger = ledger
    result.totals = totals
    result.pr_sync = changes
    result.lifecycle = actions
    result.reverts_scanned_to = scanned
    return result
