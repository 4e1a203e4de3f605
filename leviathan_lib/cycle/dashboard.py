"""The dashboard issue's Markdown: why each task did or did not run, from the cycle's own decision.

Pure: it renders the :class:`~leviathan_lib.contracts.xcom.GuardrailResult` the ``plan`` task just computed
(the same ``decide`` that ``leviathan plan`` runs), the ledger's PRs and the schedule. Two parts: the
*content*, whose hash decides whether the issue is written at all, and a footer (which cycle wrote it,
the next cycle) that is not hashed, so an unchanged state never rewrites the issue (Renovate's
Dependency Dashboard is disliked for exactly that noise).

Everything taken from the backlog, the target file or the forge is untrusted text: it is escaped so it
cannot open a link, an image, HTML, a code span or a table cell, and cannot @mention anyone or
cross-reference an issue (a zero-width space follows every ``@`` and every ``#`` before a digit).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from pydantic import BaseModel

from leviathan_lib.contracts.xcom import GuardrailResult, ReadResult
from leviathan_lib.core import inert
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.guardrails import ReasonCode
from leviathan_lib.core.reasons import explain
from leviathan_lib.core.until import awaiting_approval
from leviathan_lib.cycle import ticks
from leviathan_lib.cycle.approval import rejected_text
from leviathan_lib.evidence.records import ApprovalEvidence, Ledger, LedgerPR, SettledPR, TickNote

#: Bounds, so any backlog fits GitHub's 65 536-character issue body.
MAX_TASKS = 200
MAX_TEXT = 120
MAX_PROBLEMS = 30
MAX_BODY = 60_000

#: What each reason code means for the repo owner (the codes themselves are in core/guardrails.py).


class Dashboard(BaseModel):
    title: str
    content: str
    content_hash: str
    body: str
    body_sha256: str


def md(value: object, limit: int = MAX_TEXT) -> str:
    """Untrusted text for the dashboard, inert (:func:`leviathan_lib.core.inert.md`) and cut to ``limit``."""
    return inert.md(value, limit=limit)


def _explained(codes: list[str]) -> str:
    return "; ".join(f"`{code}`: {explain(code)}" for code in codes)


def _decision(target: TargetConfig, result: GuardrailResult, now: datetime,
              rejection: ApprovalEvidence | None) -> list[str]:
    if result.decision is None:
        error = result.error
        code, message = (error.code, error.message) if error else ("incomplete", "no decision")
        return [f"**Stopped before the guardrails** (`{md(code, 60)}`): {md(message, 500)}"]
    decision = result.decision
    if decision.decision == "run" and result.attempt and rejection is not None:
        who = md(rejected_text(rejection), 400)
        return [f"**Rejected at the approval gate**: task {md(rejection.task_id)} — {who}; it waits until its "
                "definition changes"]
    if decision.decision == "run" and result.attempt:
        plan = result.attempt
        return [f"**Run**: task {md(plan.task_id)}, attempt {plan.attempt} on branch {md(plan.branch)}"
                + _gate(target, now)]
    failed = [f"{md(c.name, 40)}: {md(c.detail, 300)}" for c in decision.checks if not c.passed]
    return [f"**Skip**: {_explained([str(r) for r in decision.reasons])}" + (f" ({'; '.join(failed)})" if failed
                                                                                else "")]


def _gate(target: TargetConfig, now: datetime) -> str:
    """A gated target's run waits for a human (Airflow's Required Actions) before the worker or the push."""
    if target.approval == "plan":
        rejects_at = now + timedelta(seconds=target.approval_timeout_seconds)
        return f"; {awaiting_approval(now, rejects_at, now)} (the plan, in Airflow's Required Actions)"
    if target.approval == "pull_request":
        return "; its final diff awaits approval in Airflow's Required Actions once the worker finishes"
    return ""


def _summary(result: GuardrailResult) -> list[str]:
    """The switch and the breaker in one line, before the table that details them."""
    if result.decision is None:
        return []
    passed = {c.name: c.passed for c in result.decision.checks}
    switch = "on" if passed.get("autonomy") else "off"
    breaker = "closed" if passed.get("circuit_breaker", True) else "open (attempts stopped)"
    return [f"Autonomy: **{switch}** · circuit breaker: **{breaker}**", ""]


def _checks(result: GuardrailResult) -> list[str]:
    if result.decision is None:
        return []
    lines = ["### Switch, breaker and limits", "", *_summary(result), "| check | state | detail |", "|---|---|---|"]
    for check in result.decision.checks:
        state = "pass" if check.passed else "**FAIL**"
        lines.append(f"| {md(check.name, 40)} | {state} | {md(check.detail, 300)} |")
    return [*lines, ""]


def _tasks(read: ReadResult, result: GuardrailResult, rejection: ApprovalEvidence | None) -> list[str]:
    if result.decision is None:
        return []
    backlog, _ = read.parsed_backlog()
    titles = {t.id: t.title for t in backlog.tasks}
    verdicts = result.decision.tasks
    selected = result.attempt.task_id if result.attempt else None
    blocked = [str(r) for r in result.decision.reasons]
    rejected = {r.task_id: r for r in result.ledger.rejected}
    lines = [f"### Tasks ({len(verdicts)})", "", "| task | title | runs? | why |", "|---|---|---|---|"]
    for verdict in verdicts[:MAX_TASKS]:
        if rejection is not None and verdict.id == rejection.task_id:
            state, why = "no", f"{_explained([ReasonCode.REJECTED_BY_HUMAN])} ({md(rejected_text(rejection), 400)})"
        elif verdict.id == selected:
            state, why = "**selected**", "eligible; the highest priority, attempted this cycle"
        elif ReasonCode.REJECTED_BY_HUMAN in verdict.reasons and verdict.id in rejected:
            who = md(rejected_text(rejected[verdict.id]), 400)
            state, why = "no", f"{_explained([str(r) for r in verdict.reasons])} ({who})"
        elif verdict.eligible and blocked:
            state, why = "eligible", "but the cycle did not run: " + ", ".join(f"`{c}`" for c in blocked)
        elif verdict.eligible:
            state, why = "eligible", "waiting: one task per cycle, by priority then backlog order"
        else:
            state, why = "no", _explained([str(r) for r in verdict.reasons])
        lines.append(f"| {md(verdict.id)} | {md(titles.get(verdict.id, ''))} | {state} | {why} |")
    if len(verdicts) > MAX_TASKS:
        lines.append(f"| … | {len(verdicts) - MAX_TASKS} more task(s) not shown | | |")
    lines.append("")
    if result.task_problems:
        lines += ["**Invalid entries** (they never run until fixed):", ""]
        lines += [f"- {md(p, 300)}" for p in result.task_problems[:MAX_PROBLEMS]]
        if len(result.task_problems) > MAX_PROBLEMS:
            lines.append(f"- … {len(result.task_problems) - MAX_PROBLEMS} more")
        lines.append("")
    return lines


def _ci(pr: LedgerPR, result: GuardrailResult) -> str:
    """The PR head's CI as this cycle read it (else as the ledger holds it); check names are untrusted."""
    ci = pr.ci
    for action in result.lifecycle:
        if action.number == pr.number and action.ci_state is not None:
            ci = ci.with_reading(action)
    if ci.state is None:  # no CI ever reported on it
        return ""
    state = ci.on(pr.head_sha, human_edited=pr.human_edited)
    fixes = f", {ci.fix_attempts} fix attempt(s)" if ci.fix_attempts else ""
    return f", CI **{state}**{fixes}" + (f" ({md(_ci_detail(pr, result), 200)})" if state == "failure" else "")


