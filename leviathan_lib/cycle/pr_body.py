"""The pull request body: what a reviewer needs to judge the change, and the evidence of the run.

Built only from the backlog task, the guardrail decision and the worker's result summary — never from
the environment — so no credential can reach it.
"""

from __future__ import annotations

from leviathan_lib.core.backlog import Task
from leviathan_lib.cycle.steps import AttemptPlan, ReadResult
from leviathan_lib.worker.contract import AttemptResult

MAX_LIST = 50


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_pr_body(
    *, task: Task, plan: AttemptPlan, read: ReadResult, result: AttemptResult, run_id: str,
    evidence: dict, note: str, head_sha: str,
) -> str:
    lines = [
        f"This pull request delivers backlog task **`{task.id}`**: {task.title}",
        "",
        "Opened by Leviathan for human review. Leviathan never merges; merge or close it as you see fit. "
        "Closing it without merging tells Leviathan not to retry this task until its definition changes.",
        "",
        "## Task",
        "",
        task.description.strip() or "_(no description)_",
        "",
    ]
    if task.acceptance_criteria:
        lines += ["## Acceptance criteria", ""] + [f"- [ ] {c}" for c in task.acceptance_criteria] + [""]
    lines += ["## Changes", ""]
    lines += [f"- `{p}`" for p in result.changed_paths[:MAX_LIST]]
    if len(result.changed_paths) > MAX_LIST:
        lines.append(f"- … and {len(result.changed_paths) - MAX_LIST} more")
    lines += [f"- `{read.backlog_path}`: status of `{task.id}` set to `completed`" if not note else f"- {note}", ""]
    lines += [
        "## Evidence",
        "",
        "| | |",
        "|---|---|",
        f"| Target | `{evidence.get('target_id', '')}` |",
        f"| Backlog commit | `{read.commit_sha}` on `{read.branch}` |",
        f"| Airflow run | `{run_id}` |",
        f"| Attempt | {plan.attempt} (branch `{plan.branch}`, task hash `{plan.task_hash}`) |",
        f"| Executor | {f'recipe `{_cell(plan.recipe)}`' if plan.recipe else 'llm'} |",
        f"| Head commit | `{head_sha}` |",
        "",
        "Guardrail checks:",
        "",
        "| Check | Result | Detail |",
        "|---|---|---|",
    ]
    for check in evidence.get("checks", []):
        mark = "pass" if check.get("passed") else "FAIL"
        lines.append(f"| {_cell(check.get('name', ''))} | {mark} | {_cell(check.get('detail', ''))} |")
    lines += ["", "<!-- leviathan:attempt " + plan.branch + " -->", ""]
    return "\n".join(lines)
