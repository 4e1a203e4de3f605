"""The one git runner: both profiles never run what a repository, a HOME or a URL tells git to run.

Every "nothing ran" assertion is paired with a control run of plain git on the same planted repository
that does run it, so the test cannot pass because the plant was inert.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from leviathan_lib.core.errors import LeviathanError
from leviathan_lib.cycle.repo_reader import git_dir_for, read_at_branch
from leviathan_lib.git.auth import extra_header_env
from leviathan_lib.git.runner import (
    DEFAULT_TIMEOUT,
    GitError,
    GitProfile,
    branch_arg,
    hardening_args,
    init_bare,
    ls_remote_head,
    remote_arg,
    run_git,
)
from tests.fake_github import FakeGithub

PROFILES = list(GitProfile)
TOKEN = "runner-test-token-0123456789"


def plain_git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Git as a careless caller would run it (the control): no hardening options."""
    base = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def evil(tmp_path: Path, marker: Path) -> Path:
    """A program that leaves the marker behind (and prints nothing git could parse)."""
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def work_repo(tmp_path: Path) -> Path:
    """A non-bare repository with one commit on main."""
    work = tmp_path / "work"
    run_git(["init", "--quiet", "-b", "main", "--", str(work)])
    (work / "a.txt").write_text("a\n")
    run_git(["add", "--all"], cwd=work)
    run_git(["commit", "--quiet", "-m", "first"], cwd=work)
    return work


def plant_config(git_dir: Path, text: str) -> None:
    with (git_dir / "config").open("a", encoding="utf-8") as fh:
        fh.write(text)


def plant_hooks(git_dir: Path, evil: Path, *names: str) -> None:
    for name in names:
        hook = git_dir / "hooks" / name
        hook.parent.mkdir(exist_ok=True)
        hook.write_text(f"#!/bin/sh\nexec {evil}\n")
        hook.chmod(0o755)


# --- hardening: repository config --------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_planted_fsmonitor_never_runs(work_repo, evil, marker, profile):
    plant_config(work_repo / ".git", f"[core]\n\tfsmonitor = {evil}\n")
    (work_repo / "a.txt").write_text("changed\n")
    assert "a.txt" in run_git(["status", "--porcelain"], cwd=work_repo, profile=profile).stdout
    assert not marker.exists()
    plain_git("status", "--porcelain", cwd=work_repo)
    assert marker.exists()


