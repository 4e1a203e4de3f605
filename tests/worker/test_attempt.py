"""The worker end to end: a real target repository, the real ``python -m leviathan_lib.worker`` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from leviathan_lib.contracts.attempt import AttemptResult, AttemptSpec, ErrorInfo, result_from_json, utc_now
from leviathan_lib.contracts.recipes import parse_recipes
from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.worker.attempt import run_attempt

ROOT = Path(__file__).resolve().parents[2]
GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "LANG": "C.UTF-8",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Leviathan",
    "GIT_AUTHOR_EMAIL": "leviathan@localhost",
    "GIT_COMMITTER_NAME": "Leviathan",
    "GIT_COMMITTER_EMAIL": "leviathan@localhost",
}

BACKLOG = """\
tasks:
  - id: docs-quickstart
    title: "Write the quickstart"
    ready: true
    allowed_paths:
      - "docs/"
    recipe: write-quickstart
"""

ACTIONS = """\
import json, os, subprocess, sys, time
from pathlib import Path

action = sys.argv[1]
task = json.loads(Path(os.environ["LEVIATHAN_TASK_FILE"]).read_text())


def record_pids(*pids):
    try:
        Path(os.environ["PIDFILE"]).write_text(json.dumps({"pgid": os.getpgrp(), "pids": list(pids)}))
    except OSError:  # sandboxed: the file is outside the checkout, so the write is refused
        pass


def sleeper(*prefix):  # a 300 s sleeper whose command line carries the marker: tests find it from outside
    return subprocess.Popen([*prefix, sys.executable, "-c", "import time; time.sleep(300)", os.environ["PIDFILE"]])


if action == "quickstart":
    Path("docs/quickstart.md").write_text(f"# {task['title']}\\n\\nstyle: {os.environ['STYLE']}\\n")
elif action == "write":
    path = Path(sys.argv[2])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("written by a recipe\\n")
elif action == "symlink":
    os.symlink("../README.md", "docs/link.md")
elif action == "rename":
    os.rename("README.md", "docs/README.md")
elif action == "env":
    Path("docs/env.json").write_text(json.dumps(dict(os.environ), sort_keys=True, indent=1) + "\\n")
elif action == "binary":
    Path("docs/logo.bin").write_bytes(bytes(range(256)) * 8)
elif action == "big":
    Path("docs/big.md").write_text("line\\n" * 2000)
elif action == "fail":
    print("about to fail", file=sys.stderr)
    sys.exit(int(sys.argv[2]))
elif action == "hang":
    child = sleeper()
    record_pids(os.getpid(), child.pid)
    time.sleep(300)
elif action == "daemon":
    child = sleeper()
    record_pids(child.pid)
    Path("docs/daemon.md").write_text("left a child behind\\n")
elif action in ("escape", "escape-hang"):
    sleeper("setsid")  # a new session: out of every process group the worker could kill
    if os.fork() == 0:  # the classic double fork: the daemon's parent exits, init adopts it
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", os.environ["PIDFILE"]])
        os._exit(0)
    os.wait()
    Path("docs/escape.md").write_text("left daemons behind\\n")
    if action == "escape-hang":
        time.sleep(300)
elif action == "kill-worker":
    os.kill(os.getppid(), 9)
    Path("docs/survived.md").write_text("the worker survived\\n")
"""


def recipes_yaml(pidfile: Path) -> str:
    step = '["python3", ".leviathan/recipes/actions.py"'
    return f"""\
