"""What each stable reason code means, in words for people: one text per code, used by every surface.

The demo's summary, the dashboard issue, the Leviathan view and the plan all explain a code the same way;
``tests/core/test_reasons.py`` checks that every :class:`ReasonCode` has its text.
"""

from __future__ import annotations

from typing import Final

from leviathan_lib.core.guardrails import ReasonCode

EXPLAIN: Final[dict[ReasonCode, str]] = {
    ReasonCode.AUTONOMY_DISABLED: "autonomy is off (the target's autonomy_enabled, or the global switch)",
    ReasonCode.FORGE_STATE_UNKNOWN: "the forge could not be read, so the open PRs are unknown (fails closed)",
    ReasonCode.OPEN_PR_LIMIT: "as many Leviathan PRs are open as max_open_prs allows: review, merge or close one",
    ReasonCode.PR_HOURLY_LIMIT: "max_prs_per_hour PRs were opened in the last hour",
    ReasonCode.CIRCUIT_BREAKER_OPEN: "attempts failed too often in a row: fix the cause, then reset the breaker",
    ReasonCode.LLM_BUDGET_EXHAUSTED: "the model budget llm_daily_usd of the last 24 hours is spent",
    ReasonCode.NO_ELIGIBLE_TASK: "no task in the backlog may run now (see each task)",
    ReasonCode.NOT_READY: "not marked ready: true by a human",
    ReasonCode.STATUS_NOT_PENDING: "its status is not pending: already delivered or in progress",
    ReasonCode.DEPENDENCIES_INCOMPLETE: "depends on a task that is not completed yet",
    ReasonCode.SCOPE_VIOLATION: "its allowed_paths are missing or leave the target's allowed_path_prefixes",
    ReasonCode.ATTEMPTS_EXHAUSTED: "its definition failed max_attempts_per_task times (failed, timed out or "
                                   "refused by a guardrail); it waits until the task definition changes",
    ReasonCode.PR_OPEN_FOR_TASK: "a Leviathan PR for this task is open, waiting for review",
    ReasonCode.INVALID_TASK: "the backlog entry is invalid (see its problems)",
    ReasonCode.PR_CLOSED_UNCHANGED: "a human closed its PR; it waits until the task definition changes",
    ReasonCode.SANDBOX_UNAVAILABLE: "the recipe sandbox (bubblewrap) cannot be built on the worker machine",
    ReasonCode.PROTECTED_PATH: "its allowed_paths cover a path only humans change",
    ReasonCode.HUMAN_EDITED: "someone else pushed to its PR branch: Leviathan never rewrites it",
    ReasonCode.PR_BRANCH_DELETED: "its PR branch was deleted by hand: Leviathan leaves the PR alone",
    ReasonCode.PR_CONFLICTED: "its PR conflicts with the base and is brought up to date",
    ReasonCode.PR_REFRESH_LIMIT: "its PR conflicts with the base, but max_pr_refreshes refreshes were made",
    ReasonCode.PR_SUPERSEDED: "its definition changed while its PR was open: the PR was closed as superseded",
    ReasonCode.COMMAND_MALFORMED: "a /leviathan comment was not exactly a known command: ignored",
    ReasonCode.COMMAND_UNKNOWN: "a /leviathan comment named an unknown command: ignored",
    ReasonCode.COMMAND_NOT_PERMITTED: "/leviathan retry or rebase from a user without write permission: ignored",
    ReasonCode.REVIEW_NOT_PERMITTED: "changes requested by a user without write permission: ignored",
    ReasonCode.FEEDBACK_HUMAN_EDITED: "review feedback on a PR someone else pushed to: nothing is pushed",
    ReasonCode.FEEDBACK_ATTEMPTS_EXHAUSTED: "review feedback, but the task definition failed max_attempts_per_task "
                                            "times: merge or close the PR, or edit the task definition",
    ReasonCode.REJECTED_BY_HUMAN: "a human rejected it at the approval gate (or nobody answered in time); "
                                  "it waits until the task definition changes",
    ReasonCode.CHECKS_RED_AT_BASE: "the repository's own checks already fail on the pinned commit: fix them "
                                   "(or set checks_red_at_base: deliver_with_warning); it waits for a new commit",
    ReasonCode.CI_FAILED: "CI failed: on an open PR one more attempt fixes it (at most max_ci_fix_attempts); a "
                          "branch held for green CI with no fix left was deleted, and the task waits until its "
                          "definition changes",
    ReasonCode.AWAITING_CI: "its agent/ branch is pushed and its PR opens once CI on it passes (checks_pass)",
    ReasonCode.CI_FIX_LIMIT: "CI failed on its PR, but no fix attempt is left: the PR is the humans' to judge",
    ReasonCode.REVIEW_ROUNDS_EXHAUSTED: "the task definition used max_review_rounds human rounds (review feedback, "
                                        "/leviathan retry, approval-gate rejections): its PR stays open; merge or "
                                        "close it, or edit the task definition to start afresh",
    ReasonCode.FLEET_STATE_UNKNOWN: "the fleet file or the other targets' evidence could not be read, so the fleet "
                                    "limits are unknown (fails closed)",
    ReasonCode.FLEET_OPEN_PRS_LIMIT: "as many Leviathan PRs are open on this forge account as fleet_max_open_prs "
                                     "allows, across all its targets",
    ReasonCode.FLEET_PR_HOURLY_LIMIT: "fleet_max_prs_per_hour PRs were opened on this forge account in the last hour",
    ReasonCode.FLEET_BREAKER_OPEN: "too many of the fleet's attempts failed in the last 24 hours: every target "
                                   "stops until an admin resets the fleet breaker",
    ReasonCode.TEAM_BUDGET_EXHAUSTED: "the target's team reached its max_open_prs or spent its llm_daily_usd "
                                      "(the fleet file's teams)",
    ReasonCode.DASHBOARD_TICK_STALE: "a box was ticked for a PR that is no longer open: nothing to do",
    ReasonCode.DASHBOARD_TAMPERED: "the dashboard was edited beyond its checkboxes: no tick was read, and the "
                                   "body was restored",
}


def explain(code: str) -> str:
    """The text for ``code``; an unknown code (a newer record) says where to look instead of guessing."""
    try:
        return EXPLAIN[ReasonCode(code)]
    except ValueError:
        return "see the cycle evidence"
