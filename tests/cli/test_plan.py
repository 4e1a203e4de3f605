"""``leviathan plan`` (and ``validate`` on hostile input) as a user runs them: real subprocesses, real git
repositories. The rest of ``validate`` and ``schema``: ``test_validate.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from leviathan_lib.git.runner import git_env

ROOT = Path(__file__).resolve().parents[2]
ORIGINAL = Path(__file__).resolve().parents[1] / "fixtures" / "original"
BACKLOG = ORIGINAL / "backlog.yaml"
# Tests use the same closed git environment as the code, with no user or global config.
GIT_ENV = git_env({"HOME": "/nonexistent", "GIT_CONFIG_GLOBAL": os.devnull})


def leviathan(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", *map(str, args)],
                            capture_output=True, text=True, env=env, cwd=cwd or ROOT, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def dev_target(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((ORIGINAL / "dev.yaml").read_text())
    data.update(changes)
    return write(tmp_path / "target.yaml", {k: v for k, v in data.items() if v is not None})


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


# --- plan -------------------------------------------------------------------------------------

def plan_doc(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_plan_original_files_autonomy_missing_means_off():
    result = leviathan("plan", "--config", ORIGINAL / "dev.yaml", "--backlog", BACKLOG)
    doc = plan_doc(result)
    assert doc["decision"] == "skip" and doc["task_id"] is None
    assert doc["reasons"] == ["autonomy_disabled"]
    # As the DAG judges them: the ready tasks name no recipe and the target's executor is 'recipe'.
    assert {t["id"]: t["reasons"] for t in doc["tasks"]} == {
        "docs-self-target": ["invalid_task"],
        "readme-autonomy-badge": ["invalid_task"],
        "docs-architecture": ["not_ready", "dependencies_incomplete"],
        "docs-runbook": ["not_ready", "dependencies_incomplete"],
        "leviathan-task-template": ["not_ready", "dependencies_incomplete"],
    }


def test_plan_original_backlog_with_autonomy_on_runs_the_docs_task(tmp_path):
    target = dev_target(tmp_path, autonomy_enabled=True, executor="llm")
    result = leviathan("plan", "--config", target, "--backlog", ORIGINAL / "backlog.yaml")
    doc = plan_doc(result)
    assert list(doc) == ["target_id", "decision", "task_id", "reasons", "checks", "tasks"]
    assert (doc["target_id"], doc["decision"], doc["task_id"], doc["reasons"]) == (
        "radix", "run", "docs-self-target", [])
    assert [c["name"] for c in doc["checks"]] == ["autonomy", "forge_state", "open_prs", "prs_per_hour",
                                                  "circuit_breaker", "task_selection", "budgets"]
    assert all(c["passed"] for c in doc["checks"])
    assert doc["checks"][-1]["detail"].startswith("task docs-self-target (definition ")
    assert doc["checks"][-1]["detail"].endswith(": 0 of 2 failed attempt(s) (max_attempts_per_task), "
                                                "0 of 5 review round(s) (max_review_rounds)")
    assert result.stdout.startswith('{\n  "target_id": "radix"')  # indent 2


def test_plan_with_state_file(tmp_path):
    target = dev_target(tmp_path, autonomy_enabled=True, executor="llm")
    state = write(tmp_path / "state.json", json.dumps({
        "autonomy_enabled": True,
        "open_prs": [{"number": 12, "branch": "agent/docs-self-target/1", "task_id": "docs-self-target"}],
        "attempts": [
            {"task_id": "docs-self-target", "outcome": "failed", "finished_at": "2025-01-01T10:00:00Z"},
        ],
        "breaker_reset_at": None,
    }))
    doc = plan_doc(leviathan("plan", "--config", target, "--backlog", BACKLOG, "--state", state))
    assert doc["reasons"] == ["open_pr_limit"]
    assert doc["tasks"][0]["reasons"] == ["pr_open_for_task"]
    assert doc["checks"][2]["detail"] == "1 open agent/ PR(s), limit 1"


def test_plan_global_switch_and_unknown_forge(tmp_path):
    target = dev_target(tmp_path, autonomy_enabled=True)
    state = write(tmp_path / "state.json", '{"autonomy_enabled": false, "open_prs": null}')
    doc = plan_doc(leviathan("plan", "--config", target, "--backlog", BACKLOG, "--state", state))
    assert doc["reasons"] == ["autonomy_disabled", "forge_state_unknown"]


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ('{"autonomy_enabled": "yes"}', "autonomy_enabled"),
        ('{"open_prs": [{"number": 1.5, "branch": "agent/a/1"}]}', "open_prs[0].number"),
        ('{"attempts": [{"task_id": "a", "outcome": "failed", "finished_at": "2025-01-01"}]}',
         "attempts[0].finished_at"),
        ('{"breaker_reset_at": "soon"}', "breaker_reset_at"),
    ],
)
def test_plan_rejects_bad_state_naming_file_and_field(tmp_path, state, field):
    target = dev_target(tmp_path, autonomy_enabled=True)
    path = write(tmp_path / "state.json", state)
    result = leviathan("plan", "--config", target, "--backlog", ORIGINAL / "backlog.yaml", "--state", path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert error_lines(result)[0].startswith(f"error: {path}: {field}:")


def test_plan_reports_invalid_tasks_instead_of_failing(tmp_path):
    target = dev_target(tmp_path, autonomy_enabled=True, executor="llm")
    backlog = write(tmp_path / "b.yaml", {"tasks": [
        {"id": "broken", "title": "B", "ready": "true", "allowed_paths": ["docs/a.md"]},
        {"title": "no id"},
        {"id": "good", "title": "G", "ready": True, "allowed_paths": ["docs/g.md"]},
    ]})
    result = leviathan("plan", "--config", target, "--backlog", backlog)
    doc = plan_doc(result)
    assert doc["task_id"] == "good"
    assert doc["tasks"][:2] == [{"id": "broken", "eligible": False, "reasons": ["invalid_task"]},
                                {"id": "#1", "eligible": False, "reasons": ["invalid_task"]}]
    assert f"warning: {backlog}:4: task 'broken': ready: Input should be a valid boolean (got str) " \
           "(task reported as invalid_task)" in result.stderr.splitlines()


@pytest.mark.parametrize("content", ["tasks: [\n", "not_tasks: []\n", "tasks: 5\n"])
def test_plan_file_level_backlog_problem_is_an_error(tmp_path, content):
    target = dev_target(tmp_path, autonomy_enabled=True)
    backlog = write(tmp_path / "b.yaml", content)
    result = leviathan("plan", "--config", target, "--backlog", backlog)
    assert result.returncode == 2 and result.stdout == ""
    assert error_lines(result)[0].startswith(f"error: {backlog}")


def test_plan_rejects_bad_target_config(tmp_path):
    target = dev_target(tmp_path, autonomy_enabled="false")
    result = leviathan("plan", "--config", target, "--backlog", ORIGINAL / "backlog.yaml")
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {target}:17: autonomy_enabled: Input should be a valid boolean (got str 'false')"
    ]


# --- plan reading the backlog from the target repository -------------------------------------

def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    """A bare target repository whose main branch holds the original backlog."""
    work = tmp_path / "work"
    (work / ".leviathan").mkdir(parents=True)
    # As the DAG would run it: every task names a recipe that .leviathan/recipes.yaml defines.
    backlog = yaml.safe_load((ORIGINAL / "backlog.yaml").read_text())
    for task in backlog["tasks"]:
        task["recipe"] = "noop"
    write(work / ".leviathan" / "backlog.yaml", backlog)
    write(work / ".leviathan" / "recipes.yaml", {"recipes": {"noop": {"steps": [["true"]]}}})
    git(work, "-c", "init.defaultBranch=main", "init", "-q")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "backlog")
    bare = tmp_path / "radix.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare


@pytest.mark.parametrize("url_form", ["absolute", "file_url", "relative"])
def test_plan_reads_backlog_from_branch_tip(tmp_path, bare_repo, url_form):
    url = {"absolute": str(bare_repo), "file_url": bare_repo.as_uri(), "relative": "radix.git"}[url_form]
    target = dev_target(tmp_path, autonomy_enabled=True, target_repo_url=url)
    doc = plan_doc(leviathan("plan", "--config", target, cwd=ROOT / "tests"))
    assert doc["decision"] == "run" and doc["task_id"] == "docs-self-target"
    assert len(doc["tasks"]) == 5


def test_plan_from_the_repository_checks_recipes_as_the_dag_does(tmp_path, bare_repo):
    work = tmp_path / "work"
    git(work, "rm", "-q", ".leviathan/recipes.yaml")
    git(work, "commit", "-q", "-m", "drop recipes")
    git(work, "push", "-q", str(bare_repo), "HEAD:main")
    target = dev_target(tmp_path, autonomy_enabled=True, target_repo_url=str(bare_repo))
    doc = plan_doc(leviathan("plan", "--config", target))
    assert doc["decision"] == "skip" and doc["reasons"] == ["no_eligible_task"]
    ready = {t["id"]: t["reasons"] for t in doc["tasks"]}
    assert ready["docs-self-target"] == ["invalid_task"]


def test_plan_reads_the_configured_branch_and_backlog_path(tmp_path, bare_repo):
    work = tmp_path / "work"
    git(work, "checkout", "-q", "-b", "develop")
    (work / "plan").mkdir()
    write(work / "plan" / "tasks.yaml",
          {"tasks": [{"id": "other", "title": "O", "ready": True, "allowed_paths": ["docs/o.md"],
                      "recipe": "noop"}]})
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "develop")
    git(work, "push", "-q", str(bare_repo), "develop")
    target = dev_target(tmp_path, autonomy_enabled=True, target_repo_url=str(bare_repo),
                        target_branch="develop", backlog_path="plan/tasks.yaml")
    doc = plan_doc(leviathan("plan", "--config", target))
    assert doc["task_id"] == "other"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_repo_url": "/nonexistent/repo.git"}, "cannot read the target repository"),
        ({"target_branch": "no-such-branch"}, "cannot read the target repository"),
        ({"backlog_path": "missing/backlog.yaml"}, "no backlog at commit"),
    ],
)
def test_plan_unreadable_repository_is_a_clear_error(tmp_path, bare_repo, changes, message):
    target = dev_target(tmp_path, autonomy_enabled=True, **{"target_repo_url": str(bare_repo), **changes})
    result = leviathan("plan", "--config", target)
    assert result.returncode == 2 and result.stdout == ""
    assert len(error_lines(result)) == 1 and message in error_lines(result)[0], result.stderr


def test_plan_not_a_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    target = dev_target(tmp_path, autonomy_enabled=True, target_repo_url=str(tmp_path / "plain"))
    result = leviathan("plan", "--config", target)
    assert result.returncode == 2
    assert "cannot read the target repository" in result.stderr


# --- never a traceback ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "args",
    [
        [],
        ["plan"],
        ["plan", "--config", "/nonexistent.yaml", "--backlog", "/nonexistent.yaml"],
        ["plan", "--config", str(ORIGINAL / "backlog.yaml"), "--backlog", str(ORIGINAL / "backlog.yaml")],
        ["plan", "--config", str(ORIGINAL / "dev.yaml"), "--backlog", str(ORIGINAL / "dev.yaml")],
        ["plan", "--config", str(ORIGINAL / "dev.yaml"), "--backlog", str(ORIGINAL / "backlog.yaml"),
         "--state", str(ORIGINAL / "dev.yaml")],
        ["plan", "--config", str(ORIGINAL)],
    ],
)
def test_bad_invocations_exit_2_without_traceback(args):
    result = leviathan(*args)
    assert result.returncode == 2
    assert result.stderr.strip()


def test_plan_never_prints_credentials_from_the_repository_url(tmp_path):
    secret = "hunter2" + "token"
    target = dev_target(tmp_path, autonomy_enabled=True, target_repo_url=f"http://user:{secret}@127.0.0.1:9/r.git")
    result = leviathan("plan", "--config", target)
    assert result.returncode == 2
    # Refused by the config validation, before git (or any output) ever sees the URL.
    assert "target_repo_url: not a repository URL git may be given: must not contain credentials" in result.stderr
    assert secret not in result.stderr + result.stdout


# --- hostile repository URLs and branches: validated, never executed ----------------------------

HOSTILE_URLS = [
    ("--upload-pack=touch {marker}", "must not start with '-'"),
    ("--upload-pack=touch${{IFS}}{marker}", "must not start with '-'"),
    ("ext::sh -c touch% {marker}", "'<transport>::' addresses"),
    ("ext::sh${{IFS}}-c${{IFS}}touch%${{IFS}}{marker}", "'<transport>::' addresses"),
    ("fd::3", "'<transport>::' addresses"),
    ("host:{marker}", "ambiguous"),
    ("https://example.com/o/r.git\n--upload-pack=x", "control characters"),
    ("https://tok3n@example.com/o/r.git", "must not contain credentials"),
]


@pytest.mark.parametrize(("url", "reason"), HOSTILE_URLS)
def test_validate_and_plan_refuse_hostile_repository_urls(tmp_path, url, reason):
    marker = tmp_path / "pwned"
    value = url.format(marker=marker).replace("\\n", "\n")
    target = write(tmp_path / "t.yaml", {"target_id": "demo", "target_repo_url": value})
    validated = leviathan("validate", target)
    assert validated.returncode == 2
    [line] = error_lines(validated)
    assert line.startswith(f"error: {target}:2: target_repo_url: not a repository URL git may be given: ")
    assert reason in line
    planned = leviathan("plan", "--config", target)
    assert planned.returncode == 2 and planned.stdout == ""
    assert error_lines(planned) == [line]
    assert not marker.exists()


@pytest.mark.parametrize("branch", ["--upload-pack=x", "main:refs/heads/x", "a..b", "+main", "x.lock", "a//b"])
def test_validate_refuses_hostile_branches(tmp_path, branch):
    target = write(tmp_path / "t.yaml", {"target_id": "demo", "target_repo_url": "/srv/x.git", "target_branch": branch})
    result = leviathan("validate", target)
    assert result.returncode == 2
    [line] = error_lines(result)
    assert line.startswith(f"error: {target}:3: target_branch: ")


def test_plan_never_runs_what_a_local_repository_configures(tmp_path, bare_repo):
    """Hooks and program-running config keys in the target repository itself do nothing in ``plan``."""
    marker = tmp_path / "pwned"
    hook = f"#!/bin/sh\ntouch {marker}\n"
    for name in ("reference-transaction", "post-checkout", "pre-push", "post-update", "pre-receive"):
        (bare_repo / "hooks" / name).write_text(hook)
        (bare_repo / "hooks" / name).chmod(0o755)
    with (bare_repo / "config").open("a") as config:
        config.write(f"[core]\n\tfsmonitor = touch {marker}\n\tpager = touch {marker}\n"
                     f"\tsshCommand = touch {marker}\n[uploadpack]\n\tpackObjectsHook = touch {marker}\n"
                     f"[credential]\n\thelper = !touch {marker}\n")
    for url in (str(bare_repo), bare_repo.as_uri()):
        target = dev_target(tmp_path, autonomy_enabled=True, target_repo_url=url)
        doc = plan_doc(leviathan("plan", "--config", target))
        assert doc["decision"] == "run"
    assert not marker.exists()
    # The planted hook is live: plain git (with hooks) does run it.
    subprocess.run(["git", "--git-dir", str(bare_repo), "update-ref", "refs/heads/probe", "main"], env=GIT_ENV,
                   check=True)
    assert marker.exists()
def test_plan_from_a_repository_with_a_non_utf8_backlog_is_a_clear_error(tmp_path, bare_repo):
    work = tmp_path / "work"
    path = work / ".leviathan" / "backlog.yaml"
    path.write_bytes(path.read_bytes() + "# r\xe9sum\xe9\n".encode("latin-1"))
    git(work, "commit", "-q", "-am", "latin-1 comment")
    git(work, "push", "-q", str(bare_repo), "HEAD:main")
    target = dev_target(tmp_path, autonomy_enabled=True, target_repo_url=str(bare_repo))
    result = leviathan("plan", "--config", target)
    assert result.returncode == 2 and result.stdout == ""
    offset = len(path.read_bytes()) - len(" r\xe9sum\xe9\n".encode("latin-1")) + 2
    assert error_lines(result) == [
        f"error: {bare_repo}@main: .leviathan/backlog.yaml: cannot read file: not valid UTF-8 at byte {offset}"]
