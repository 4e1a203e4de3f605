"""Which executor runs a task, and the executor part of its attempt spec, from the target config.

A task naming a ``recipe`` always runs that recipe. A task without one runs on the model only when the
target enables it (``executor: llm``); :func:`leviathan_lib.cycle.steps.apply_recipe_checks` keeps every
other ready task out of the worker, so reaching the ``ValueError`` below means a bug, not bad input.
"""

from __future__ import annotations

from typing import Any

from leviathan_lib.core.backlog import Task
from leviathan_lib.core.config import TargetConfig


def executor_spec(target: TargetConfig, task: Task) -> dict[str, Any]:
    if task.recipe:
        return {"kind": "recipe", "recipe": task.recipe, "recipes_path": target.recipes_path}
    if target.executor != "llm" or task.executor == "recipe":
        raise ValueError(f"task {task.id} names no recipe and the target {target.target_id} does not enable llm")
    return {
        "kind": "llm",
        "model": target.llm_model,
        "max_turns": target.llm_max_turns,
        "max_tokens": target.llm_max_tokens,
        "max_total_tokens": target.llm_max_total_tokens,
        "cost_cap_usd": float(target.llm_cost_cap_usd),
        "input_usd_per_mtok": float(target.llm_input_usd_per_mtok),
        "output_usd_per_mtok": float(target.llm_output_usd_per_mtok),
        "api_base_url": target.llm_api_base_url,
        "backlog_path": target.backlog_path,
    }
