"""Which executor runs a task, and the executor part of its attempt spec, from the target config.

A task naming a ``recipe`` always runs that recipe. A task without one runs on the model only when the
target enables it (``executor: llm``); :func:`leviathan_lib.cycle.steps.apply_recipe_checks` keeps every
other ready task out of the worker, so reaching the ``ValueError`` below means a bug, not bad input.
"""

from __future__ import annotations

from typing import Any

from leviathan_lib.core.backlog import Task
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.pricing import price_of


def model_price(target: TargetConfig) -> tuple[float, float] | None:
    """The target's price override, else the table's price of its model; None when neither knows it."""
    if target.llm_input_usd_per_mtok is not None and target.llm_output_usd_per_mtok is not None:
        return target.llm_input_usd_per_mtok, target.llm_output_usd_per_mtok
    price = price_of(target.llm_model)
    return (price.input_usd_per_mtok, price.output_usd_per_mtok) if price else None


def executor_spec(target: TargetConfig, task: Task, *, api_base_url: str | None = None,
                  region: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The executor spec; ``api_base_url``/``region`` come from the Airflow connection ``llm_conn_id``."""
    if task.recipe:
        return {"kind": "recipe", "recipe": task.recipe, "recipes_path": target.recipes_path}
    if target.executor != "llm" or task.executor == "recipe":
        raise ValueError(f"task {task.id} names no recipe and the target {target.target_id} does not enable llm")
    price = model_price(target)
    return {
        "kind": "llm",
        "model": target.llm_model,
        "max_turns": target.llm_max_turns,
        "max_tokens": target.llm_max_tokens,
        "max_total_tokens": target.llm_max_total_tokens,
        "cost_cap_usd": float(target.llm_cost_cap_usd),
        "input_usd_per_mtok": float(price[0]) if price else None,
        "output_usd_per_mtok": float(price[1]) if price else None,
        "max_tool_calls": target.llm_max_tool_calls,
        "max_tool_calls_per_turn": target.llm_max_tool_calls_per_turn,
        "request_timeout_seconds": float(target.llm_request_timeout_seconds),
        "max_retries": target.llm_max_retries,
        "api_base_url": api_base_url or target.llm_api_base_url,
        "region": region,
        "backlog_path": target.backlog_path,
    }
