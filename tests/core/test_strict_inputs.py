"""Strict parsing of the files humans and target repositories hand Leviathan (backlog, target, recipes).

YAML 1.2 booleans only, no anchors/aliases/merge keys/duplicate keys, git-ref-safe task ids and strict
UTF-8: each refused with a message naming the file and line, never silently reinterpreted.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from leviathan_lib.contracts.recipes import parse_recipes
from leviathan_lib.core.backlog import parse_backlog, ref_component_problem
from leviathan_lib.core.config import parse_target
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.yamlsrc import decode_utf8, load_yaml

TARGET = "target_id: demo\ntarget_repo_url: /srv/x.git\n"
RECIPES = "recipes:\n  r:\n    steps:\n      - [python3, s.py]\n"


def problems_of(call, *args) -> list[str]:
    with pytest.raises(ValidationFailed) as info:
        call(*args)
    return [str(p) for p in info.value.problems]


def task(extra: str = "", task_id: str = "a") -> str:
    return f"tasks:\n  - id: {task_id}\n    title: T\n{extra}"


# -- anchors, aliases, merge keys, duplicate keys ------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "message"), [
    (task("    ready: &r true\n"), 4, "YAML anchors (&r) are not allowed"),
    ("defaults: &d\n  ready: true\ntasks:\n  - *d\n", 1, "YAML anchors (&d) are not allowed"),
    (task("    ready: true\n    <<: {status: done}\n"), 5, "YAML merge keys (<<) are not allowed"),
    (task("    ready: false\n    ready: true\n"), 5, "duplicate key 'ready' (first at line 4)"),
    ("tasks: []\ntasks:\n  - {id: a, title: T, ready: true}\n", 2, "duplicate key 'tasks' (first at line 1)"),
    ("tasks:\n  - {id: a, title: T, id: b}\n", 2, "duplicate key 'id' (first at line 2)"),
])
def test_backlog_refuses_anchors_aliases_merges_and_duplicate_keys(text, line, message):
    assert problems_of(parse_backlog, text, "b.yaml") == [f"b.yaml:{line}: {message}"]


def test_an_alias_alone_is_refused_at_its_line():
    # Not reachable through an anchor-free file, but the composer refuses an alias event on its own too.
    assert problems_of(load_yaml, "a: 1\nb: *nowhere\n", "x.yaml")[0].startswith("x.yaml:2: ")


def test_alias_bomb_fails_fast_before_expansion():
    levels = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = "\n".join(levels) + "\ntasks: []\n"
    assert 600 <= len(bomb) <= 700  # 9**9 (387 million) strings once expanded
    started = time.perf_counter()
    assert problems_of(parse_backlog, bomb, "b.yaml") == ["b.yaml:1: YAML anchors (&lol0) are not allowed"]
    assert time.perf_counter() - started < 0.5


def test_target_and_recipes_files_use_the_same_strict_loader():
    assert problems_of(parse_target, TARGET + "max_open_prs: 1\nmax_open_prs: 9\n", "t.yaml") == [
        "t.yaml:4: duplicate key 'max_open_prs' (first at line 3)"]
    assert problems_of(parse_target, "target_id: &t demo\ntarget_repo_url: /r\n", "t.yaml") == [
        "t.yaml:1: YAML anchors (&t) are not allowed"]
    assert parse_target(TARGET + "autonomy_enabled: TRUE\n", "t.yaml").autonomy_enabled is True
    assert problems_of(parse_target, TARGET + "autonomy_enabled: yes\n", "t.yaml") == [
        "t.yaml:3: autonomy_enabled: expected true or false; write true (YAML 1.2)"]
    assert set(parse_recipes(RECIPES, "r.yaml")) == {"r"}
    assert problems_of(parse_recipes, RECIPES + "  r:\n    steps: []\n", "r.yaml") == [
        "r.yaml:5: duplicate key 'r' (first at line 2)"]
    assert problems_of(parse_recipes, RECIPES.replace("  r:", "  r: &x"), "r.yaml") == [
        "r.yaml:2: YAML anchors (&x) are not allowed"]


def test_a_recipe_or_check_has_at_most_100_steps():
    def steps(n: int) -> str:
        return "    steps:\n" + "      - [python3, s.py]\n" * n

    too_many = "steps: List should have at most 100 items after validation, not 101"
    assert len(parse_recipes(f"recipes:\n  r:\n{steps(100)}", "r.yaml")["r"].argvs) == 100
    assert problems_of(parse_recipes, f"recipes:\n  r:\n{steps(101)}", "r.yaml") == [
        f"r.yaml:3: recipes.r.{too_many}"]
    assert problems_of(parse_recipes, f"{RECIPES}checks:\n  c:\n{steps(101)}", "r.yaml") == [
        f"r.yaml:7: checks.c.{too_many}"]


# -- ready: the YAML 1.2 boolean true only -----------------------------------------------------------

@pytest.mark.parametrize("literal", ["true", "True", "TRUE"])
def test_ready_true_literals(literal):
    backlog, problems = parse_backlog(task(f"    ready: {literal}\n"), "b.yaml")
    assert problems == [] and [t.ready for t in backlog.tasks] == [True]


@pytest.mark.parametrize(("literal", "message"), [
    *[(word, "expected true or false; write true (YAML 1.2)") for word in ["yes", "Yes", "on", "ON", "y", "Y"]],
    *[(word, "expected true or false; write false (YAML 1.2)") for word in ["no", "Off", "N", '"no"']],
    *[(other, "Input should be a valid boolean (got ") for other in ["'true'", '"true"', "1", "tRUE"]],
])
def test_ready_that_is_not_a_yaml_12_boolean_makes_the_task_invalid(literal, message):
    backlog, problems = parse_backlog(task(f"    ready: {literal}\n") + "  - {id: b, title: T}\n", "b.yaml")
    assert [t.id for t in backlog.tasks] == ["b"]  # the valid neighbour survives
    assert [(i.index, i.id) for i in backlog.invalid] == [(0, "a")]
    [problem] = [str(p) for p in problems]
    assert problem.startswith(f"b.yaml:4: task 'a': ready: {message}")


def test_yaml_11_words_are_plain_strings_elsewhere():
    assert load_yaml("a: yes\nb: off\nc: n\nd: false\ne: FALSE\n", "x.yaml") == {
        "a": "yes", "b": "off", "c": "n", "d": False, "e": False}


# -- hints: the closest known key, tasks named by id ----------------------------------------------------

def test_an_unknown_key_names_the_closest_known_key_in_every_parser():
    target = TARGET + "max_pr_per_hour: 3\nworker_resources:\n  cpu_limt: '1'\nzzz: 1\n"
    assert problems_of(parse_target, target, "t.yaml") == [
        "t.yaml:5: worker_resources.cpu_limt: unknown key; did you mean 'cpu_limit'?",
        "t.yaml:3: max_pr_per_hour: unknown key; did you mean 'max_prs_per_hour'?",
        "t.yaml:6: zzz: unknown key (see docs/configuration.md for the accepted keys)",
    ]
    _, problems = parse_backlog(task("    alowed_paths: [docs/]\n"), "b.yaml")
    assert [str(p) for p in problems] == [
        "b.yaml:4: task 'a': alowed_paths: unknown key; did you mean 'allowed_paths'?"]
    assert problems_of(parse_backlog, "tasks: []\nmetdata: {}\n", "b.yaml") == [
        "b.yaml:2: metdata: unknown top-level key; did you mean 'metadata'?"]
    assert problems_of(parse_backlog, "task:\n  - {id: a, title: T}\n", "b.yaml") == [
        "b.yaml:1: task: unknown top-level key; did you mean 'tasks'?"]
    assert problems_of(parse_recipes, RECIPES.replace("steps:", "stepz:"), "r.yaml")[0] == (
        "r.yaml:3: recipes.r.stepz: unknown key; did you mean 'steps'?")


def test_a_task_is_named_by_its_id_and_by_position_only_without_a_usable_one():
    text = ("tasks:\n  - {id: add-docs, title: A, ready: on}\n  - {title: B, ready: 1}\n  - 7\n"
            "  - {id: twin, title: C}\n  - {id: twin, title: D, bogus: 1}\n")
    backlog, problems = parse_backlog(text, "b.yaml")
    assert [str(p) for p in problems] == [
        "b.yaml:2: task 'add-docs': ready: expected true or false; write true (YAML 1.2)",
        "b.yaml:3: tasks[1].id: Field required",
        "b.yaml:3: tasks[1].ready: Input should be a valid boolean (got int)",
        "b.yaml:4: tasks[2]: expected a mapping",
        "b.yaml:6: tasks[4].bogus: unknown key",
        "b.yaml:5: tasks[3].id: duplicate task id 'twin'",
    ]
    # The same words reach the DAG's task log and the view through the invalid tasks.
    assert backlog.invalid[0].problems == [str(problems[0])]


# -- task ids are git branch components --------------------------------------------------------------

TRICKY_IDS = [
    "ok", "a.b", "a-b", "a_b", "A1", "0", "HEAD", "lock", "a.lck", "a.lock.b", "a@b", "x" * 100,
    "a..b", "x.lock", ".lock", "a..lock", ".a", "-a", "a.", "a.b.", "@", "a@{b", "a b", "a\tb", "a~1", "a^",
    "a:b", "a?", "a*", "a[b", "a\\b", "a/b", "a//b", "a/", "", "é", "a\x7fb",
]


def _git_accepts_branch(task_id: str) -> bool:
    proc = subprocess.run(["git", "check-ref-format", "--branch", f"agent/{task_id}/1"],
                          capture_output=True, timeout=30)
    return proc.returncode == 0


@pytest.mark.parametrize("task_id", TRICKY_IDS)
def test_task_id_rule_is_never_looser_than_git(task_id):
    """What the core accepts, git accepts as ``agent/<id>/1``; what git refuses, the core refuses."""
    accepted, _ = parse_backlog(f"tasks:\n  - {{id: {task_id!r}, title: T}}\n", "b.yaml")
    core_ok = ref_component_problem(task_id) is None
    if not _git_accepts_branch(task_id):
        assert not core_ok and accepted.tasks == []
    if core_ok or accepted.tasks:
        assert _git_accepts_branch(task_id)


@pytest.mark.parametrize(("task_id", "why"), [
    ("a..b", "it contains '..'"), ("x.lock", "it ends with '.lock'"), ("a.", "it ends with '.'"),
])
def test_bad_task_ids_are_invalid_tasks_naming_file_line(task_id, why):
    backlog, problems = parse_backlog(task("    ready: true\n", task_id) + f"  - {{id: b, title: T, "
                                      f"dependencies: [{task_id!r}]}}\n", "b.yaml")
    assert backlog.tasks == [] and [i.index for i in backlog.invalid] == [0, 1]
    assert [str(p) for p in problems] == [
        f"b.yaml:2: task {task_id!r}: id: not usable in a git branch name: {why}",
        f"b.yaml:5: task 'b': dependencies[0]: not usable in a git branch name: {why}",
    ]


# -- encoding ------------------------------------------------------------------------------------------

def test_decode_is_strict_utf8_naming_the_byte():
    assert decode_utf8("tâche".encode(), "b.yaml") == "tâche"
    assert problems_of(decode_utf8, b"tasks: []\n# \xff\n", "b.yaml") == [
        "b.yaml: cannot read file: not valid UTF-8 at byte 12"]