# Named commands Leviathan may run on this repository.
recipes:
  write-quickstart:
    description: "Generate docs/quickstart.md"
    steps:
      - {step}, "quickstart"]
    env:
      STYLE: short
  two-files:
    steps:
      - {step}, "write", "docs/a.md"]
      - {step}, "write", "docs/sub/b.md"]
  out-of-scope:
    command: {step}, "write", "docs2/x.md"]
  readme:
    command: {step}, "write", "README.md"]
  symlink:
    command: {step}, "symlink"]
  rename-readme:
    command: {step}, "rename"]
  env-dump:
    command: {step}, "env"]
  binary:
    command: {step}, "binary"]
  big:
    command: {step}, "big"]
  failing:
    steps:
      - {step}, "write", "docs/first.md"]
      - {step}, "fail", "3"]
      - {step}, "write", "docs/never.md"]
  missing-program:
    command: ["no-such-program-leviathan"]
  noop:
    command: ["python3", "-c", "pass"]
  hang:
    command: {step}, "hang"]
    env:
      PIDFILE: "{pidfile}"
  daemon:
    command: {step}, "daemon"]
    env:
      PIDFILE: "{pidfile}"
  kill-worker:
    command: {step}, "kill-worker"]
  escape:
    command: {step}, "escape"]
    env:
      PIDFILE: "{pidfile}"
  escape-hang:
    command: {step}, "escape-hang"]
    env:
      PIDFILE: "{pidfile}"
