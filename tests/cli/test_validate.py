"""``leviathan validate | schema`` as a user runs them: the real CLI in a subprocess, on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ORIGINAL = Path(__file__).resolve().parents[1] / "fixtures" / "original"
TARGET = "target_id: demo\ntarget_repo_url: /srv/demo.git\n"
RECIPES = 'recipes:\n  write-faq:\n    command: [python3, faq.py]\n  write-intro:\n    command: [python3, i.py]\n'
BACKLOG = "tasks:\n  - id: add-docs\n    title: Add docs\n    ready: true\n    allowed_paths: [docs/]\n"


def leviathan(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", *map(str, args)],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def warning_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": warning: " in line]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A target repository's ``.leviathan/`` with a valid backlog and recipes file."""
    write(tmp_path / "repo" / ".leviathan" / "recipes.yaml", RECIPES)
    write(tmp_path / "repo" / ".leviathan" / "backlog.yaml", BACKLOG + "    recipe: write-faq\n")
    return tmp_path / "repo"


# --- success says what it checked ---------------------------------------------------------------

def test_folders_of_targets_and_a_repository_are_confirmed_file_by_file(tmp_path, repo):
    targets = tmp_path / "targets"
    write(targets / "demo.yaml", TARGET)
    write(targets / "other.yml", "target_id: other\ntarget_repo_url: /srv/other.git\n")
    write(targets / "README.md", "not a target file")
    result = leviathan("validate", targets, repo)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"ok: {targets / 'demo.yaml'} (target demo)",
        f"ok: {targets / 'other.yml'} (target other)",
        f"ok: {repo / '.leviathan' / 'backlog.yaml'} (backlog, 1 task)",
        f"ok: {repo / '.leviathan' / 'recipes.yaml'} (recipes file, 2 recipes)",
        "4 files valid",
    ]


def test_the_leviathan_folder_itself_and_a_file_given_twice(repo):
    backlog = repo / ".leviathan" / "backlog.yaml"
    result = leviathan("validate", repo / ".leviathan", backlog)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"ok: {backlog} (backlog, 1 task)",
        f"ok: {repo / '.leviathan' / 'recipes.yaml'} (recipes file, 2 recipes)",
        "2 files valid",
    ]


def test_validate_original_files():
    result = leviathan("validate", ORIGINAL / "dev.yaml", ORIGINAL / "backlog.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"{ORIGINAL / 'dev.yaml'}:14: warning: control_plane_url: deprecated key, "
        "Airflow is the control plane; the value is ignored"
    ]
    assert result.stdout.splitlines() == [
        f"ok: {ORIGINAL / 'dev.yaml'} (target radix)",
        f"ok: {ORIGINAL / 'backlog.yaml'} (backlog, 5 tasks)",
        "2 files valid, 1 warning",
    ]


# --- hints --------------------------------------------------------------------------------------

def test_an_unknown_key_names_the_closest_known_one(tmp_path):
    target = write(tmp_path / "t.yaml", TARGET + "max_pr_per_hour: 3\n")
    backlog = write(tmp_path / "b.yaml", BACKLOG + "    alowed_paths: [docs/a.md]\n")
    result = leviathan("validate", target, backlog)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {target}:3: max_pr_per_hour: unknown key; did you mean 'max_prs_per_hour'?",
        f"error: {backlog}:6: task 'add-docs': alowed_paths: unknown key; did you mean 'allowed_paths'?",
    ]
    assert result.stdout.splitlines() == ["0 of 2 files valid"]


def test_a_backlog_file_that_lost_its_tasks_key_is_still_checked_as_a_backlog(tmp_path):
    backlog = write(tmp_path / ".leviathan" / "backlog.yaml", "task:\n  - id: a\n    title: A\n")
    result = leviathan("validate", backlog)
    assert result.returncode == 2
    assert error_lines(result) == [f"error: {backlog}:1: task: unknown top-level key; did you mean 'tasks'?"]