def _ci_detail(pr: LedgerPR, result: GuardrailResult) -> str:
    """The failing checks this cycle named for ``pr``, else the first line of the stored report."""
    named = [a.detail for a in result.lifecycle if a.number == pr.number and a.ci_state == "failure"]
    return named[-1] if named else (pr.ci.report or "").split("\n", 1)[0]


def _pulls(ledger: Ledger, result: GuardrailResult) -> list[str]:
    synced = {c.number for c in result.pr_sync}
    open_prs = [p for p in ledger.open_prs if p.number not in synced]
    settled = (ledger.dashboard.settled_prs + [SettledPR(number=c.number, task_id=c.task_id, state=c.state)
                                               for c in result.pr_sync])[-10:]
    lines = ["### Pull requests", ""]
    if open_prs:
        lines += [f"- open: #{p.number} task {md(p.task_id)} on {md(p.branch)}" + _ci(p, result)
                  + (" (a human pushed to it: Leviathan leaves it alone)" if p.human_edited else "")
                  for p in open_prs]
    else:
        lines.append("- open: none")
    gone = {a.branch for a in result.lifecycle if a.kind in ("pr_created", "ci_branch_deleted")
            or (a.number is None and a.kind in ("human_edited", "pr_branch_deleted"))}
    lines += [f"- awaiting CI (its PR opens once CI passes): {md(h.branch)} task {md(h.task_id)}"
              for h in ledger.held_branches if h.branch not in gone]
    lines += [f"- {s.state}: #{s.number} task {md(s.task_id)}" for s in reversed(settled)]
    return [*lines, ""]