"""


def git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True)
    return proc.stdout


def make_target_repo(tmp_path: Path) -> tuple[Path, str]:
    """A bare 'remote' with one commit holding a backlog, recipes and a recipe script; (url, sha)."""
    work, bare = tmp_path / "src", tmp_path / "target.git"
    git("-c", "init.defaultBranch=main", "init", "--quiet", str(work))
    files = {
        ".leviathan/backlog.yaml": BACKLOG,
        ".leviathan/recipes.yaml": recipes_yaml(tmp_path / "pids.json"),
        ".leviathan/bad-recipes.yaml": 'recipes:\n  broken:\n    steps: "python3 script.py"\n',
        ".leviathan/recipes/actions.py": ACTIONS,
        "docs/index.md": "# Docs\n",
        "README.md": "# Target\n",
    }
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "target", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(bare))
    return bare, git("rev-parse", "HEAD", cwd=work).strip()


def make_spec(repo: Path, sha: str, recipe: str = "write-quickstart", **overrides) -> AttemptSpec:
    backlog, problems = parse_backlog(BACKLOG)
    assert not problems
    task = backlog.tasks[0].model_dump(mode="json")
    task.update(overrides.pop("task", {}))
    task["recipe"] = recipe
    data = {
        "spec_version": 1,
        "target_id": "demo",
        "repo_url": str(repo),
        "commit_sha": sha,
        "task": task,
        "allowed_path_prefixes": [".leviathan/", "docs/"],
        "executor": {"kind": "recipe", "recipe": recipe},
        "attempt": 1,
        "timeout_seconds": 60,
        **overrides,
    }
    return AttemptSpec.model_validate(data)


def worker_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8", **extra}


def run_worker(tmp_path: Path, spec_text: str, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    spec_file, output = tmp_path / "spec.json", tmp_path / "out" / "result.json"
    spec_file.write_text(spec_text)
    argv = [sys.executable, "-m", "leviathan_lib.worker", "--spec", str(spec_file), "--output", str(output)]
    proc = subprocess.run(
        [*argv, "--workspace", str(tmp_path / "ws")], env=worker_env(**env), capture_output=True, text=True
    )
    return proc, output


@pytest.fixture
def target(tmp_path: Path) -> tuple[Path, str]:
    return make_target_repo(tmp_path)


def attempt(tmp_path: Path, spec: AttemptSpec) -> AttemptResult:
    """In-process run, for the cases where the subprocess boundary adds nothing."""
    return run_attempt(spec, tmp_path / "ws")


def apply_on_fresh_clone(tmp_path: Path, repo: Path, sha: str, patch: str) -> Path:
    clone = tmp_path / "verify"
    git("clone", "--quiet", str(repo), str(clone))
    git("checkout", "--quiet", "--detach", sha, cwd=clone)
    subprocess.run(["git", "apply", "--check", "-"], cwd=clone, env=GIT_ENV, input=patch.encode(), check=True)
    subprocess.run(["git", "apply", "-"], cwd=clone, env=GIT_ENV, input=patch.encode(), check=True)
    return clone


def test_recipe_patch_applies_cleanly_on_a_fresh_clone(tmp_path, target):
    repo, sha = target
    proc, output = run_worker(tmp_path, make_spec(repo, sha).model_dump_json())
    assert proc.returncode == 0, proc.stderr
    result = result_from_json(output.read_text())
    assert result.outcome == "succeeded", result.error
    assert result.base_sha == sha
    assert result.changed_paths == ["docs/quickstart.md"]
    assert "diff --git a/docs/quickstart.md b/docs/quickstart.md" in result.patch
    assert result.patch.count("diff --git") == 1
    step = result.executor["steps"][0]
    assert result.executor["recipe"] == "write-quickstart"
    assert step["argv"] == ["python3", ".leviathan/recipes/actions.py", "quickstart"]
    assert step["exit_code"] == 0
    assert result.started_at <= result.finished_at

    clone = apply_on_fresh_clone(tmp_path, repo, sha, result.patch)
    assert (clone / "docs/quickstart.md").read_text() == "# Write the quickstart\n\nstyle: short\n"
    assert git("status", "--porcelain", cwd=clone) == "?? docs/quickstart.md\n"


def test_several_steps_and_binary_files_are_in_the_patch(tmp_path, target):
    repo, sha = target
    result = attempt(tmp_path, make_spec(repo, sha, "two-files"))
    assert result.changed_paths == ["docs/a.md", "docs/sub/b.md"]
    assert [s["exit_code"] for s in result.executor["steps"]] == [0, 0]

    binary = attempt(tmp_path / "b", make_spec(repo, sha, "binary"))
    assert binary.outcome == "succeeded"
    assert "GIT binary patch" in binary.patch
    clone = apply_on_fresh_clone(tmp_path, repo, sha, binary.patch)
    assert (clone / "docs/logo.bin").read_bytes() == bytes(range(256)) * 8


@pytest.mark.parametrize(
    ("recipe", "offender"),
    [("out-of-scope", "docs2/x.md"), ("readme", "README.md"), ("rename-readme", "README.md")],
)
def test_changes_outside_the_task_scope_are_rejected(tmp_path, target, recipe, offender):
    repo, sha = target
    result = attempt(tmp_path, make_spec(repo, sha, recipe))
    assert result.outcome == "failed"
    assert result.error.code == "scope_violation"
    assert offender in result.error.message
    assert offender in result.changed_paths
    assert result.patch == ""


def test_a_symlink_is_rejected_even_inside_the_scope(tmp_path, target):
    repo, sha = target
    result = attempt(tmp_path, make_spec(repo, sha, "symlink"))
    assert result.error.code == "scope_violation"
    assert "'docs/link.md' is a symlink" in result.error.message


def test_task_scope_is_narrower_than_the_target(tmp_path, target):
    repo, sha = target
    narrow = make_spec(repo, sha, "two-files", task={"allowed_paths": ["docs/a.md"]})
    result = attempt(tmp_path, narrow)
    assert result.error.code == "scope_violation"
    assert "docs/sub/b.md" in result.error.message
    assert "'docs/a.md'" not in result.error.message

    nothing = make_spec(repo, sha, task={"allowed_paths": ["src/"]})
    result = attempt(tmp_path / "n", nothing)
    assert result.error.code == "scope_violation"
    assert result.executor == {}  # refused before anything ran


def test_unknown_recipe(tmp_path, target):
    repo, sha = target
    result = attempt(tmp_path, make_spec(repo, sha, "no-such-recipe"))
    assert result.error.code == "recipe_unknown"
    assert "'no-such-recipe'" in result.error.message
    assert "write-quickstart" in result.error.message


def test_failing_step_stops_the_recipe(tmp_path, target):
    repo, sha = target
    result = attempt(tmp_path, make_spec(repo, sha, "failing"))
    assert result.outcome == "failed"
    assert result.error.code == "recipe_failed"
    assert "step 2 of 3" in result.error.message
    assert "exited with 3" in result.error.message
    assert [s["exit_code"] for s in result.executor["steps"]] == [0, 3]
    assert result.executor["steps"][1]["stderr_tail"] == "about to fail\n"


def test_missing_program_is_a_recipe_failure(tmp_path, target):
    repo, sha = target
    result = attempt(tmp_path, make_spec(repo, sha, "missing-program"))
    assert result.error.code == "recipe_failed"
    assert "not found on PATH" in result.error.message


def test_no_changes(tmp_path, target):
    repo, sha = target
    result = attempt(tmp_path, make_spec(repo, sha, "noop"))
    assert result.error.code == "no_changes"
    assert result.changed_paths == []


def test_patch_too_large(tmp_path, target):
    repo, sha = target
    result = attempt(tmp_path, make_spec(repo, sha, "big", max_patch_bytes=1000))
    assert result.error.code == "patch_too_large"
    assert "limit is 1000" in result.error.message
    assert result.patch == ""


def test_unknown_commit_is_a_clone_failure(tmp_path, target):
    repo, _ = target
    result = attempt(tmp_path, make_spec(repo, "0" * 40))
    assert result.error.code == "clone_failed"


def test_invalid_recipes_file_names_file_and_field(tmp_path, target):
    repo, sha = target
    spec = make_spec(repo, sha, "broken")
    executor = spec.executor.model_copy(update={"recipes_path": ".leviathan/bad-recipes.yaml"})
    spec = spec.model_copy(update={"executor": executor})
    result = attempt(tmp_path, spec)
    assert result.error.code == "recipes_invalid"
    expected = ".leviathan/bad-recipes.yaml:3: recipes.broken.steps: expected an argv list"
    assert expected in result.error.message


def test_recipe_env_is_closed(tmp_path, target):
    """The parent's variables never reach a recipe, even when the worker itself has them."""
    repo, sha = target
    proc, output = run_worker(
        tmp_path, make_spec(repo, sha, "env-dump").model_dump_json(), LEVIATHAN_TEST_SECRET="hunter2"
    )
    result = result_from_json(output.read_text())
    assert result.outcome == "succeeded", result.error
    env = json.loads((apply_on_fresh_clone(tmp_path, repo, sha, result.patch) / "docs/env.json").read_text())
    assert "LEVIATHAN_TEST_SECRET" not in env
    assert "hunter2" not in result.patch
    # bwrap sets PWD (the working directory, the checkout) after its --chdir; nothing else is added.
    assert set(env) == {"PATH", "HOME", "LANG", "LEVIATHAN_TASK_ID", "LEVIATHAN_TASK_FILE", "PWD"}
    assert env["LEVIATHAN_TASK_ID"] == "docs-quickstart"
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    checkout = tmp_path / "ws" / "checkout"
    assert env["PWD"] == str(checkout)
    for name in ("HOME", "LEVIATHAN_TASK_FILE"):
        assert not Path(env[name]).is_relative_to(checkout)


