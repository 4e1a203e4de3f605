"""The guardrails decision, driven by the scenario table in tests/scenarios/guardrails.yaml."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from leviathan_lib.core.backlog import Backlog, InvalidTask, Task, parse_backlog
from leviathan_lib.core.config import TargetConfig, parse_target
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.guardrails import (
    AttemptRecord,
    CycleState,
    OpenPR,
    ReasonCode,
    decide,
    parse_state,
    sandbox_gate,
)

SCENARIOS = yaml.safe_load((Path(__file__).resolve().parents[1] / "scenarios" / "guardrails.yaml").read_text())
TIMES = {f"T{i}": f"2025-01-0{i}T12:00:00+00:00" for i in range(1, 5)}
BASE_TARGET = {
    "target_id": "demo",
    "target_repo_url": "/srv/demo.git",
    "autonomy_enabled": True,
    "allowed_path_prefixes": [".leviathan/", "docs/"],
}
CYCLE_ORDER = [
    "autonomy_disabled", "forge_state_unknown", "open_pr_limit", "pr_hourly_limit", "circuit_breaker_open",
    "llm_budget_exhausted",
    "no_eligible_task",
]


def _target(overrides: dict[str, Any] | None = None) -> TargetConfig:
    data = {**BASE_TARGET}
    for key, value in (overrides or {}).items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return parse_target(yaml.safe_dump(data), "target.yaml")


def _backlog(tasks: list[Any]) -> Backlog:
    full = []
    for task in tasks:
        if isinstance(task, dict):
            task = {"title": f"task {task.get('id')}", "allowed_paths": ["docs/x.md"], **task}
        full.append(task)
    backlog, _ = parse_backlog(yaml.safe_dump({"tasks": full}), "backlog.yaml")
    return backlog


def _state(raw: dict[str, Any] | None, backlog: Backlog | None = None) -> CycleState:
    text = json.dumps(raw or {})
    for name, stamp in TIMES.items():
        text = text.replace(f'"{name}"', f'"{stamp}"')
    # closed_prs entries name "HASH:<id>" for the definition hash of that task as the scenario defines it.
    for task in backlog.tasks if backlog else []:
        text = text.replace(f'"HASH:{task.id}"', f'"{task.definition_hash()}"')
    return parse_state(text, "state.json", CycleState)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario(scenario):
    target, backlog = _target(scenario.get("target")), _backlog(scenario["tasks"])
    decision = decide(target, backlog, _state(scenario.get("state"), backlog))
    expect = scenario["expect"]
    doc = decision.model_dump(mode="json")

    assert doc["decision"] == expect["decision"]
    assert doc["task_id"] == expect.get("task_id", doc["task_id"])
    if doc["decision"] == "skip":
        assert doc["task_id"] is None
        assert doc["reasons"], "a skip always says why"
    else:
        assert doc["reasons"] == []
    if "reasons" in expect:
        assert doc["reasons"] == expect["reasons"]
    assert doc["reasons"] == sorted(doc["reasons"], key=CYCLE_ORDER.index)
    verdicts = {t["id"]: t for t in doc["tasks"]}
    for task_id, reasons in expect.get("task_reasons", {}).items():
        assert verdicts[task_id]["reasons"] == reasons, task_id
        assert verdicts[task_id]["eligible"] is (reasons == [])
    if "order" in expect:
        assert [t["id"] for t in doc["tasks"]] == expect["order"]
    checks = {c["name"]: c for c in doc["checks"]}
    budget = ["llm_budget"] if scenario.get("target", {}).get("llm_daily_usd") else []
    assert list(checks) == ["autonomy", "forge_state", "open_prs", "prs_per_hour", "circuit_breaker", *budget,
                            "task_selection"]
    if "checks_failed" in expect:
        assert [n for n, c in checks.items() if not c["passed"]] == expect["checks_failed"]
    for name, detail in expect.get("detail", {}).items():
        assert checks[name]["detail"] == detail


#: Decided after ``decide`` (by :func:`sandbox_gate`, on the worker's machine); tested below and in
#: tests/worker/test_sandbox.py and tests/orchestrator/test_cycle_dag.py with the real bubblewrap.
AFTER_DECIDE = {"sandbox_unavailable"}
#: Decided by the PR sync (tests/cycle/test_lifecycle.py, tests/orchestrator/test_pr_lifecycle_cycle.py).
LIFECYCLE = {"human_edited", "pr_branch_deleted", "pr_conflicted", "pr_refresh_limit", "pr_superseded"}
#: Decided on the forge's reviews and comments (tests/core/test_commands.py), never by ``decide``.
FEEDBACK = {"command_malformed", "command_unknown", "command_not_permitted", "review_not_permitted",
            "feedback_human_edited", "feedback_attempts_exhausted"}
#: Decided on the forge's CI by the PR sync (tests/orchestrator/test_ci_cycle.py), never by ``decide``.
CI = {"ci_fix_limit"}
#: Decided by the decision builder on the fleet state (tests/core/test_fleet.py, test_fleet_cycle.py).
FLEET = {"fleet_state_unknown", "fleet_open_prs_limit", "fleet_pr_hourly_limit", "fleet_breaker_open",
         "team_budget_exhausted"}
#: Decided on the dashboard's ticks by the PR sync (tests/cycle/test_ticks.py, test_dashboard_ticks.py).
TICKS = {"dashboard_tick_stale", "dashboard_tampered"}


def test_every_reason_code_is_covered_by_a_scenario():
    seen = AFTER_DECIDE | LIFECYCLE | FEEDBACK | CI | FLEET | TICKS
    for scenario in SCENARIOS:
        expect = scenario["expect"]
        seen.update(expect.get("reasons", []))
        for reasons in expect.get("task_reasons", {}).values():
            seen.update(reasons)
    assert seen == {code.value for code in ReasonCode}


def test_reason_codes_are_the_stable_strings():
    assert [c.value for c in ReasonCode] == [
        *CYCLE_ORDER,
        "not_ready", "status_not_pending", "dependencies_incomplete", "scope_violation", "attempts_exhausted",
        "pr_open_for_task", "invalid_task", "pr_closed_unchanged", "sandbox_unavailable", "protected_path",
        "human_edited", "pr_branch_deleted", "pr_conflicted", "pr_refresh_limit", "pr_superseded",
        "command_malformed", "command_unknown", "command_not_permitted", "review_not_permitted",
        "feedback_human_edited", "feedback_attempts_exhausted",
        "rejected_by_human", "checks_red_at_base",
        "ci_failed", "ci_fix_limit", "awaiting_ci", "review_rounds_exhausted",
        "fleet_state_unknown", "fleet_open_prs_limit", "fleet_pr_hourly_limit", "fleet_breaker_open",
        "team_budget_exhausted", "dashboard_tick_stale", "dashboard_tampered",
    ]


def test_sandbox_gate_stops_a_run_and_reports_every_other_reason_too():
    decision = decide(_target(), _backlog([{"id": "a", "ready": True}]), CycleState())
    assert decision.decision == "run"
    ok = sandbox_gate(decision, None)
    assert (ok.decision, ok.task_id, ok.reasons) == ("run", "a", [])
    assert ok.checks[-1].model_dump() == {"name": "sandbox", "passed": True, "detail": "recipe steps run in: bwrap"}
    stopped = sandbox_gate(decision, "bubblewrap is not installed")
    assert (stopped.decision, stopped.task_id, stopped.reasons) == ("skip", None, ["sandbox_unavailable"])
    assert stopped.checks[-1].model_dump() == {"name": "sandbox", "passed": False,
                                               "detail": "bubblewrap is not installed"}


def test_plan_document_shape():
    decision = decide(_target(), _backlog([{"id": "a", "ready": True}]), CycleState())
    doc = decision.model_dump(mode="json")
    assert list(doc) == ["target_id", "decision", "task_id", "reasons", "checks", "tasks"]
    assert doc["target_id"] == "demo"
    assert all(list(c) == ["name", "passed", "detail"] for c in doc["checks"])
    assert doc["tasks"] == [{"id": "a", "eligible": True, "reasons": []}]
    json.dumps(doc)  # plain JSON types only


def test_autonomy_string_false_is_rejected_at_config_load():
    with pytest.raises(ValidationFailed) as exc:
        parse_target(yaml.safe_dump({**BASE_TARGET, "autonomy_enabled": "false"}), "t.yaml")
    assert any(p.field == "autonomy_enabled" for p in exc.value.problems)


def test_breaker_detail_names_streak_reset_and_threshold():
    reset = datetime(2025, 1, 1, tzinfo=UTC)
    state = CycleState(
        attempts=[AttemptRecord(task_id="x", outcome="failed", finished_at=reset + timedelta(hours=h))
                  for h in (1, 2)],
        breaker_reset_at=reset,
    )
    check = decide(_target(), _backlog([]), state).checks[4]
    assert check.name == "circuit_breaker" and not check.passed
    assert check.detail == (
        "2 consecutive failed attempt(s) since reset at 2025-01-01T00:00:00+00:00, threshold 2; open until an "
        "operator resets it (`leviathan breaker reset` or the view's Reset breaker)"
    )


def test_breaker_uses_finish_time_not_list_order():
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    attempts = [
        AttemptRecord(task_id="x", outcome="failed", finished_at=t0 + timedelta(hours=1)),
        AttemptRecord(task_id="y", outcome="failed", finished_at=t0 + timedelta(hours=3)),
        AttemptRecord(task_id="z", outcome="succeeded", finished_at=t0 + timedelta(hours=2)),
    ]
    assert decide(_target(), _backlog([]), CycleState(attempts=attempts)).checks[3].passed


def test_python_callers_build_state_directly():
    state = CycleState(autonomy_enabled=True, open_prs=[OpenPR(number=1, branch="agent/a/1", task_id="a")])
    decision = decide(_target({"max_open_prs": 2}), _backlog([{"id": "a", "ready": True}]), state)
    assert decision.tasks[0].reasons == [ReasonCode.PR_OPEN_FOR_TASK]


def test_invalid_entries_in_any_index_order_are_all_reported():
    backlog = Backlog(
        tasks=[Task(id="a", title="A", ready=True, allowed_paths=["docs/a.md"])],
        invalid=[InvalidTask(index=5, id=None, problems=["x"]), InvalidTask(index=0, id="", problems=["y"])],
    )
    doc = decide(_target(), backlog, CycleState()).model_dump(mode="json")
    assert [t["id"] for t in doc["tasks"]] == ["#0", "a", "#5"]
    assert doc["task_id"] == "a"


def test_decision_is_deterministic():
    tasks = [{"id": f"t{i}", "ready": True, "priority": ["low", "high"][i % 2]} for i in range(50)]
    backlog, target = _backlog(tasks), _target()
    first = decide(target, backlog, CycleState()).model_dump_json()
    assert all(decide(target, backlog, CycleState()).model_dump_json() == first for _ in range(5))
    assert json.loads(first)["task_id"] == "t1"


def test_ten_thousand_tasks_with_long_dependency_chains_decide_correctly():
    """Scale correctness only; the timing lives in bench/ (bench/selection.py), not in a timed test."""
    n = 10_000
    tasks = [
        Task(id=f"t{i}", title="t", ready=True, status="completed" if i < n // 2 else None, priority="low",
             allowed_paths=["docs/a.md"], dependencies=[f"t{j}" for j in range(max(0, i - 3), i)])
        for i in range(n)
    ]
    backlog = Backlog(tasks=tasks)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    state = CycleState(attempts=[
        AttemptRecord(task_id=f"t{i % n}", outcome="failed" if i % 2 else "succeeded",
                      finished_at=t0 + timedelta(seconds=i))
        for i in range(n)
    ])
    decision = decide(_target({"max_attempts_per_task": 5}), backlog, state)
    assert decision.task_id == f"t{n // 2}"  # first pending task whose dependencies are all completed
    assert len(decision.tasks) == n


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"autonomy_enabled": "true"}', "autonomy_enabled"),
        ('{"autonomy_enabled": 1}', "autonomy_enabled"),
        ('{"open_prs": [{"number": "7", "branch": "agent/a/1"}]}', "open_prs[0].number"),
        ('{"open_prs": [{"number": 7}]}', "open_prs[0].branch"),
        ('{"open_prs": {"number": 7}}', "open_prs"),
        ('{"attempts": [{"task_id": "a", "outcome": "crashed", "finished_at": "2025-01-01T00:00:00Z"}]}',
         "attempts[0].outcome"),
        ('{"attempts": [{"task_id": "a", "outcome": "failed", "finished_at": "2025-01-01T00:00:00"}]}',
         "attempts[0].finished_at"),
        ('{"attempts": [{"task_id": "a", "outcome": "failed", "finished_at": "yesterday"}]}',
         "attempts[0].finished_at"),
        ('{"breaker_reset_at": 5}', "breaker_reset_at"),
        ('{"surprise": true}', "surprise"),
    ],
)
def test_state_parser_is_strict(text, field):
    with pytest.raises(ValidationFailed) as exc:
        parse_state(text, "state.json", CycleState)
    assert [p.field for p in exc.value.problems] == [field]
    assert all(p.file == "state.json" for p in exc.value.problems)


@pytest.mark.parametrize(("text", "message"), [("[]", "expected a JSON object"), ("{", "invalid JSON"),
                                              ("", "invalid JSON"), ("null", "expected a JSON object")])
def test_state_parser_file_level_errors(text, message):
    with pytest.raises(ValidationFailed) as exc:
        parse_state(text, "state.json", CycleState)
    assert message in str(exc.value)


def test_state_defaults_and_null_forge():
    assert parse_state("{}", "s.json", CycleState) == CycleState()
    assert CycleState().open_prs == [] and CycleState().autonomy_enabled is True
    assert parse_state('{"open_prs": null}', "s.json", CycleState).open_prs is None


def test_llm_daily_budget_stops_the_cycle_with_its_reason():
    from datetime import UTC, datetime, timedelta

    from leviathan_lib.core.config import TargetConfig
    from leviathan_lib.core.guardrails import AttemptRecord

    backlog = _backlog([{"id": "t1", "ready": True}])
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    target = TargetConfig(target_id="t", target_repo_url="/r", autonomy_enabled=True, executor="llm",
                          llm_daily_usd=1.0)  # fmt: skip

    def state(*costs_hours_ago):
        return CycleState(now=now, attempts=[
            AttemptRecord(task_id="t0", outcome="succeeded", finished_at=now - timedelta(hours=h), cost_usd=c)
            for c, h in costs_hours_ago])  # fmt: skip

    under = decide(target, backlog, state((0.6, 30), (0.5, 2)))  # the 30 h old one no longer counts
    assert under.decision == "run"
    assert [c for c in under.checks if c.name == "llm_budget"][0].detail.startswith("$0.5000 spent")
    over = decide(target, backlog, state((0.6, 23), (0.5, 2)))
    assert over.decision == "skip" and ReasonCode.LLM_BUDGET_EXHAUSTED in over.reasons
    [check] = [c for c in over.checks if c.name == "llm_budget"]
    assert not check.passed and check.detail == ("$1.1000 spent on the model in the last 24 h, budget $1.00/day; "
                                             "next model attempt after 13:00 UTC")  # the 23 h old one leaves
    no_budget = TargetConfig(target_id="t", target_repo_url="/r", autonomy_enabled=True, executor="llm")
    assert "llm_budget" not in {c.name for c in decide(no_budget, backlog, state((99.0, 1))).checks}


def test_forge_control_files_are_protected_anywhere_by_default():
    from leviathan_lib.core.scope import Protected

    protected = Protected.of([])
    for path in ("docs/CODEOWNERS", ".github/CODEOWNERS", "CODEOWNERS", "ci/.gitlab-ci.yml", "Jenkinsfile",
                 "sub/.GitLab/x.yml", ".circleci/config.yml", "renovate.json", "docs/.pre-commit-config.yaml"):
        assert protected.check(path), path
    assert protected.check("docs/owners.md") is None