HEADER = (
    "> **Written by Leviathan.** It rewrites this issue whenever what it shows changes. It reads only the "
    "boxes under \"Act on a pull request\", ticked by someone with write access; any other edit is "
    "overwritten and changes nothing. Close the issue to stop the updates (Leviathan never reopens it); "
    "reopen it to resume them."
)


def _act(ledger: Ledger, result: GuardrailResult) -> list[str]:
    """The boxes for the PRs Leviathan may still push to, and what became of the newest ticks."""
    gone = {c.number for c in result.pr_sync} | {a.number for a in result.lifecycle
                                                  if a.kind in ("human_edited", "pr_branch_deleted", "pr_superseded")}
    lines = ticks.boxes([p for p in ledger.open_prs if p.number not in gone])
    if lines:
        lines = ["### Act on a pull request", "",
                 "Tick a box (write access needed); the next cycle serves it like the PR comment command, answers "
                 "on the PR and unticks it.", "", *lines, ""]
    notes = ledger.dashboard.with_ticks(result.lifecycle).ticks
    if notes:
        lines += ["### Ticks read", ""]
        lines += [_tick_line(n) for n in reversed(notes)]
        lines.append("")
    return lines


def _tick_line(note: TickNote) -> str:
    who = md(f"@{note.author}", 60) if note.author else ticks.UNNAMED
    if note.outcome == ReasonCode.DASHBOARD_TAMPERED:
        what = f"an edit beyond the boxes by {who}"
    else:
        what = f"{md(note.verb, 20)} on #{note.number} by {who}" if note.number else f"{md(note.verb, 20)} by {who}"
    if note.outcome == "queued":
        return f"- tick {note.tick}: {what}: queued; the PR's next attempt serves it and answers on the PR"
    return f"- tick {note.tick}: {what}: refused ({_explained([note.outcome])})"


def render(target: TargetConfig, read: ReadResult, result: GuardrailResult, *, run_id: str, now: datetime,
           next_cycle: datetime | None, rejection: ApprovalEvidence | None = None) -> Dashboard:
    """The dashboard for this cycle's decision; ``next_cycle`` None means the schedule gives no time;
    ``rejection``: a human rejected the selected task at its approval gate (it waits, it is not selected)."""
    ledger = result.ledger
    lines = [
        HEADER, "",
        f"Target {md(target.target_id)}: {md(target.backlog_path)} on branch {md(target.target_branch)}, "
        f"schedule {md(target.effective_schedule, 60)} (UTC).", "",
        "### Decision", "", *_decision(target, result, now, rejection), "",
        *_checks(result), *_tasks(read, result, rejection), *_pulls(ledger, result), *_act(ledger, result),
    ]
    content = "\n".join(lines)
    if len(content) > MAX_BODY:
        content = content[: content.rfind("\n", 0, MAX_BODY)] + "\n\n… (cut: the backlog is too large to show)"
    content_hash = hashlib.sha256(content.encode()).hexdigest()[:16]
    commit = md(read.commit_sha[:12]) if read.commit_sha else "unknown"
    upcoming = f"{next_cycle:%Y-%m-%d %H:%M} UTC" if next_cycle else "unknown"
    footer = (f"---\nLast changed by cycle {md(run_id, 200)} at {now:%Y-%m-%d %H:%M} UTC (backlog commit {commit}); "
              f"the next cycle after it was due {upcoming}. Cycles that find the same state leave this issue "
              f"as it is. Content {content_hash}.")
    body = f"{content}\n{footer}\n"
    return Dashboard(title=target.dashboard_issue_title, content=content, content_hash=content_hash, body=body,
                     body_sha256=hashlib.sha256(body.encode()).hexdigest())