def test_invalid_spec_json_still_writes_a_result(tmp_path):
    proc, output = run_worker(tmp_path, "{not json")
    assert proc.returncode == 0
    result = result_from_json(output.read_text())
    assert result.outcome == "failed"
    assert result.error.code == "invalid_spec"


def test_invalid_spec_does_not_echo_values(tmp_path, target):
    repo, sha = target
    data = json.loads(make_spec(repo, sha).model_dump_json())
    data["repo_url"] = "https://user:s3cr3t-value@example.invalid/x.git"
    proc, output = run_worker(tmp_path, json.dumps(data))
    result = result_from_json(output.read_text())
    assert result.error.code == "invalid_spec"
    assert "repo_url" in result.error.message
    assert "s3cr3t-value" not in output.read_text()


def test_spec_from_environment_variable(tmp_path, target):
    repo, sha = target
    output = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "leviathan_lib.worker", "--output", str(output)],
        env=worker_env(LEVIATHAN_ATTEMPT_SPEC=make_spec(repo, sha).model_dump_json()),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert result_from_json(output.read_text()).changed_paths == ["docs/quickstart.md"]


def test_unwritable_output_is_a_nonzero_exit(tmp_path):
    (tmp_path / "file").write_text("")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "leviathan_lib.worker",
            "--spec",
            "-",
            "--output",
            str(tmp_path / "file" / "r"),
        ],
        input="{}",
        env=worker_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "cannot write the result" in proc.stderr


def test_task_recipe_must_match_the_executor(tmp_path, target):
    repo, sha = target
    spec = make_spec(repo, sha)
    mismatched = spec.model_copy(update={"task": {**spec.task, "recipe": "two-files"}})
    result = attempt(tmp_path, mismatched)
    assert result.error.code == "invalid_spec"


