"""How an attempt and a cycle ended, from whatever the earlier tasks left.

Precedence, for ``record_evidence``: a delivery the guardrails rejected beats everything; then an opened
PR; a worker that succeeded but whose PR was never opened failed (``pr_not_opened``). A worker that left
no result crashed, unless its pod ran past its deadline (timed out). A cycle that hit an error marks its
run failed (so alerts on failed runs fire); a skip stays green.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from leviathan_lib.contracts.xcom import AttemptPlan
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.evidence.records import AttemptEvidence, Outcome

#: Reason codes that mean "something is broken", not "nothing to do": the run is marked failed.
ERROR_OUTCOMES = frozenset({"failed", "timed_out", "rejected_by_guardrail"})
#: Skip reasons an operator must fix on the machine (install bubblewrap): the run is marked failed too.
ERROR_REASONS = frozenset({"sandbox_unavailable"})


def missing_result_outcome(prepared_at: str | None, timeout_seconds: int,
                           now: datetime) -> tuple[Outcome, str, str]:
    """A worker that left no result: a pod past its deadline (activeDeadlineSeconds) timed out; else it crashed."""
    if prepared_at and (now - datetime.fromisoformat(prepared_at)).total_seconds() >= timeout_seconds:
        return "timed_out", "timeout", f"the worker pod ran past attempt_timeout_seconds ({timeout_seconds}s)"
    return "failed", "worker_crashed", "run_worker left no result (see its task log)"


def _usage_evidence(usage: dict[str, Any] | None) -> dict[str, Any]:
    """The attempt evidence's model fields; the daily budget (``llm_daily_usd``) sums ``cost_usd``."""
    if not usage:
        return {}
    return {"cost_usd": usage.get("cost_usd"), "model": usage.get("model"), "prompt_sha256": usage.get("prompt_sha256")}


def attempt_evidence(
    target: TargetConfig, plan: AttemptPlan, *, result: dict[str, Any] | None, pr: dict[str, Any] | None,
    rejection: dict[str, Any] | None, prepared_at: str | None, now: datetime,
) -> AttemptEvidence:
    """The evidence of attempt ``plan``: the worker's ``result`` (or its absence), then the delivery."""
    from leviathan_lib.worker.sandbox import mode_label, required_mode

    attempt = AttemptEvidence(task_id=plan.task_id, attempt=plan.attempt, task_hash=plan.task_hash,
                              branch=plan.branch, backend=target.worker_backend,
                              image=target.worker_image if target.worker_backend == "kubernetes" else None,
                              sandbox=mode_label(required_mode(target)) if plan.recipe else None)
    if plan.continue_pr is not None:
        attempt.continued_pr, attempt.continue_why = plan.continue_pr.number, plan.continue_pr.why
        attempt.continue_start = plan.continue_pr.start
    if result:
        error = result.get("error") or {}
        attempt = attempt.model_validate({
            **attempt.model_dump(), "outcome": result["outcome"],
            # The real diff's paths (delivery's), never the worker's claim.
            "changed_paths": (pr or rejection or {}).get("changed_paths") or [],
            "started_at": result.get("attempt_started_at") or result.get("started_at"),
            "finished_at": result.get("finished_at"),
            "error_code": error.get("code"), "error_message": error.get("message"),
            **_usage_evidence(result.get("usage")), "egress": result.get("egress"),
            "limits": result.get("limits"), "cleanup": result.get("cleanup"),
            "checks": result.get("checks") or [], "checks_red_at_base": result.get("checks_red_at_base") or [],
        })
        if attempt.checks and attempt.sandbox is None:  # a model's change: only the checks ran repository code
            attempt.sandbox = mode_label(required_mode(target))
    else:
        attempt.outcome, attempt.error_code, attempt.error_message = missing_result_outcome(
            prepared_at, target.attempt_timeout_seconds, now)
    if rejection:
        attempt.outcome = "rejected_by_guardrail"
        attempt.error_code, attempt.error_message = rejection["code"], rejection["message"]
    elif pr:
        attempt.pr_number, attempt.pr_url = pr["number"], pr["url"]
        attempt.pr_head_sha = pr.get("head_sha")
        attempt.delivery_note = pr.get("note") or ""
        if pr.get("awaiting_ci"):  # pushed; its PR opens once CI passes (pr_creation: checks_pass)
            attempt.awaiting_ci, attempt.pr_title, attempt.pr_body = True, pr.get("title"), pr.get("body")
    elif attempt.outcome == "succeeded":
        attempt.outcome, attempt.error_code = "failed", "pr_not_opened"
        attempt.error_message = "open_pull_request did not finish (see its task log)"
    attempt.finished_at = attempt.finished_at or now
    return attempt


def cycle_failure(record: dict[str, Any]) -> str | None:
    """Why the run must be marked failed (the cycle hit an error), or None for a green run."""
    attempt = record.get("attempt") or {}
    if (record["decision"] == "error" or attempt.get("outcome") in ERROR_OUTCOMES
            or ERROR_REASONS & set(record.get("reasons") or [])):
        return f"cycle stopped: {record['stopped_reason']}: {record['stopped_detail']}"
    return None
