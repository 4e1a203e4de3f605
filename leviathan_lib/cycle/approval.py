"""The human approval gate (``approval: plan | pull_request``): what the approver sees, and what they decided.

The text is shown in Airflow's Required Actions view as Markdown, and every piece of it is user input
(the backlog, the recipes, the worker's diff): values are escaped, code goes in fences longer than any
backtick run it holds, everything is bounded, and the whole text is redacted for credential shapes, so
the view can neither be forged nor leak a secret. The diff is the worker's patch, the one delivery
checks and pushes after an approval. Airflow-free: the gate operator hands in the XComs and the
response.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from leviathan_lib.contracts.xcom import AttemptPlan, ReadResult
from leviathan_lib.core import inert
from leviathan_lib.core.backlog import Task
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.inert import fenced
from leviathan_lib.core.secrets_scan import redact_text, scan_bytes
from leviathan_lib.evidence.records import ApprovalEvidence, AttemptEvidence, LedgerRejected

Gate = Literal["plan", "pull_request"]
#: The options of Airflow's ApprovalOperator.
APPROVE, REJECT = "Approve", "Reject"
#: The form field of the gate: why (optional; a rejection's reason goes into the evidence).
REASON_PARAM = "reason"
MAX_NOTE_CHARS = 500
#: Characters of the diff shown; the rest is cut (the PR, once approved, shows all of it).
MAX_DIFF_CHARS = 20_000
MAX_TEXT_CHARS = 4_000
MAX_ITEMS = 50


def md(value: object) -> str:
    """Untrusted inline text for the approver, inert (:func:`leviathan_lib.core.inert.md`) and bounded."""
    return inert.md(value, limit=MAX_TEXT_CHARS)


def _task(read: ReadResult, plan: AttemptPlan) -> Task:
    backlog, _ = read.parsed_backlog()
    return backlog.by_id()[plan.task_id]


def subject(gate: Gate, target: TargetConfig, plan: AttemptPlan) -> str:
    """Target and task first: Airflow's Required Actions list cuts long subjects."""
    what = "the plan" if gate == "plan" else "the diff"
    return f"{target.target_id} / {plan.task_id}: approve {what} (attempt {plan.attempt})"


def _header(target: TargetConfig, read: ReadResult, plan: AttemptPlan, task: Task) -> list[str]:
    prefixes = ", ".join(md(p) for p in target.allowed_path_prefixes[:MAX_ITEMS])
    paths = ", ".join(md(p) for p in task.allowed_paths[:MAX_ITEMS]) or "none"
    lines = [
        f"**Task {md(task.id)}**: {md(task.title)}",
        "",
        f"- repository: {md(read.repo_url)} at {md((read.commit_sha or '')[:12])} of {md(read.branch)}",
        f"- attempt {plan.attempt} on branch {md(plan.branch)} (task definition {md(plan.task_hash)})",
        f"- scope: the task may change {paths}; the target allows {prefixes}",
    ]
    if task.description.strip():
        lines += ["", "Description:", "", fenced(task.description[:MAX_TEXT_CHARS])]
    if task.acceptance_criteria:
        lines += ["", "Acceptance criteria:", ""] + [f"- {md(c)}" for c in task.acceptance_criteria[:MAX_ITEMS]]
    return lines


