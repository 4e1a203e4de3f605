"""The pull request body: what a reviewer needs to judge the change, and the evidence of the run.

Built only from the backlog task, the guardrail decision and the real changed paths (git's, never the
worker's claim) — never from the environment — so no credential can reach it. File names are chosen
by the worker, so they are rendered as code spans: no live link, image, mention or HTML; delivery
scans the finished body for secrets before anything is pushed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from leviathan_lib.core.backlog import Task
from leviathan_lib.cycle.steps import AttemptPlan, ReadResult

MAX_LIST = 50
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def code_span(text: str) -> str:
    """``text`` as one inline code span, whatever backticks, spaces or control characters it holds."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_pr_body(
    *, task: Task, plan: AttemptPlan, read: ReadResult, changed_paths: list[str], run_id: str,
    evidence: dict[str, Any], note: str, head_sha: str, checked: Sequence[str] = (),
) -> str:
    """The body; ``checked`` is the "Checked before review" section (:mod:`leviathan_lib.cycle.pr_checks`)."""
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