@pytest.mark.parametrize(("word", "literal"), [("yes", "true"), ("On", "true"), ("no", "false"), ("OFF", "false"),
                                               ("y", "true"), ("N", "false")])
def test_a_yaml_11_boolean_word_says_which_yaml_12_literal_to_write(tmp_path, word, literal):
    target = write(tmp_path / "t.yaml", TARGET + f"autonomy_enabled: {word}\n")
    backlog = write(tmp_path / "b.yaml", BACKLOG.replace("ready: true", f"ready: {word}"))
    result = leviathan("validate", target, backlog)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {target}:3: autonomy_enabled: expected true or false; write {literal} (YAML 1.2)",
        f"error: {backlog}:4: task 'add-docs': ready: expected true or false; write {literal} (YAML 1.2)",
    ]


def test_a_mis_indented_list_item_is_a_warning_and_fails_only_with_strict(tmp_path):
    target = write(tmp_path / "t.yaml", TARGET + "allowed_path_prefixes:\n  - docs/\n   - .leviathan/\n")
    backlog = write(tmp_path / "b.yaml", BACKLOG.replace("allowed_paths: [docs/]",
                                                         "allowed_paths:\n      - docs/a.md\n       - docs/b.md"))
    result = leviathan("validate", target, backlog)
    assert result.returncode == 0, result.stderr
    assert warning_lines(result) == [
        f'{target}:4: warning: allowed_path_prefixes[0]: looks like two list items joined by mis-indentation '
        '("docs/ - .leviathan/"); indent each "- " item the same',
        f"{backlog}:6: warning: task 'add-docs': allowed_paths[0]: looks like two list items joined by "
        'mis-indentation ("docs/a.md - docs/b.md"); indent each "- " item the same',
    ]
    assert result.stdout.splitlines()[-1] == "2 files valid, 2 warnings"
    strict = leviathan("validate", "--strict", target, backlog)
    assert strict.returncode == 1
    assert warning_lines(strict) == warning_lines(result) and error_lines(strict) == []


# --- every problem of every file, tasks named by id -----------------------------------------------

def test_validate_rejects_string_boolean_with_file_line_and_field(tmp_path):
    text = "target_id: demo\ntarget_repo_url: /srv/x.git\nautonomy_enabled: 'false'\n"
    target = write(tmp_path / "t.yaml", text)
    result = leviathan("validate", target)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {target}:3: autonomy_enabled: Input should be a valid boolean (got str 'false')"
    ]


def test_validate_reports_every_problem_of_every_file(tmp_path):
    backlog = write(tmp_path / "backlog.yaml", """\
tasks:
  - id: a
    title: "A"
    ready: "yes"
  - id: b
    title: "B"
    dependencies: [a, ghost, b]
    allowed_paths: ["docs/ok.md", "../escape.md", "/etc/passwd", "docs2/x", ""]
  - id: c
    title: "C"
    ready: true
  - title: "no id"
    ready: 1
""")
    target = write(tmp_path / "t.yaml", "target_id: Bad Id\ntarget_repo_url: /srv/x.git\n")
    result = leviathan("validate", backlog, target)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {backlog}:4: task 'a': ready: expected true or false; write true (YAML 1.2)",
        f"error: {backlog}:12: tasks[3].id: Field required",
        f"error: {backlog}:13: tasks[3].ready: Input should be a valid boolean (got int)",
        f"error: {backlog}:7: task 'b': dependencies[1]: unknown task id 'ghost'",
        f"error: {backlog}:7: task 'b': dependencies[2]: a task cannot depend on itself",
        f"error: {backlog}:8: task 'b': allowed_paths[1]: unsafe path: '..' segment in path '../escape.md'",
        f"error: {backlog}:8: task 'b': allowed_paths[2]: unsafe path: absolute path '/etc/passwd'",
        f"error: {backlog}:8: task 'b': allowed_paths[4]: unsafe path: empty path",
        f"error: {target}:1: target_id: String should match pattern '^[a-z0-9][a-z0-9_-]{{0,62}}$'",
    ]
    # A ready task that can never run is worth a warning, not an error.
    assert warning_lines(result) == [
        f"{backlog}:9: warning: task 'c': allowed_paths: ready task has no allowed_paths, so it can never run"]


