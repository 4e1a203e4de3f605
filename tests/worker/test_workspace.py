"""A Kubernetes worker clones a private repository with a read-only token from a Secret, sent as a header;
any worker's clone is its own (no objects shared with the mirror) and git trusts nothing planted in it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from leviathan_lib.git.runner import run_git
from leviathan_lib.worker.backends.kubernetes import CLONE_TOKEN_ENV
from leviathan_lib.worker.workspace import CLONE_TOKEN_ENV as WORKER_CLONE_TOKEN_ENV
from leviathan_lib.worker.workspace import GitFailed, clone_at, collect_changes
from tests.fake_github import FakeGithub
from tests.worker.backends.test_kubernetes import base_container, k8s_target, render
from tests.worker.test_attempt import make_spec, make_target_repo

READ_TOKEN = "read-only-test-token-0123456789"


def test_pod_gets_the_clone_token_only_by_secret_reference():
    _, without = render(k8s_target())
    assert CLONE_TOKEN_ENV not in {e["name"] for e in base_container(without)["env"]}
    _, manifest = render(k8s_target(worker_clone_secret="widgets-read-token"))
    [entry] = [e for e in base_container(manifest)["env"] if e["name"] == CLONE_TOKEN_ENV]
    assert entry == {"name": CLONE_TOKEN_ENV, "valueFrom": {"secretKeyRef": {
        "name": "widgets-read-token", "key": "token", "optional": True}}}
    assert CLONE_TOKEN_ENV == WORKER_CLONE_TOKEN_ENV


def _run_worker(spec, tmp_path, token: str | None) -> dict:
    spec_file, out = tmp_path / "spec.json", tmp_path / "result.json"
    spec_file.write_text(spec.model_dump_json())
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.getcwd(), "HOME": str(tmp_path)}
    if token:
        env[CLONE_TOKEN_ENV] = token
    ws = tmp_path / f"ws-{bool(token)}"
    ws.mkdir()
    subprocess.run([sys.executable, "-m", "leviathan_lib.worker", "--spec", str(spec_file), "--output", str(out),
                    "--workspace", str(ws)], env=env, check=True, capture_output=True, timeout=120)
    return json.loads(out.read_text())


def test_worker_clones_over_https_with_the_read_token_and_fails_clearly_without(tmp_path):
    bare, sha = make_target_repo(tmp_path)
    with FakeGithub(READ_TOKEN) as fake:
        fake.add_repo("acme/private", bare)
        spec = make_spec(bare, sha, repo_url=fake.repo_url("acme/private"))
        denied = _run_worker(spec, tmp_path, token=None)
        assert denied["outcome"] == "failed" and denied["error"]["code"] == "clone_failed"
        result = _run_worker(spec, tmp_path, token=READ_TOKEN)
        assert result["outcome"] == "succeeded", result["error"]
        assert result["changed_paths"] == ["docs/quickstart.md"]
        # The token never appears in the result document (URLs, transcript, errors).
        assert READ_TOKEN not in json.dumps(result) and READ_TOKEN not in json.dumps(denied)
        assert fake.errors == []


# --- the worker's clone is its own, and what a recipe plants in it runs nothing ------------------

def _plain_git(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_clone_from_a_local_mirror_shares_no_objects_with_it(tmp_path):
    mirror, sha = make_target_repo(tmp_path)
    assert run_git(["--git-dir", str(mirror), "count-objects"]).stdout.split()[0] != "0"  # loose objects
    links_before = {p: p.stat().st_nlink for p in (mirror / "objects").rglob("*") if p.is_file()}
    home, dest = tmp_path / "home", tmp_path / "checkout"
    home.mkdir()
    clone_at(str(mirror), sha, dest, home=home)
    assert not (dest / ".git" / "objects" / "info" / "alternates").exists()
    # No hard links into the mirror either: writing the clone's objects cannot change the mirror's.
    assert {p: p.stat().st_nlink for p in links_before} == links_before
    clone_inodes = {p.stat().st_ino for p in (dest / ".git" / "objects").rglob("*") if p.is_file()}
    assert clone_inodes and clone_inodes.isdisjoint({p.stat().st_ino for p in links_before})


def test_clone_refuses_option_and_command_urls(tmp_path):
    marker = tmp_path / "pwned"
    home = tmp_path / "home"
    home.mkdir()
    for i, url in enumerate([f"--upload-pack=touch {marker}", f"ext::sh -c touch% {marker}"]):
        with pytest.raises(GitFailed) as info:
            clone_at(url, "a" * 40, tmp_path / f"dest{i}", home=home)
        assert info.value.code == "git_refused"
    assert not marker.exists()


def test_what_a_recipe_plants_in_the_checkout_runs_nothing_when_changes_are_collected(tmp_path):
    repo, sha = make_target_repo(tmp_path)
    home, checkout = tmp_path / "home", tmp_path / "checkout"
    home.mkdir()
    clone_at(str(repo), sha, checkout, home=home)
    marker, evil = tmp_path / "pwned", tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\ncat\n")
    evil.chmod(0o755)
    # What a hostile recipe can do inside its own checkout: config, attributes, hooks, alternates.
    git_dir = checkout / ".git"
    with (git_dir / "config").open("a") as config:
        config.write(f"[filter \"evil\"]\n\tclean = {evil}\n\tsmudge = {evil}\n[core]\n\tfsmonitor = {evil}\n"
                     f"[diff \"evil\"]\n\ttextconv = {evil}\n\tcommand = {evil}\n[diff]\n\texternal = {evil}\n")
    (git_dir / "info").mkdir(exist_ok=True)
    (git_dir / "info" / "attributes").write_text("* filter=evil diff=evil\n")
    for name in ("post-index-change", "reference-transaction", "pre-commit"):
        (git_dir / "hooks" / name).write_text(f"#!/bin/sh\nexec {evil}\n")
        (git_dir / "hooks" / name).chmod(0o755)
    (checkout / "docs" / "new.md").write_text("new\n")
    changes = collect_changes(checkout, sha, home=home)
    assert changes.paths == ["docs/new.md"]
    assert b"+new" in changes.patch
    assert not marker.exists()
    # The plants are live: plain git in a copy the recipe configured the same way runs them.
    plant = tmp_path / "control"
    shutil.copytree(checkout, plant, symlinks=True)
    with (plant / ".git" / "config").open("a") as config:
        config.write(f"[filter \"evil\"]\n\tclean = {evil}\n")
    (plant / "docs" / "other.md").write_text("x\n")
    _plain_git("add", "--all", cwd=plant)
    assert marker.exists()
