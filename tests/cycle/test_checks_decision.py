"""The decision builder and the repository's checks: a task whose checks cannot run is ``invalid_task``, and a
task with checks needs the sandbox whatever its executor."""

from __future__ import annotations

import yaml

from leviathan_lib.contracts.xcom import ReadResult
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.cycle.decision import DecisionInputs, SandboxSeen, build_decision

RECIPES = """\
recipes:
  write:
    command: ["python3", "w.py"]
checks:
  lint:
    steps: [["python3", ".leviathan/checks/lint.py"]]
  slow:
    steps: [["python3", ".leviathan/checks/slow.py"]]
    timeout_seconds: 1200
"""


def _decide(tasks: list[dict], recipes: str | None = RECIPES, **target) -> tuple[dict, list[str]]:
    config = TargetConfig(target_id="t", target_repo_url="/r.git", autonomy_enabled=True, **target)
    backlog = yaml.safe_dump({"tasks": [{"title": t["id"], "ready": True, "allowed_paths": ["docs/x.md"], **t}
                                        for t in tasks]})
    read = ReadResult(repo_url="/r.git", branch="main", backlog_path=".leviathan/backlog.yaml", commit_sha="a" * 40,
                      backlog_text=backlog, recipes_text=recipes)
    result = build_decision(DecisionInputs(target=config, read=read, sandbox=SandboxSeen()))
    assert result.decision is not None
    return result.decision.model_dump(mode="json"), result.task_problems


def test_unknown_checks_make_the_task_invalid_naming_it_and_the_known_checks():
    decision, problems = _decide([{"id": "a", "recipe": "write", "checks": ["lint", "nope"], "priority": "high"},
                                  {"id": "b", "recipe": "write"}], required_checks=["lint"])
    assert (decision["decision"], decision["task_id"]) == ("run", "b")
    assert {t["id"]: t["reasons"] for t in decision["tasks"]} == {"a": ["invalid_task"], "b": []}
    assert problems == ["task a: checks names unknown check 'nope' (known: lint, slow)"]


def test_an_unknown_required_check_makes_every_ready_task_invalid():
    decision, problems = _decide([{"id": "a", "recipe": "write"}, {"id": "b", "recipe": "write", "ready": False}],
                                 required_checks=["lint", "typo"])
    assert decision["reasons"] == ["no_eligible_task"]
    assert {t["id"]: t["reasons"] for t in decision["tasks"]} == {"a": ["invalid_task"], "b": ["not_ready"]}
    assert problems == ["task a: required_checks names unknown check 'typo' (known: lint, slow)"]


def test_a_check_longer_than_the_attempt_or_an_unreadable_recipes_file_makes_the_task_invalid():
    _, problems = _decide([{"id": "a", "recipe": "write", "checks": ["slow"]}])
    assert problems == ["task a: check 'slow' has timeout_seconds 1200, more than attempt_timeout_seconds 900"]
    _, problems = _decide([{"id": "a", "executor": "llm", "checks": ["lint"]}], recipes=None, executor="llm")
    assert problems == ["task a: its checks (lint) cannot be loaded: .leviathan/recipes.yaml does not exist"]
    _, fine = _decide([{"id": "a", "recipe": "write", "checks": ["slow"]}], attempt_timeout_seconds=1800)
    assert fine == []
    # A check that gives no timeout runs 300 s at most, and never past the attempt: it fits any attempt.
    _, unset = _decide([{"id": "a", "recipe": "write", "checks": ["lint"]}], attempt_timeout_seconds=120)
    assert unset == []


def test_a_model_task_with_checks_needs_the_sandbox_and_one_without_does_not():
    config = dict(executor="llm", llm_input_usd_per_mtok=1.0, llm_output_usd_per_mtok=1.0)
    checked, _ = _decide([{"id": "a", "checks": ["lint"]}], **config)
    unchecked, _ = _decide([{"id": "a"}], **config)
    assert checked["checks"][-1] == {"name": "sandbox", "passed": True, "detail": "recipe steps run in: bwrap"}
    assert "sandbox" not in [c["name"] for c in unchecked["checks"]]


def test_a_task_without_checks_keeps_the_hash_it_had_before_the_key_existed():
    """Closed PRs and open ones compare task hashes: adding the key must not make every old task look edited."""
    import hashlib
    import json

    from leviathan_lib.core.backlog import Task

    task = Task(id="a", title="A", ready=True, allowed_paths=["docs/"], recipe="write")
    before = {k: v for k, v in task.model_dump().items() if k not in ("status", "executor", "checks")}
    assert task.definition_hash() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert task.model_copy(update={"checks": ["lint"]}).definition_hash() != task.definition_hash()