def test_spec_contract_rejects_secrets_and_bad_values():
    base = {
        "spec_version": 1,
        "target_id": "demo",
        "repo_url": "/srv/repo.git",
        "commit_sha": "a" * 40,
        "task": {},
        "allowed_path_prefixes": ["docs/"],
        "executor": {"kind": "recipe", "recipe": "x"},
        "attempt": 1,
        "timeout_seconds": 10,
    }
    AttemptSpec.model_validate(base)
    for url in ("git@example.com:org/repo.git", "ssh://git@example.com/org/repo.git", "file:///srv/r.git"):
        AttemptSpec.model_validate({**base, "repo_url": url})
    bad = [
        {"repo_url": "https://x-access-token:abc@github.com/o/r.git"},
        {"repo_url": "https://ghp_token@github.com/o/r.git"},
        {"repo_url": "--upload-pack=evil"},
        {"commit_sha": "abc"},
        {"spec_version": 2},
        {"executor": {"kind": "llm", "recipe": "x"}},
        {"executor": {"kind": "recipe", "recipe": "x", "recipes_path": "../outside.yaml"}},
        {"allowed_path_prefixes": ["/etc/"]},
        {"attempt": "1"},
        {"extra": True},
    ]
    for change in bad:
        with pytest.raises(ValidationError):
            AttemptSpec.model_validate({**base, **change})


def test_result_contract_is_consistent_and_round_trips():
    now = utc_now()
    ok = AttemptResult(
        result_version=1,
        outcome="succeeded",
        error=None,
        base_sha="b" * 40,
        changed_paths=["docs/a.md"],
        patch="diff --git a/docs/a.md b/docs/a.md\n",
        executor={"kind": "recipe"},
        started_at=now,
        finished_at=now,
    )
    assert result_from_json(ok.model_dump(mode="json")) == ok  # as an XCom pull returns it
    with pytest.raises(ValidationError, match="needs an error"):
        AttemptResult.model_validate({**ok.model_dump(), "outcome": "failed"})
    with pytest.raises(ValidationError, match="no error"):
        AttemptResult.model_validate({**ok.model_dump(), "error": ErrorInfo(code="x", message="y")})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('recipes:\n  r:\n    steps: "python3 x.py"\n', "recipes.r.steps: expected an argv list"),
        ('recipes:\n  r:\n    steps:\n      - "python3 x.py"\n', "recipes.r.steps[0]: expected an argv list"),
        ('recipes:\n  r:\n    command: "make docs"\n', "recipes.r.command: expected an argv list"),
        ("recipes:\n  r:\n    steps: []\n", "recipes.r.steps: List should have at least 1 item"),
        ("recipes:\n  r:\n    steps: [[]]\n", "recipes.r.steps[0]: List should have at least 1 item"),
        ("recipes:\n  r:\n    description: x\n", "give exactly one of 'steps'"),
        ('recipes:\n  r:\n    command: ["a"]\n    steps: [["b"]]\n', "give exactly one of 'steps'"),
        (
            'recipes:\n  r:\n    command: ["a"]\n    env:\n      N: 3\n',
            "recipes.r.env.N: Input should be a valid str",
        ),
        ('recipes:\n  r:\n    command: ["a"]\n    env:\n      PATH: /x\n', "reserved"),
        ('recipes:\n  r:\n    command: ["a"]\n    shell: true\n', "recipes.r.shell: unknown key"),
        ('recipes:\n  "bad name!":\n    command: ["a"]\n', "recipes.bad name!"),
    ],
)
def test_recipes_file_problems_name_file_and_field(text, expected):
    with pytest.raises(ValidationFailed) as info:
        parse_recipes(text, ".leviathan/recipes.yaml")
    message = str(info.value)
    assert message.startswith(".leviathan/recipes.yaml:")
    assert expected in message


def test_command_is_shorthand_for_one_step():
    recipes = parse_recipes('recipes:\n  r:\n    command: ["make", "docs"]\n', "r.yaml")
    assert recipes["r"].argvs == [["make", "docs"]]
