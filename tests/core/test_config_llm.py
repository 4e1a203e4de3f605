"""The target's llm_* keys: provider-prefixed models, legacy keys that still work with a warning, prices."""

from __future__ import annotations

import warnings

import pytest
import yaml

from leviathan_lib.contracts.attempt import LlmExecutorSpec
from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.config import LeviathanDeprecationWarning, parse_target
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.pricing import PRICES, price_of, split_model
from leviathan_lib.worker.llm_spec import executor_spec

BASE = {"target_id": "t", "target_repo_url": "/r.git", "executor": "llm"}
TASK = parse_backlog("tasks:\n  - id: a\n    title: A\n    ready: true\n    allowed_paths: [docs/]\n")[0].tasks[0]


def target(**keys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = parse_target(yaml.safe_dump({**BASE, **keys}), "t.yaml")
    return config, [str(w.message) for w in caught if issubclass(w.category, LeviathanDeprecationWarning)]


def test_a_provider_prefixed_model_loads_without_warnings_and_is_priced_from_the_table():
    config, warned = target(llm_model="openai:gpt-4o")
    assert warned == [] and config.llm_model == "openai:gpt-4o"
    spec = LlmExecutorSpec.model_validate(executor_spec(config, TASK, api_base_url="http://127.0.0.1:1/v1"))
    assert (spec.input_usd_per_mtok, spec.output_usd_per_mtok) == (2.5, 10.0)
    assert spec.api_base_url == "http://127.0.0.1:1/v1" and spec.prompt == "edit-v4"


def test_the_old_anthropic_only_keys_keep_working_with_a_warning():
    config, warned = target(llm_model="claude-sonnet-4-5", llm_api_base_url="https://gateway.example/")
    assert config.llm_model == "anthropic:claude-sonnet-4-5"
    assert warned == [
        "t.yaml:2: llm_api_base_url: deprecated key, put the API base URL in the host of the Airflow connection "
        "llm_conn_id",
        "t.yaml:3: llm_model: a bare model name is deprecated; write 'anthropic:claude-sonnet-4-5'",
    ]
    spec = executor_spec(config, TASK)
    assert spec["api_base_url"] == "https://gateway.example/" and spec["input_usd_per_mtok"] == 3.0
    # The connection's host wins over the legacy key.
    assert executor_spec(config, TASK, api_base_url="https://conn.example/")["api_base_url"] == "https://conn.example/"


def test_price_overrides_need_both_halves_and_win_over_the_table():
    config, _ = target(llm_model="openai:gpt-4o", llm_input_usd_per_mtok=1, llm_output_usd_per_mtok=2)
    spec = executor_spec(config, TASK)
    assert (spec["input_usd_per_mtok"], spec["output_usd_per_mtok"]) == (1.0, 2.0)
    with pytest.raises(ValidationFailed) as exc:
        target(llm_input_usd_per_mtok=1)
    assert "give both llm_input_usd_per_mtok and llm_output_usd_per_mtok" in str(exc.value)


def test_an_unpriced_model_gets_no_price_so_the_worker_refuses_it():
    config, _ = target(llm_model="openai:my-finetune")
    spec = executor_spec(config, TASK)
    assert spec["input_usd_per_mtok"] is None and spec["output_usd_per_mtok"] is None


def test_the_price_table():
    assert all(split_model(model)[0] in ("anthropic", "openai", "bedrock") for model in PRICES)
    assert price_of("claude-sonnet-4-5") == price_of("anthropic:claude-sonnet-4-5-20250929")
    assert price_of("openai:gpt-4o-2024-08-06") == PRICES["openai:gpt-4o"]
    assert split_model("bedrock:us.anthropic.claude-sonnet-4-5-20250929-v1:0") == (
        "bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert split_model("us.anthropic.claude-v1:0") == (None, "us.anthropic.claude-v1:0")


@pytest.mark.parametrize(("keys", "field"), [({"llm_daily_usd": 0}, "llm_daily_usd"),
                                             ({"llm_max_tool_calls_per_turn": 0}, "llm_max_tool_calls_per_turn")])
def test_bad_budget_values_name_their_field(keys, field):
    with pytest.raises(ValidationFailed) as exc:
        target(**keys)
    assert [p.field for p in exc.value.problems] == [field]


def test_airflow_knows_the_pydanticai_connection_type_with_its_form():
    """The model connection's type comes from apache-airflow-providers-common-ai: a form and a Test button."""
    pytest.importorskip("airflow.providers.common.ai", reason="apache-airflow-providers-common-ai not installed")
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hook = manager.hooks["pydanticai"]
    assert hook is not None and hook.hook_class_name.endswith("PydanticAIHook")
    form = manager.field_behaviours["pydanticai"]
    assert form["relabeling"] == {"password": "API Key"} and "host" not in form["hidden_fields"]
    assert {"pydanticai_bedrock", "pydanticai_azure"} <= set(manager.hooks)
