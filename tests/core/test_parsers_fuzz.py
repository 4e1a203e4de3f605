"""Property tests: parsers fail only with user errors, and the guardrails never pick a task they must not.

Random text and random structures go into every parser a user's file reaches; the only exceptions
allowed out are :class:`ValidationFailed` and :class:`ScopeViolation` (which the CLI turns into one
line each). Random backlogs and states go into :func:`decide`, checked against an independent oracle.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from datetime import UTC, datetime, timedelta

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.config import TargetConfig, parse_target
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.guardrails import AttemptRecord, CycleState, OpenPR, decide, parse_state
from leviathan_lib.core.scope import ScopeViolation, path_segments

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TARGET_KEYS = list(TargetConfig.model_fields) + ["control_plane_url", "spider_url"]
TASK_KEYS = ["id", "title", "description", "ready", "status", "priority", "dependencies", "allowed_paths",
             "labels", "recipe", "scope", "estimated_size", "acceptance_criteria"]
STATE_KEYS = ["autonomy_enabled", "open_prs", "attempts", "breaker_reset_at", "number", "branch", "task_id",
              "outcome", "finished_at"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.integers(), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["true", "false", "docs/", "../x", "/etc", "agent/a/1", "high",
                                           "2025-01-01T00:00:00Z", "2025-01-01", "*/5 * * * *", "a\x00b"]),
)



def _parse_state(text: str, source: str) -> CycleState:
    return parse_state(text, source, CycleState)

def structures(keys: list[str]):
    key = st.one_of(st.sampled_from(keys), st.text(max_size=6), st.integers(0, 3), st.booleans(), st.none())
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(key, inner, max_size=6)),
        max_leaves=20,
    )


YAML_PIECES = ["tasks:", "  - id: a", "    ready: true", "target_id: x", "metadata:", "- ", ": ", "  ", "{",
               "[", "&a", "*a", "!!python/object:os.system", "'", '"', "\t", "---", "? ", "%YAML 1.1",
               "!!binary", "<<: *a", "1e309", "0x1F", "~", "    ready: yes", "    ready: on", "  - id: a..b",
               "  - id: x.lock", "    ready: false"]
yamlish = st.one_of(st.text(max_size=200), st.lists(st.sampled_from(YAML_PIECES), max_size=12).map("\n".join))


def _only_user_errors(fn, *args):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args)
    except (ValidationFailed, ScopeViolation):
        pass


@FUZZ
@given(yamlish)
def test_yaml_text_into_parsers(text):
    _only_user_errors(parse_target, text, "t.yaml")
    _only_user_errors(parse_backlog, text, "b.yaml")
    _only_user_errors(_parse_state, text, "s.json")
    _only_user_errors(path_segments, text)


@FUZZ
@given(structures(TARGET_KEYS), structures(TASK_KEYS))
def test_structures_into_yaml_parsers(target, backlog):
    _only_user_errors(parse_target, yaml.safe_dump(target), "t.yaml")
    _only_user_errors(parse_target, yaml.safe_dump({"target_id": "x", "target_repo_url": "/r", **(
        target if isinstance(target, dict) else {"x": target})}), "t.yaml")
    _only_user_errors(parse_backlog, yaml.safe_dump(backlog), "b.yaml")
    wrapped = {"tasks": [backlog, backlog], "metadata": backlog}
    _only_user_errors(parse_backlog, yaml.safe_dump(wrapped), "b.yaml")


@FUZZ
@given(structures(STATE_KEYS))
def test_structures_into_state_parser(state):
    _only_user_errors(_parse_state, json.dumps(state), "s.json")
    _only_user_errors(_parse_state, json.dumps({"open_prs": [state], "attempts": [state]}), "s.json")


@FUZZ
@given(st.one_of(st.text(max_size=30), st.text(alphabet="./\\\x00 abdocs.", max_size=20)))
def test_path_segments_only_raises_scope_violation(path):
    try:
        segments = path_segments(path)
    except ScopeViolation:
        return
    assert segments and all(s not in ("", ".", "..") and "/" not in s for s in segments)


# --- guardrails property ----------------------------------------------------------------------

IDS = ["a", "b", "c", "d", "e"]
PATHS = ["docs/a.md", "docs2/a.md", ".leviathan/x", "../docs/a", "/etc/passwd", "README.md", "docs", "",
         "docs\\x", "docs/.git/x"]
T0 = datetime(2025, 1, 1, tzinfo=UTC)

task_dicts = st.fixed_dictionaries(
    {"id": st.sampled_from(IDS), "title": st.just("T")},
    optional={
        "ready": st.one_of(st.booleans(), st.just("true")),
        "status": st.sampled_from([None, "pending", "completed", "done", "in_progress", "failed"]),
        "priority": st.sampled_from(["high", "medium", "low"]),
        "dependencies": st.lists(st.sampled_from([*IDS, "ghost"]), max_size=3),
        "allowed_paths": st.lists(st.sampled_from(PATHS), max_size=3),
    },
)
states = st.builds(
    CycleState,
    autonomy_enabled=st.booleans(),
    open_prs=st.one_of(st.none(), st.lists(st.builds(
        OpenPR, number=st.integers(1, 99),
        branch=st.sampled_from([f"agent/{i}/1" for i in IDS] + ["feature/x", "agentx/a/1"]),
        task_id=st.one_of(st.none(), st.sampled_from(IDS)),
    ), max_size=3)),
    attempts=st.lists(st.builds(
        AttemptRecord, task_id=st.sampled_from(IDS),
        outcome=st.sampled_from(["succeeded", "failed", "timed_out"]),
        finished_at=st.integers(0, 100).map(lambda h: T0 + timedelta(hours=h)),
    ), max_size=6),
    breaker_reset_at=st.one_of(st.none(), st.integers(0, 100).map(lambda h: T0 + timedelta(hours=h))),
)
targets = st.builds(
    lambda on, prs, attempts, breaker: TargetConfig(
        target_id="t", target_repo_url="/r", autonomy_enabled=on, max_open_prs=prs,
        max_attempts_per_task=attempts, circuit_breaker_failures=breaker,
    ),
    st.booleans(), st.integers(0, 3), st.integers(1, 3), st.integers(1, 3),
)


def _oracle_eligible(task, by_id, target, state) -> bool:
    prefixes = [path_segments(p) for p in target.allowed_path_prefixes]

    def in_scope(path):
        try:
            segs = path_segments(path)
        except ScopeViolation:
            return False
        return any(segs[: len(p)] == p for p in prefixes)

    pr_tasks = set()
    for pr in state.open_prs or []:
        pr_tasks.add(pr.task_id)
        parts = pr.branch.split("/")
        if parts[0] == "agent" and len(parts) > 1:
            pr_tasks.add(parts[1])
    return (
        task.ready is True
        and task.status in (None, "pending")
        and all(d in by_id and by_id[d].status in ("completed", "done") for d in task.dependencies)
        and bool(task.allowed_paths) and all(in_scope(p) for p in task.allowed_paths)
        and sum(a.task_id == task.id and a.outcome != "succeeded" for a in state.attempts)
        < target.max_attempts_per_task
        and task.id not in pr_tasks
    )


def _oracle_cycle_ok(target, state) -> bool:
    if not (target.autonomy_enabled and state.autonomy_enabled) or state.open_prs is None:
        return False
    if sum(pr.branch.startswith("agent/") for pr in state.open_prs) >= target.max_open_prs:
        return False
    recent = sorted((a for a in state.attempts
                     if state.breaker_reset_at is None or a.finished_at > state.breaker_reset_at),
                    key=lambda a: a.finished_at)[-target.circuit_breaker_failures:]
    return not (len(recent) == target.circuit_breaker_failures
                and all(a.outcome != "succeeded" for a in recent))


@settings(max_examples=250, deadline=None)
@given(st.lists(task_dicts, max_size=6), targets, states)
def test_decide_never_runs_a_task_it_must_not(tasks, target, state):
    backlog, _ = parse_backlog(yaml.safe_dump({"tasks": tasks}), "b.yaml")
    decision = decide(target, backlog, state)
    by_id = backlog.by_id()
    eligible = [t for t in backlog.tasks if _oracle_eligible(t, by_id, target, state)]

    assert {v.id for v in decision.tasks if v.eligible} == {t.id for t in eligible}
    assert len(decision.tasks) == len(tasks)
    if decision.decision == "run":
        chosen = by_id[decision.task_id]
        assert _oracle_cycle_ok(target, state)
        assert chosen in eligible
        assert chosen == min(eligible, key=lambda t: (t.priority_rank, backlog.tasks.index(t)))
    else:
        assert decision.task_id is None
        assert not (_oracle_cycle_ok(target, state) and eligible)


# --- task ids against git ---------------------------------------------------------------------

@FUZZ
@given(st.text(alphabet="ab.-_/@{}~^:? \\lock\x01", min_size=1, max_size=10))
def test_an_id_the_backlog_accepts_is_a_branch_git_accepts(task_id):
    """Whatever the core lets through as a task id, ``git check-ref-format --branch agent/<id>/1`` accepts."""
    backlog, _ = parse_backlog(yaml.safe_dump({"tasks": [{"id": task_id, "title": "T"}]}), "b.yaml")
    if backlog.tasks:
        proc = subprocess.run(["git", "check-ref-format", "--branch", f"agent/{task_id}/1"], capture_output=True,
                              timeout=30)
        assert proc.returncode == 0, task_id
