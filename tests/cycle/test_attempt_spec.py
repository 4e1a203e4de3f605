"""The worker's source on a machine that shares no disk with ``plan``'s: it fetches the pinned commit itself.

On a CeleryExecutor (or any multi-machine executor) ``plan`` and ``run_worker`` may run on different
workers, so the mirror ``plan`` fetched is not there. These tests read with one cache (``plan``'s
machine) and build the spec with another, empty one (``run_worker``'s), against the fake GitHub.
"""

from __future__ import annotations

import pytest

from leviathan_lib.core.config import load_target
from leviathan_lib.cycle.attempt_spec import attempt_spec, worker_source
from leviathan_lib.cycle.check import check_cycle
from leviathan_lib.cycle.read import forge_git_env, read_with_forge_auth
from leviathan_lib.cycle.repo_reader import PINNED_REF_PREFIX, PINNED_REFS_KEPT, RepoUnreachable, fetch_commit
from leviathan_lib.demo import create_demo_target
from leviathan_lib.evidence.records import History, Ledger
from leviathan_lib.git.runner import run_git
from leviathan_lib.worker.backends.local import run_local_worker
from tests.airflow_helpers import commit_file
from tests.fake_github import FakeGithub, connection_env

TOKEN = "ghp_" + "SpecSecret0123456789abcdefABCDEFghij"  # built: no literal token in the repository


@pytest.fixture
def github(tmp_path, monkeypatch):
    """A demo target served by the fake GitHub, read by ``plan`` into the cache of "machine A"."""
    target_file = create_demo_target(tmp_path, target_id="spec")
    bare = tmp_path / "repos" / "spec.git"
    with FakeGithub(TOKEN) as fake:
        fake.add_repo("acme/widgets", bare)
        url = fake.repo_url("acme/widgets")
        target_file.write_text(target_file.read_text().replace(f"target_repo_url: {bare}", f"target_repo_url: {url}")
                               .replace("forge: local", "forge: github\nforge_conn_id: github_test"))
        monkeypatch.setenv("AIRFLOW_CONN_GITHUB_TEST", connection_env(fake))
        target = load_target(target_file)
        read = read_with_forge_auth(target, url, tmp_path / "machine-a", as_of=None)
        assert read.error is None, read.error
        yield target, read, bare, url
        assert fake.errors == []


def test_a_worker_on_another_machine_fetches_the_pinned_commit_into_its_own_empty_cache(github, tmp_path):
    target, read, bare, url = github
    # A human pushes after plan pinned its commit: the worker must still run on the pinned one.
    commit_file(bare, tmp_path / "human", "docs/other.md", "later\n", "a later human commit")
    guard = check_cycle(target, read, history=History(), ledger=Ledger(), run_id="r1", repo_url=url,
                        global_autonomy=True)
    assert guard.attempt is not None
    machine_b = tmp_path / "machine-b"
    spec = attempt_spec(read, target, guard.attempt, machine_b, git_env=forge_git_env(target, url))
    assert spec.repo_url.startswith(str(machine_b)) and spec.commit_sha == read.commit_sha
    pinned = run_git(["--git-dir", spec.repo_url, "rev-parse", PINNED_REF_PREFIX + read.commit_sha]).stdout
    assert pinned.strip() == read.commit_sha
    result = run_local_worker(spec, workspace_root=tmp_path / "ws")
    assert result.outcome == "succeeded", result.error
    assert result.base_sha == read.commit_sha and result.changed_paths == ["docs/quickstart.md"]


def test_a_commit_the_remote_does_not_have_is_unreachable_not_a_traceback(github, tmp_path):
    target, read, _, url = github
    missing = read.model_copy(update={"commit_sha": "0" * 40})
    with pytest.raises(RepoUnreachable, match="cannot fetch commit 000000000000"):
        worker_source(target, missing, tmp_path / "machine-b", git_env=forge_git_env(target, url))
    with pytest.raises(RepoUnreachable, match="not a pinned commit id"):
        fetch_commit(url, "--upload-pack=evil", tmp_path / "machine-b")


def test_without_the_forge_credentials_the_fetch_fails_closed(github, tmp_path):
    target, read, _, _ = github
    with pytest.raises(RepoUnreachable, match="cannot fetch commit"):
        worker_source(target, read, tmp_path / "machine-b", git_env=None)


def test_a_mirror_keeps_a_bounded_number_of_pinned_commits(github, tmp_path):
    _, read, bare, url = github
    env = forge_git_env(load_target(tmp_path / "targets" / "spec.yaml"), url)
    shas = [read.commit_sha]
    for n in range(PINNED_REFS_KEPT + 2):
        commit_file(bare, tmp_path / "human", "docs/other.md", f"{n}\n", f"commit {n}")
        shas.append(run_git(["rev-parse", "HEAD"], cwd=tmp_path / "human").stdout.strip())
    for sha in shas:
        mirror = fetch_commit(url, sha, tmp_path / "machine-b", env=env)
    refs = run_git(["--git-dir", str(mirror), "for-each-ref", "--format=%(refname)", PINNED_REF_PREFIX]).stdout.split()
    assert len(refs) == PINNED_REFS_KEPT and PINNED_REF_PREFIX + shas[-1] in refs
