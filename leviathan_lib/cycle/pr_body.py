"""The pull request body: what a reviewer needs to judge the change, and the evidence of the run.

Built only from the backlog task, the guardrail decision and the real changed paths (git's, never the
worker's claim) — never from the environment — so no credential can reach it. The task's title,
description and acceptance criteria are human text from the target repository, the file names are chosen
by the worker, the check details quote both: every one goes through :mod:`leviathan_lib.core.inert` (no
raw HTML or comment can hide what follows, no link, image or mention comes alive); delivery scans the
finished body for secrets before anything is pushed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from leviathan_lib.contracts.xcom import AttemptPlan, ReadResult
from leviathan_lib.core.backlog import Task
from leviathan_lib.core.inert import code_span, md

MAX_LIST = 50


def _continues(plan: AttemptPlan) -> str:
    cont = plan.continue_pr
    return f"; continues this PR ({code_span(cont.why)})" if cont is not None else ""


def render_pr_body(
    *, task: Task, plan: AttemptPlan, read: ReadResult, changed_paths: list[str], run_id: str,
    evidence: dict[str, Any], note: str, head_sha: str, checked: Sequence[str] = (),
) -> str:
    """The body; ``checked`` is the "Checked before review" section (:mod:`leviathan_lib.cycle.pr_checks`).

    ``evidence`` may carry ``approval`` (the gate's :class:`~leviathan_lib.evidence.records.ApprovalEvidence`
    as JSON), ``view_url`` and ``run_url`` (absolute links, only when Airflow's ``[api] base_url`` is set).
    Every update of the PR (a review served, a retry, a CI fix, a refresh) rewrites the whole body."""
    lines = [
        f"This pull request delivers backlog task **{code_span(task.id)}**: {md(task.title)}",
        "",
        "Opened by Leviathan for human review. Leviathan never merges; merge or close it as you see fit. "
        "Closing it without merging tells Leviathan not to retry this task until its definition changes.",
        "",
        "## Task",
        "",
        md(task.description.strip(), multiline=True) or "_(no description)_",
        "",
    ]
    if task.acceptance_criteria:
        lines += ["## Acceptance criteria", ""] + [f"- [ ] {md(c)}" for c in task.acceptance_criteria] + [""]
    lines += ["## Changes", ""]
    lines += [f"- {code_span(p)}" for p in changed_paths[:MAX_LIST]]
    if len(changed_paths) > MAX_LIST:
        lines.append(f"- … and {len(changed_paths) - MAX_LIST} more")
    status_line = f"- {code_span(read.backlog_path)}: status of `{task.id}` set to `completed`"
    lines += [status_line if not note else f"- {note}", ""]
    lines += checked
    lines += [
        "## Evidence",
        "",
        "| | |",
        "|---|---|",
        f"| Target | `{evidence.get('target_id', '')}` |",
        f"| Backlog commit | `{read.commit_sha}` on `{read.branch}` |",
        f"| Airflow run | `{run_id}` |",
        f"| Attempt | {plan.attempt} (branch `{plan.branch}`, task hash `{plan.task_hash}`){_continues(plan)} |",
        f"| Executor | {f'recipe {code_span(plan.recipe)}' if plan.recipe else 'llm'} |",
        f"| Head commit | `{head_sha}` |",
        *_approved(evidence.get("approval")),
        "",
        "Guardrail checks:",
        "",
        "| Check | Result | Detail |",
        "|---|---|---|",
    ]
    for check in evidence.get("checks", []):
        mark = "pass" if check.get("passed") else "FAIL"
        lines.append(f"| {md(check.get('name', ''))} | {mark} | {md(check.get('detail', ''))} |")
    lines += ["", *_iterate(evidence), "",
              "<!-- leviathan:attempt " + plan.branch + " -->", ""]
    return "\n".join(lines)


def _approved(approval: dict[str, Any] | None) -> list[str]:
    """The approval gate's row: who approved, when, at which gate (and the reason they gave)."""
    if not approval or approval.get("choice") != "approved":
        return []
    gate = "the plan" if approval.get("gate") == "plan" else "the final diff"
    note = f": {md(approval['note'])}" if approval.get("note") else ""
    at = approval.get("at")
    when = f"{datetime.fromisoformat(at).astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if at else "?"
    return [f"| Approved | {gate}, by {md(approval.get('by_name') or approval.get('by'))} at {when}{note} |"]


def _iterate(evidence: dict[str, Any]) -> list[str]:
    """How a human iterates on this PR, and where its evidence is (links only when Airflow's base URL is set)."""
    lines = [
        "## Iterating",
        "",
        "- **Request changes** in a review (write permission): the next attempt pushes a commit on top of this "
        "branch with your review as feedback, and replies here.",
        "- Comment exactly `/leviathan retry` (write permission): one more attempt from this branch.",
        "- Comment exactly `/leviathan rebase` (write permission): the task done again on the base as it is "
        "now, bringing this PR up to date (pushed with a lease: never over someone else's commit).",
        "- **Close** it: Leviathan does not retry the task until its definition changes.",
        "- Push to the branch yourself: Leviathan leaves it to you from then on.",
    ]
    links = [f"[{label}]({evidence[key]})" for key, label in (("view_url", "Leviathan view"),
                                                              ("run_url", "Airflow run")) if evidence.get(key)]
    if links:
        lines += ["", "Evidence: " + " · ".join(links)]
    return lines