def _recipe_lines(target: TargetConfig, read: ReadResult, task: Task) -> list[str]:
    """The plan: the recipe's steps (argv as written in the recipes file), or the model that will run."""
    if not task.recipe:
        return ["", f"**Plan**: the model {md(target.llm_model)} makes the change (at most "
                    f"{target.llm_max_turns} turns, ${target.llm_cost_cap_usd:.2f}), within the scope above."]
    from leviathan_lib.contracts.recipes import parse_recipes

    try:
        recipe = parse_recipes(read.recipes_text or "", source=target.recipes_path)[task.recipe]
    except (ValidationFailed, KeyError):
        return ["", f"**Plan**: recipe {md(task.recipe)} (it cannot be read here; the worker will refuse it)"]
    steps = recipe.steps or ([recipe.command] if recipe.command else [])
    listing = "\n".join(" ".join(_quote(arg) for arg in argv) for argv in steps[:MAX_ITEMS])
    lines = ["", f"**Plan**: recipe {md(task.recipe)}, run in the sandbox:", "",
             fenced(listing[:MAX_DIFF_CHARS], info="sh")]
    if recipe.env:
        lines += ["", "with environment " + ", ".join(md(k) for k in sorted(recipe.env)[:MAX_ITEMS])]
    return lines


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[A-Za-z0-9_./:=@%+-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def _footer(gate: Gate, target: TargetConfig) -> list[str]:
    hours = target.approval_timeout_seconds / 3600
    after = "the worker runs" if gate == "plan" else "the branch is pushed and the pull request opened"
    return ["", f"**Approve**: {after}. **Reject** (with an optional reason, kept in the evidence): nothing is "
                f"pushed and the task waits until its definition in the backlog changes. Without an answer within "
                f"{hours:g} h the gate rejects."]


def plan_body(target: TargetConfig, read: ReadResult, plan: AttemptPlan) -> str:
    """The ``plan`` gate's text: the selected task, its scope and the plan."""
    task = _task(read, plan)
    return redact_text("\n".join(_header(target, read, plan, task) + _recipe_lines(target, read, task)
                                 + _footer("plan", target)))


def diff_body(target: TargetConfig, read: ReadResult, plan: AttemptPlan, patch: str,
              changed_paths: list[str]) -> str:
    """The ``pull_request`` gate's text: the task and the final diff (bounded; withheld if it holds a secret)."""
    task = _task(read, plan)
    lines = _header(target, read, plan, task)
    lines += ["", "Changed paths: " + (", ".join(md(p) for p in changed_paths[:MAX_ITEMS]) or "none")]
    rules = sorted({f.rule for f in scan_bytes(patch.encode("utf-8", "surrogateescape"))})
    if rules:
        lines += ["", f"**The diff is not shown**: it holds possible secrets ({md(', '.join(rules))}); "
                      "delivery will refuse it. Reject it."]
    else:
        shown = patch[:MAX_DIFF_CHARS]
        cut = f" (first {MAX_DIFF_CHARS} of {len(patch)} characters)" if len(patch) > MAX_DIFF_CHARS else ""
        lines += ["", f"**Final diff**{cut}:", "", fenced(shown, info="diff")]
    lines += ["", "Leviathan also sets the task's status in the backlog when that file is in scope."]
    return redact_text("\n".join(lines + _footer("pull_request", target)))


def decision(gate: Gate, target: TargetConfig, plan: AttemptPlan, response: dict[str, Any]) -> ApprovalEvidence:
    """The evidence of an answer (Airflow's HITL response event: chosen options, who, when, timed out)."""
    chosen = list(response.get("chosen_options") or [])
    user = response.get("responded_by_user") or {}
    at = response.get("responded_at")
    timed_out = bool(response.get("timedout")) or not user
    return ApprovalEvidence(
        gate=gate, task_id=plan.task_id, task_hash=plan.task_hash,
        choice="approved" if chosen == [APPROVE] and not timed_out else "rejected",
        reason="timeout" if timed_out else "human",
        by=None if timed_out else str(user.get("id")), by_name=None if timed_out else str(user.get("name")),
        at=at if isinstance(at, datetime) else (datetime.fromisoformat(at) if at else None),
        assignees=list(target.approval_assignees),
        note=None if timed_out else _note((response.get("params_input") or {}).get(REASON_PARAM)),
    )


def _note(value: object) -> str | None:
    """The approver's reason: bounded, blank is none (the form always sends the field)."""
    text = redact_text(str(value or "").strip()[:MAX_NOTE_CHARS])
    return text or None


def rejection_message(approval: ApprovalEvidence) -> str:
    when = approval.at.isoformat() if approval.at else "?"
    if approval.reason == "timeout":
        return f"nobody answered the {approval.gate} approval in time (rejected at {when})"
    because = f": {approval.note}" if approval.note else ""
    return f"{approval.by_name or approval.by} rejected the {approval.gate} at {when}{because}"


def rejected_text(rejection: ApprovalEvidence | LedgerRejected) -> str:
    """Who rejected a task at its gate (or that nobody answered), when, and the reason they gave: plain text
    (the reason is untrusted: each surface escapes it)."""
    who = (rejection.by_name or rejection.by) if isinstance(rejection, ApprovalEvidence) else rejection.by
    when = f" at {rejection.at:%Y-%m-%d %H:%M} UTC" if rejection.at else ""
    text = f"rejected by {who}{when}" if who else f"nobody answered in time (rejected{when})"
    return text + (f": {rejection.note}" if rejection.note else "")


def rejected_attempt(attempt: AttemptEvidence, approval: ApprovalEvidence) -> AttemptEvidence:
    """The attempt of a rejected final diff: the worker ran, nothing was pushed."""
    return attempt.model_copy(update={"outcome": "rejected_by_human", "error_code": "rejected_by_human",
                                      "error_message": rejection_message(approval),
                                      "pr_number": None, "pr_url": None})