def test_validate_dependency_on_invalid_task_is_not_unknown(tmp_path):
    backlog = write(tmp_path / "b.yaml", {"tasks": [
        {"id": "a", "title": "A", "bogus": 1},
        {"id": "b", "title": "B", "dependencies": ["a"], "allowed_paths": ["docs/b.md"]},
        {"id": ["c"], "title": "an id that is a list"},
    ]})
    result = leviathan("validate", backlog)
    assert result.returncode == 2
    assert [line.split(": ", 2)[2] for line in error_lines(result)] == [
        "task 'a': bogus: unknown key", "tasks[2].id: Input should be a valid string (got list)"]


def test_validate_reports_strict_yaml_ready_id_and_encoding_problems_naming_file_line(tmp_path):
    """Every way the strict parser refuses input, one line each, in one run, exit 2 and no traceback."""
    tasks = write(tmp_path / "tasks.yaml", "tasks:\n  - id: yes-ready\n    title: A\n    ready: yes\n"
                  "  - id: a..b\n    title: B\n  - id: quoted\n    title: C\n    ready: 'true'\n")
    aliased = write(tmp_path / "aliased.yaml", "tasks:\n  - &t {id: a, title: A}\n  - *t\n")
    duplicated = write(tmp_path / "dup.yaml", "tasks:\n  - id: a\n    title: A\n    ready: false\n"
                       "    ready: true\n")
    undecodable = tmp_path / "latin1.yaml"
    undecodable.write_bytes("tasks:\n  - id: a\n    title: tâche\n".encode("latin-1"))
    result = leviathan("validate", tasks, aliased, duplicated, undecodable)
    assert result.returncode == 2 and result.stdout == "0 of 4 files valid\n"
    assert error_lines(result) == [
        f"error: {tasks}:4: task 'yes-ready': ready: expected true or false; write true (YAML 1.2)",
        f"error: {tasks}:5: task 'a..b': id: not usable in a git branch name: it contains '..'",
        f"error: {tasks}:9: task 'quoted': ready: Input should be a valid boolean (got str)",
        f"error: {aliased}:2: YAML anchors (&t) are not allowed",
        f"error: {duplicated}:5: duplicate key 'ready' (first at line 4)",
        f"error: {undecodable}: cannot read file: not valid UTF-8 at byte 29",
    ]


@pytest.mark.parametrize(
    ("content", "kind", "message"),
    [
        ("just: a mapping\n", None, "cannot tell whether this is a target file (target_id:), a backlog (tasks:) or "
                                    "a recipes file (recipes:); use --kind target|backlog|recipes"),
        ("- a list\n", None, "cannot tell whether this is a target file"),
        ("", None, "cannot tell whether this is a target file"),
        ("tasks: [\n", None, "invalid YAML"),
        ("target_id: demo\ntarget_repo_url: /x\n", "backlog", "expected a top-level mapping with a 'tasks:'"),
        ("tasks: []\n", "target", "target_id: Field required"),
        ("tasks: []\n", "recipes", "recipes: Field required"),
        ("tasks: {a: 1}\n", None, "tasks: expected a list, got dict"),
        ("tasks: []\nextra: 1\n", None, "extra: unknown top-level key (expected 'tasks' and optional 'metadata')"),
    ],
)
def test_validate_file_level_problems(tmp_path, content, kind, message):
    path = write(tmp_path / "f.yaml", content)
    result = leviathan("validate", path, *(["--kind", kind] if kind else []))
    assert result.returncode == 2
    assert any(message in line and str(path) in line for line in error_lines(result)), result.stderr


