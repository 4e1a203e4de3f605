"""``leviathan forge check``: against the spec-validating fake GitHub and real local forges."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import leviathan_lib
from leviathan_lib.forge.check import check_github, check_local
from leviathan_lib.git.runner import init_bare, run_git
from tests.fake_github import FakeGithub, connection_env

TOKEN = "ghp_FakeToken0123456789abcdefABCDEF01"
REPO = "acme/widgets"
PROJECT_ROOT = Path(leviathan_lib.__file__).resolve().parent.parent


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with FakeGithub(TOKEN) as server:
        server.add_repo(REPO, init_bare(tmp_path / "widgets.git"))
        monkeypatch.setenv("AIRFLOW_CONN_GITHUB_TEST", connection_env(server))
        yield server
        assert server.errors == [], "requests or responses outside the GitHub description"


def test_a_good_token_reports_identity_permissions_and_budget(fake):
    result = check_github(fake.repo_url(REPO), "github_test")
    assert result.ok, result.detail
    facts = "\n".join(result.facts)
    assert f"connection: github_test -> {fake.url}" in facts
    assert "repository permissions of the token: push, pull" in facts
    assert "rate limit: 4999 of 5000 requests left" in facts
    assert [(m, p) for m, p, *_ in fake.requests] == [("GET", f"/repos/{REPO}")]  # one call, uncached
    assert TOKEN not in result.model_dump_json()


@pytest.mark.parametrize(("case", "problem", "detail"), [
    ("bad_token", "bad_token", "401 Bad credentials: the token is wrong, expired or revoked"),
    ("read_only", "too_few_permissions", "cannot push: Leviathan needs 'Contents: write'"),
    ("classic_scopes", "too_few_permissions", "scopes (read:org, gist) lack public_repo or repo"),
    ("no_repo", "not_found", "404 Not Found: the repository does not exist or the token cannot see it"),
    ("archived", "read_only_repository", "acme/widgets is archived"),
    ("budget", "rate_limited", "the rate limit is used up"),
])
def test_each_refusal_says_which(fake, monkeypatch, case, problem, detail):
    if case == "bad_token":
        monkeypatch.setenv("AIRFLOW_CONN_GITHUB_TEST", connection_env(fake, "ghp_wrong"))
    elif case == "read_only":
        fake.permissions["contents"] = "read"
    elif case == "classic_scopes":
        fake.inject("GET", f"/repos/{REPO}", headers={"X-OAuth-Scopes": "read:org, gist"})
    elif case == "no_repo":
        del fake.repos[REPO]
    elif case == "archived":
        fake.repos[REPO].archived = True
    else:
        fake.rate_remaining = 1
    result = check_github(fake.repo_url(REPO), "github_test")
    assert (result.problem, result.ok) == (problem, False)
    assert detail in result.detail
    assert TOKEN not in result.model_dump_json()


def test_an_unreachable_host_and_a_missing_connection_say_so(monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_GONE", json.dumps({"conn_type": "github", "password": TOKEN,
                                                               "host": f"http://127.0.0.1:{port}"}))
    result = check_github(f"http://127.0.0.1:{port}/{REPO}.git", "github_gone")
    assert result.problem == "unreachable" and "no answer (ConnectionError)" in result.detail
    result = check_github(f"http://127.0.0.1:{port}/{REPO}.git", "no_such_connection")
    assert result.problem == "bad_connection" and "'no_such_connection'" in result.detail


def _bare_with_main(tmp_path: Path) -> Path:
    bare = init_bare(tmp_path / "target.git")
    work = tmp_path / "work"
    run_git(["init", "--quiet", "-b", "main", str(work)])
    (work / "README.md").write_text("hi\n")
    run_git(["add", "-A"], cwd=work)
    run_git(["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "one"], cwd=work)
    run_git(["push", "--quiet", str(bare), "main"], cwd=work)
    return bare


def test_the_local_forge_is_readable_and_writable_or_says_why(tmp_path):
    bare = _bare_with_main(tmp_path)
    result = check_local(str(bare), "main")
    assert result.ok, result.detail
    assert any(f.startswith("branch main: ") for f in result.facts) and not list((bare / "objects").glob(".lev*"))
    assert check_local(str(bare), "develop").detail.endswith("has no branch 'develop' (target_branch)")
    assert check_local(str(tmp_path / "nowhere.git"), "main").problem == "unreadable"
    (bare / "leviathan" / "pulls.lock").unlink()
    (bare / "leviathan" / "pulls.lock").symlink_to(tmp_path / "elsewhere")  # the records cannot be written
    result = check_local(str(bare), "main")
    assert result.problem == "unwritable" and "cannot lock" in result.detail


def _cli(targets: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "LEVIATHAN_TARGETS_DIR": str(targets)}
    return subprocess.run([sys.executable, "-m", "leviathan_lib.cli.main", "forge", "check", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_the_command_checks_a_target_by_id_and_exits_non_zero_on_a_problem(tmp_path, fake, monkeypatch):
    targets = tmp_path / "targets"
    targets.mkdir()
    bare = _bare_with_main(tmp_path)
    (targets / "loc.yaml").write_text(f"target_id: loc\ntarget_repo_url: {bare}\nforge: local\n")
    (targets / "gh.yaml").write_text(f"target_id: gh\ntarget_repo_url: {fake.repo_url(REPO)}\nforge: github\n"
                                     f"forge_conn_id: github_test\n")
    done = _cli(targets, "--target", "loc")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"local forge {bare}\n") and done.stdout.endswith("\nok\n")
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_TEST", connection_env(fake, "ghp_wrong"))
    done = _cli(targets, "--target", "gh", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert (report["ok"], report["problem"], report["forge"]) == (False, "bad_token", "github")
    done = _cli(targets, "--target", "nope")
    assert done.returncode == 2 and done.stderr == "error: no target 'nope' in the targets folder\n"