@pytest.mark.parametrize("profile", PROFILES)
def test_planted_pager_never_runs(work_repo, evil, marker, profile):
    plant_config(work_repo / ".git", f"[core]\n\tpager = {evil}\n")
    assert "first" in run_git(["-p", "log", "--oneline"], cwd=work_repo, profile=profile).stdout
    assert not marker.exists()
    # Git only pages to a terminal: the control gets one (run_git never gives git a terminal).
    leader, follower = os.openpty()
    try:
        subprocess.run(["git", "-p", "log", "--oneline"], cwd=work_repo, stdout=follower, stderr=follower,
                       env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", "TERM": "dumb"}, timeout=30)
    finally:
        os.close(leader)
        os.close(follower)
    assert marker.exists()


@pytest.mark.parametrize("profile", PROFILES)
def test_planted_ssh_command_never_runs(work_repo, evil, marker, profile):
    plant_config(work_repo / ".git", f"[core]\n\tsshCommand = {evil}\n")
    url = "ssh://git@127.0.0.1:1/o/r.git"  # port 1: the real ssh is refused at once
    with pytest.raises(GitError):
        run_git(["ls-remote", "--", url], cwd=work_repo, profile=profile, timeout=30)
    assert not marker.exists()
    plain_git("ls-remote", "--", url, cwd=work_repo)
    assert marker.exists()


@pytest.mark.parametrize("profile", PROFILES)
def test_planted_credential_helper_never_runs(tmp_path, work_repo, evil, marker, profile):
    bare = init_bare(tmp_path / "served.git")
    plant_config(work_repo / ".git", f"[credential]\n\thelper = !{evil}\n")
    with FakeGithub(TOKEN) as fake:
        fake.add_repo("acme/r", bare)
        url = fake.repo_url("acme/r")
        with pytest.raises(GitError):  # 401 and nobody to ask: fails instead of running the helper
            run_git(["ls-remote", "--", url], cwd=work_repo, profile=profile)
        assert not marker.exists()
        plain_git("ls-remote", "--", url, cwd=work_repo)
    assert marker.exists()


@pytest.mark.parametrize("profile", PROFILES)
def test_planted_hooks_never_run(work_repo, evil, marker, profile):
    plant_hooks(work_repo / ".git", evil, "reference-transaction", "pre-commit", "post-commit",
                "post-index-change", "post-checkout")
    (work_repo / "b.txt").write_text("b\n")
    run_git(["add", "--all"], cwd=work_repo, profile=profile)
    run_git(["commit", "--quiet", "-m", "second"], cwd=work_repo, profile=profile)
    run_git(["checkout", "--quiet", "-b", "other"], cwd=work_repo, profile=profile)
    assert not marker.exists()
    plain_git("update-ref", "refs/heads/probe", "HEAD", cwd=work_repo)
    assert marker.exists()


def test_callers_home_and_global_config_are_never_read(tmp_path, monkeypatch, evil, marker):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[alias]\n\tst = !{evil}\n[core]\n\tpager = {evil}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    with pytest.raises(GitError) as info:
        run_git(["st"])
    assert "is not a git command" in info.value.stderr
    assert not marker.exists()
    plain_git("st", env={"HOME": str(home)})
    assert marker.exists()


# --- transports ----------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_ext_and_fd_transports_are_refused_even_when_passed_directly(tmp_path, marker, profile):
    ext = f"ext::sh -c touch% {marker}"
    for url in (ext, "fd::0"):
        with pytest.raises(GitError, match="not allowed|unsupported"):
            run_git(["ls-remote", "--", url], cwd=tmp_path, profile=profile)
    assert not marker.exists()
    plain_git("-c", "protocol.ext.allow=always", "ls-remote", "--", ext, cwd=tmp_path)
    assert marker.exists()


def test_option_shaped_urls_are_refused_before_git_runs(tmp_path, marker):
    for url in (f"--upload-pack=touch {marker}", f"ext::sh -c touch% {marker}", "host:path"):
        with pytest.raises(GitError) as info:
            ls_remote_head(url, "main")
        assert info.value.code == "git_refused"
        with pytest.raises(GitError):
            remote_arg(url)
    with pytest.raises(GitError) as info:
        branch_arg("--upload-pack=x")
    assert info.value.code == "git_refused"
    assert not marker.exists()


def test_a_dash_url_after_double_dash_is_a_path_not_an_option(tmp_path, marker):
    """Even unvalidated, ``--`` keeps an ``--upload-pack=`` value from being parsed as an option."""
    with pytest.raises(GitError, match="strange pathname|does not appear to be a git repository"):
        run_git(["ls-remote", "--", f"--upload-pack=touch {marker}"], cwd=tmp_path)
    assert not marker.exists()


# --- timeouts and errors -------------------------------------------------------------------------

def test_every_profile_has_a_default_timeout_and_the_hardening():
    for profile in PROFILES:
        assert DEFAULT_TIMEOUT[profile] > 0
        pairs = hardening_args(profile)[1::2]
        assert {"core.hooksPath=/dev/null", "core.fsmonitor=false", "protocol.allow=never", "credential.helper=",
                "protocol.https.allow=always", "protocol.file.allow=always"} <= set(pairs)
        assert not [p for p in pairs if p.startswith(("protocol.ext.", "protocol.fd."))]
    assert "core.quotePath=false" in hardening_args(GitProfile.UNTRUSTED_WORKSPACE)


@pytest.mark.parametrize("profile", PROFILES)
def test_timeout_kills_git_and_what_it_started(tmp_path, profile):
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(GitError) as info:
        run_git(["-c", f"alias.nap=!echo $$ > {pid_file}; sleep 30", "nap"], profile=profile, timeout=0.5)
    assert time.monotonic() - started < 10
    err = info.value
    assert isinstance(err, LeviathanError)
    assert err.code == "git_timeout" and "timed out after 0.5s" in err.message
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the shell git started (pid {pid}) outlived the timeout")


def test_failures_carry_code_git_failed(tmp_path):
    with pytest.raises(GitError) as info:
        run_git(["rev-parse", "--verify", "nope"], cwd=init_bare(tmp_path / "r.git"))
    assert info.value.code == "git_failed"
    assert info.value.message == str(info.value)


# --- the mirror ----------------------------------------------------------------------------------

def test_a_planted_mirror_runs_nothing_and_is_reset_before_each_fetch(tmp_path, work_repo, evil, marker):
    """A mirror someone wrote to (hooks, config, alternates) is fetched into with none of it trusted."""
    bare = tmp_path / "served.git"
    run_git(["clone", "--quiet", "--bare", "--", str(work_repo), str(bare)])
    cache = tmp_path / "cache"
    with FakeGithub(TOKEN) as fake:
        fake.add_repo("acme/r", bare)
        url = fake.repo_url("acme/r")
        env = extra_header_env(url, TOKEN)
        first = read_at_branch(url, "main", "a.txt", cache_dir=cache, env=env)
        mirror = git_dir_for(url, cache)
        plant_hooks(mirror, evil, "reference-transaction", "post-update", "pre-auto-gc")
        plant_config(mirror, f"[core]\n\tfsmonitor = {evil}\n\tpager = {evil}\n\tsshCommand = {evil}\n"
                             f"[credential]\n\thelper = !{evil}\n[include]\n\tpath = {tmp_path / 'more'}\n"
                             f'[remote "{url}"]\n\tuploadpack = {evil}\n')  # fmt: skip
        (mirror / "objects" / "info" / "alternates").write_text(str(tmp_path / "elsewhere" / "objects") + "\n")
        (work_repo / "a.txt").write_text("second\n")
        run_git(["commit", "--quiet", "-am", "second"], cwd=work_repo)
        run_git(["push", "--quiet", "--", str(bare), "main:refs/heads/main"], cwd=work_repo)
        again = read_at_branch(url, "main", "a.txt", cache_dir=cache, env=env)
        assert not marker.exists()
        assert again.text() == "second\n" and again.commit_sha != first.commit_sha
        assert "uploadpack" not in (mirror / "config").read_text()
        assert not (mirror / "objects" / "info" / "alternates").exists()
        plain_git("--git-dir", str(mirror), "update-ref", "refs/heads/probe", again.commit_sha)
    assert marker.exists()