def test_validate_missing_binary_files_and_empty_folders(tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "empty").mkdir()
    result = leviathan("validate", tmp_path / "missing.yaml", binary, tmp_path / "empty")
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 3
    assert lines[0] == f"error: {tmp_path / 'empty'}: no *.yaml or *.yml file in this folder or its .leviathan/"
    assert lines[1].startswith(f"error: {tmp_path / 'missing.yaml'}: cannot read file")
    assert lines[2].startswith(f"error: {binary}: cannot read file")


def test_two_target_files_with_one_target_id_are_both_errors(tmp_path):
    first = write(tmp_path / "targets" / "a.yaml", TARGET)
    second = write(tmp_path / "targets" / "b.yaml", TARGET)
    result = leviathan("validate", tmp_path / "targets")
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {first}:1: target_id: 'demo' is also the target_id of {second}; Airflow would refuse both",
        f"error: {second}:1: target_id: 'demo' is also the target_id of {first}; Airflow would refuse both",
    ]


@pytest.mark.parametrize("args", [["validate"], ["validate", "--kind", "plan", str(ORIGINAL)]])
def test_bad_invocations_exit_2_without_traceback(args):
    result = leviathan(*args)
    assert result.returncode == 2
    assert "usage: leviathan validate" in result.stderr


# --- recipes ------------------------------------------------------------------------------------

def test_a_broken_recipes_file_is_an_error_naming_file_and_line(repo):
    recipes = write(repo / ".leviathan" / "recipes.yaml", 'recipes:\n  write-faq:\n    command: "python3 faq.py"\n'
                    "    descripton: FAQ\n")
    result = leviathan("validate", recipes)
    assert result.returncode == 2
    assert error_lines(result) == [
        f'error: {recipes}:3: recipes.write-faq.command: expected an argv list like ["python3", "script.py"], '
        "never a shell string (got str)",
        f"error: {recipes}:4: recipes.write-faq.descripton: unknown key; did you mean 'description'?",
    ]
    assert result.stdout == "0 of 1 files valid\n"


def test_a_task_naming_an_unknown_recipe_is_an_error_listing_the_known_ones(repo):
    backlog = write(repo / ".leviathan" / "backlog.yaml", BACKLOG + "    recipe: write-fq\n")
    recipes = repo / ".leviathan" / "recipes.yaml"
    expected = [f"error: {backlog}:6: task 'add-docs': recipe: unknown recipe 'write-fq' in {recipes}; "
                "did you mean 'write-faq'? (known: write-faq, write-intro)"]
    # The recipes file beside the backlog is found (and checked) when only the backlog is named.
    alone = leviathan("validate", backlog)
    assert alone.returncode == 2
    assert error_lines(alone) == expected
    assert alone.stdout.splitlines() == [f"ok: {recipes} (recipes file, 2 recipes)", "1 of 2 files valid"]


def test_a_recipes_file_given_in_the_same_invocation_is_the_one_checked_against(tmp_path):
    backlog = write(tmp_path / "b.yaml", BACKLOG + "    recipe: write-faq\n  - {id: two, title: T, recipe: deploy}\n"
                    "  - {title: no id, recipe: write-intr}\n")
    recipes = write(tmp_path / "elsewhere" / "my-recipes.yaml", RECIPES)
    result = leviathan("validate", backlog, recipes)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {backlog}:8: tasks[2].id: Field required",
        f"error: {backlog}:7: task 'two': recipe: unknown recipe 'deploy' in {recipes} (known: write-faq, write-intro)",
        # An invalid entry's recipe is checked too: one run shows every mistake.
        f"error: {backlog}:8: tasks[2].recipe: unknown recipe 'write-intr' in {recipes}; did you mean 'write-intro'? "
        "(known: write-faq, write-intro)",
    ]
    # Without a recipes file, recipe names are not checked.
    alone = leviathan("validate", backlog)
    assert alone.returncode == 2
    assert error_lines(alone) == [f"error: {backlog}:8: tasks[2].id: Field required"]


