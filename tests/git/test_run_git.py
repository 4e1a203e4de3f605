"""The shared git runner: minimal environment, fixed identity, one error type."""

from __future__ import annotations

import pytest

from leviathan_lib.git.runner import GitError, git_env, init_bare, ls_remote_head, rev_parse, run_git


def _commit(repo, message: str, parent: str | None = None) -> str:
    tree = run_git(["mktree"], cwd=repo, input=b"").stdout.strip()
    parents = ["-p", parent] if parent else []
    return run_git(["commit-tree", tree, *parents, "-m", message], cwd=repo).stdout.strip()


@pytest.fixture
def bare(tmp_path):
    return init_bare(tmp_path / "r.git")


def test_environment_does_not_leak_caller_variables(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    seen = run_git(["-c", "alias.showenv=!env", "showenv"]).stdout
    assert "secret" not in seen
    assert "GIT_TERMINAL_PROMPT=0" in seen
    assert "GIT_CONFIG_NOSYSTEM=1" in seen
    assert "LANG=C" in seen


def test_git_env_never_uses_the_callers_home_and_adds_extra(monkeypatch):
    monkeypatch.setenv("HOME", "/somewhere")
    env = git_env({"GIT_DIR": "/x"})
    assert env["HOME"] == "/nonexistent"
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_DIR"] == "/x"
    assert git_env(home="/w/home")["HOME"] == "/w/home"


def test_commits_use_the_leviathan_identity(bare):
    sha = _commit(bare, "first")
    who = run_git(["log", "-1", "--format=%an <%ae>|%cn <%ce>", sha], cwd=bare).stdout.strip()
    assert who == "Leviathan <leviathan@localhost>|Leviathan <leviathan@localhost>"


def test_failure_raises_git_error_with_details(bare):
    with pytest.raises(GitError) as info:
        run_git(["rev-parse", "--verify", "no-such-rev"], cwd=bare)
    err = info.value
    assert err.argv[:2] == ["git", "rev-parse"]
    assert err.returncode == 128
    assert "fatal" in err.stderr
    assert "git rev-parse failed (exit 128)" in str(err)


def test_check_false_returns_the_exit_code(bare):
    proc = run_git(["rev-parse", "--verify", "--quiet", "nope"], cwd=bare, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""


def test_bytes_output(bare):
    blob = run_git(["hash-object", "-w", "--stdin"], cwd=bare, input=b"\xff\x00raw").stdout.strip()
    assert run_git(["cat-file", "blob", blob], cwd=bare, text=False).stdout == b"\xff\x00raw"


def test_timeout_raises_git_error():
    with pytest.raises(GitError, match="timed out"):
        run_git(["-c", "alias.nap=!sleep 3", "nap"], timeout=0.3)


def test_git_error_redacts_credentials_in_urls():
    err = GitError(["git", "fetch"], 128, "fatal: unable to access 'https://user:tok3n@example.com/r.git/'")
    assert "tok3n" not in err.stderr
    assert "tok3n" not in str(err)
    assert "https://***@example.com/r.git/" in err.stderr


def test_init_bare_and_rev_parse(bare):
    assert run_git(["symbolic-ref", "HEAD"], cwd=bare).stdout.strip() == "refs/heads/main"
    assert run_git(["rev-parse", "--is-bare-repository"], cwd=bare).stdout.strip() == "true"
    sha = _commit(bare, "first")
    run_git(["update-ref", "refs/heads/main", sha], cwd=bare)
    assert rev_parse(bare, "main") == sha
    with pytest.raises(GitError):
        rev_parse(bare, "missing")


def test_init_bare_other_default_branch(tmp_path):
    repo = init_bare(tmp_path / "t.git", default_branch="trunk")
    assert run_git(["symbolic-ref", "HEAD"], cwd=repo).stdout.strip() == "refs/heads/trunk"


def test_ls_remote_head(bare, tmp_path):
    first = _commit(bare, "first")
    second = _commit(bare, "second", first)
    run_git(["update-ref", "refs/heads/main", first], cwd=bare)
    # A ref whose name merely ends in "main" must not be mistaken for main.
    run_git(["update-ref", "refs/heads/agent/x/main", second], cwd=bare)
    assert ls_remote_head(str(bare), "main") == first
    assert ls_remote_head(bare.as_uri(), "agent/x/main") == second
    assert ls_remote_head(str(bare), "absent") is None
    with pytest.raises(GitError):
        ls_remote_head(str(tmp_path / "nowhere.git"), "main")