# --- checks -------------------------------------------------------------------------------------

CHECKS = ("checks:\n  lint-docs:\n    steps:\n      - [python3, .leviathan/checks/lint_docs.py]\n"
          "    timeout_seconds: 60\n")


def test_a_malformed_check_is_an_error_naming_file_line_and_field(repo):
    recipes = write(repo / ".leviathan" / "recipes.yaml", RECIPES + "checks:\n  lint-docs:\n"
                    '    steps: "python3 lint.py"\n    timeout_seconds: "60"\n    timeout: 60\n'
                    "  style:\n    steps: []\n")
    result = leviathan("validate", recipes)
    assert result.returncode == 2
    assert error_lines(result) == [
        f'error: {recipes}:8: checks.lint-docs.steps: expected an argv list like ["python3", "script.py"], '
        "never a shell string (got str)",
        f"error: {recipes}:9: checks.lint-docs.timeout_seconds: Input should be a valid integer (got str)",
        f"error: {recipes}:10: checks.lint-docs.timeout: unknown key; did you mean 'timeout_seconds'?",
        f"error: {recipes}:12: checks.style.steps: List should have at least 1 item after validation, not 0",
    ]


def test_a_task_naming_an_unknown_check_is_an_error_listing_the_known_ones(repo):
    recipes = write(repo / ".leviathan" / "recipes.yaml", RECIPES + CHECKS)
    backlog = write(repo / ".leviathan" / "backlog.yaml", BACKLOG + "    recipe: write-faq\n"
                    "    checks: [lint-docs, lint-doc]\n")
    result = leviathan("validate", repo)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {backlog}:7: task 'add-docs': checks[1]: unknown check 'lint-doc' in {recipes}; did you mean "
        "'lint-docs'? (known: lint-docs)"]
    assert f"ok: {recipes} (recipes file, 2 recipes, 1 check)" in result.stdout
    fixed = write(backlog, BACKLOG + "    recipe: write-faq\n    checks: [lint-docs]\n")
    assert leviathan("validate", fixed).returncode == 0


# --- schema -------------------------------------------------------------------------------------

def test_backlog_schema_accepts_the_original_backlog_and_rejects_bad_ones():
    result = leviathan("schema", "backlog")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load((ORIGINAL / "backlog.yaml").read_text()))) == []
    assert list(validator.iter_errors({"tasks": [{"id": "a", "title": "A", "ready": "yes"}]}))
    assert list(validator.iter_errors({"tasks": [], "other": 1}))
    assert list(validator.iter_errors({"metadata": {}}))


def test_target_schema_accepts_the_original_config_and_marks_deprecated_keys():
    result = leviathan("schema", "target")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load((ORIGINAL / "dev.yaml").read_text()))) == []
    assert schema["properties"]["control_plane_url"]["deprecated"] is True
    base = {"target_id": "x", "target_repo_url": "y"}
    assert list(validator.iter_errors({**base, "autonomy_enabled": "false"}))
    assert list(validator.iter_errors({**base, "unknown": 1}))


def test_schema_needs_a_known_kind():
    result = leviathan("schema", "recipes")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_limits_above_the_deployments_caps_are_a_warning_and_the_cap_applies(tmp_path):
    target = tmp_path / "t.yaml"
    target.write_text("target_id: t\ntarget_repo_url: /r.git\nlimits: {processes: 100000, memory_mb: 256}\n")
    result = leviathan("validate", target)
    assert result.returncode == 0, result.stderr
    assert warning_lines(result) == [f"{target}: warning: limits.processes: 100000 is above the deployment's cap "
                                     "(max_attempt_processes = 256); the cap applies"]
    unknown = tmp_path / "u.yaml"
    unknown.write_text("target_id: u\ntarget_repo_url: /r.git\nlimits: {processes: 64, cpu: 10}\n")
    assert f"{unknown}:3: limits.cpu: unknown key" in leviathan("validate", unknown).stderr
