"""The local forge and ``leviathan forge …``, on real bare repositories."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import leviathan_lib
from leviathan_lib.forge import (
    ForgeConflict,
    ForgeError,
    LeaseLost,
    LocalForge,
    PullRequestNotFound,
    open_forge,
)
from leviathan_lib.forge.local import MAX_RECORD_BYTES
from leviathan_lib.git.runner import init_bare, rev_parse, run_git

PROJECT_ROOT = Path(leviathan_lib.__file__).resolve().parent.parent


class Target:
    """A bare repository with ``main`` (README.md, docs/a.md) and a clone to push branches from."""

    def __init__(self, root: Path):
        self.bare = init_bare(root / "target.git")
        self.work = root / "work"
        run_git(["clone", "--quiet", str(self.bare), str(self.work)])
        self.commit("main", {"README.md": "hello\n", "docs/a.md": "one\ntwo\nthree\n"}, start=None)

    def commit(self, branch: str, files: dict[str, str], start: str | None = "main") -> str:
        """Commit ``files`` on ``branch`` (created from ``start``) and push it; returns the new SHA."""
        if start is None:
            run_git(["checkout", "--quiet", "--orphan", branch], cwd=self.work)
        else:
            run_git(["fetch", "--quiet", "origin"], cwd=self.work)
            exists = rev_parse_or_none(self.bare, f"refs/heads/{branch}")
            run_git(
                ["checkout", "--quiet", "-B", branch, f"origin/{branch if exists else start}"], cwd=self.work
            )
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        run_git(["add", "--all"], cwd=self.work)
        run_git(["commit", "--quiet", "-m", f"change {branch}"], cwd=self.work)
        run_git(["push", "--quiet", "origin", f"HEAD:refs/heads/{branch}"], cwd=self.work)
        return rev_parse(self.work, "HEAD")

    def show(self, rev_path: str) -> str:
        return run_git(["show", rev_path], cwd=self.bare).stdout


def rev_parse_or_none(repo: Path, rev: str) -> str | None:
    out = run_git(["rev-parse", "--verify", "--quiet", rev], cwd=repo, check=False).stdout.strip()
    return out or None


def open_pr(forge: LocalForge, head: str, title: str = "A change"):
    return forge.create_pr(head=head, base="main", title=title, body=f"Delivers {head}.")


def leviathan(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "leviathan_lib.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=60,
    )


# -- Forge API ---------------------------------------------------------------------------------------


def test_create_get_and_list_by_prefix(target, forge):
    sha = target.commit("agent/x/1", {"docs/new.md": "new\n"})
    target.commit("feature/human", {"docs/h.md": "h\n"})

    pr = open_pr(forge, "agent/x/1", "Add new doc")
    other = open_pr(forge, "feature/human")

    assert (pr.number, pr.state, pr.head, pr.base, pr.head_sha) == (1, "open", "agent/x/1", "main", sha)
    assert pr.title == "Add new doc" and pr.body == "Delivers agent/x/1."
    assert pr.url == f"{target.bare.as_uri()}#pull/1"
    assert pr.merged_at is None and pr.closed_at is None and pr.merge_sha is None
    assert other.number == 2
    assert forge.get_pr(1) == pr
    assert [p.number for p in forge.list_open_prs()] == [1]
    assert [p.number for p in forge.list_open_prs("feature/")] == [2]
    assert [p.number for p in forge.list_open_prs("")] == [1, 2]
    stored = target.bare / "leviathan" / "pulls" / "1.json"
    assert stored.stat().st_mode & 0o777 == 0o644
    record = json.loads(stored.read_text())
    assert record["head"] == "agent/x/1" and record["state"] == "open"


def test_repo_url_default_branch_and_push_env(target, forge):
    assert forge.repo_url == target.bare.as_uri()
    assert forge.default_branch() == "main"
    assert forge.git_push_env() == {}
    # The URL really works for git.
    assert run_git(["ls-remote", forge.repo_url, "refs/heads/main"]).stdout.strip()
    assert LocalForge(forge.repo_url).path == target.bare


def test_find_by_head_newest_wins(target, forge):
    target.commit("agent/x/1", {"docs/new.md": "v1\n"})
    first = open_pr(forge, "agent/x/1")
    forge.close_pr(first.number)
    second = open_pr(forge, "agent/x/1")
    found = forge.find_pr_by_head("agent/x/1")
    assert found is not None and found.number == second.number == 2
    assert forge.find_pr_by_head("agent/none") is None


def test_create_refuses_duplicates_and_missing_branches(target, forge):
    target.commit("agent/x/1", {"docs/new.md": "new\n"})
    open_pr(forge, "agent/x/1")
    with pytest.raises(ForgeConflict, match="already has open pull request #1"):
        open_pr(forge, "agent/x/1")
    with pytest.raises(ForgeError, match="'agent/missing' does not exist"):
        open_pr(forge, "agent/missing")
    with pytest.raises(ForgeError, match="'release' does not exist"):
        forge.create_pr(head="agent/x/1", base="release", title="t", body="")
    with pytest.raises(ValueError, match="title"):
        forge.create_pr(head="agent/x/1", base="main", title="  ", body="")
    assert [p.number for p in forge.list_prs()] == [1]


def test_head_sha_follows_an_open_branch(target, forge):
    first = target.commit("agent/x/1", {"docs/new.md": "v1\n"})
    assert open_pr(forge, "agent/x/1").head_sha == first
    moved = target.commit("agent/x/1", {"docs/new.md": "v2\n"})
    assert forge.get_pr(1).head_sha == moved
    assert forge.list_open_prs()[0].head_sha == moved


def test_merge_updates_main(target, forge):
    head = target.commit("agent/x/1", {"docs/new.md": "merged content\n"})
    old_main = rev_parse(target.bare, "main")
    open_pr(forge, "agent/x/1", "Add new doc")

    merged = forge.merge(1)

    assert merged.state == "merged" and merged.merged_at is not None and merged.closed_at is not None
    assert rev_parse(target.bare, "main") == merged.merge_sha
    assert target.show("main:docs/new.md") == "merged content\n"
    assert target.show("main:README.md") == "hello\n"
    parents = run_git(["rev-list", "--parents", "-n1", "main"], cwd=target.bare).stdout.split()[1:]
    assert parents == [old_main, head]
    assert "Merge pull request #1 from agent/x/1" in target.show("main")
    assert forge.get_pr(1) == merged
    assert forge.list_open_prs() == []
    with pytest.raises(ForgeConflict, match="#1 is merged"):
        forge.merge(1)
    with pytest.raises(ForgeConflict, match="merged; it cannot be closed"):
        forge.close_pr(1)


def test_merge_conflict_changes_nothing(target, forge):
    target.commit("agent/x/1", {"docs/a.md": "one\nagent\nthree\n", "docs/ok.md": "fine\n"})
    open_pr(forge, "agent/x/1")
    main_before = target.commit("main", {"docs/a.md": "one\nhuman\nthree\n"})
    refs_before = run_git(["for-each-ref"], cwd=target.bare).stdout

    with pytest.raises(ForgeConflict, match=r"conflicts with main in: docs/a\.md$"):
        forge.merge(1)

    assert rev_parse(target.bare, "main") == main_before
    assert run_git(["for-each-ref"], cwd=target.bare).stdout == refs_before
    assert forge.get_pr(1).state == "open"


def test_close_keeps_branch_and_is_idempotent(target, forge):
    sha = target.commit("agent/x/1", {"docs/new.md": "x\n"})
    open_pr(forge, "agent/x/1")
    closed = forge.close_pr(1)
    assert closed.state == "closed" and closed.closed_at is not None and closed.merged_at is None
    assert forge.close_pr(1) == closed
    assert rev_parse(target.bare, "refs/heads/agent/x/1") == sha
    assert forge.list_open_prs() == []
    with pytest.raises(ForgeConflict, match="#1 is closed"):
        forge.merge(1)


@pytest.mark.parametrize("branch", ["main", "feature/x", "agent/", "agent", "agentx/y", "refs/heads/agent/x"])
def test_delete_branch_refuses_non_agent_branches(target, forge, branch):
    with pytest.raises(ValueError, match="refusing"):
        forge.delete_branch(branch, lease="0" * 40)
    assert rev_parse_or_none(target.bare, "refs/heads/main")


def test_delete_branch_deletes_agent_branches_on_their_lease(target, forge):
    sha = target.commit("agent/x/1", {"docs/new.md": "x\n"})
    forge.delete_branch("agent/x/1", lease=sha)
    assert rev_parse_or_none(target.bare, "refs/heads/agent/x/1") is None
    forge.delete_branch("agent/x/1", lease=sha)  # already gone: nothing to do


def test_delete_branch_keeps_a_branch_a_human_pushed_to(target, forge):
    """The delete is conditional on Leviathan's push: a human commit made after the read is never lost."""
    ours = target.commit("agent/x/1", {"docs/new.md": "x\n"})
    theirs = target.commit("agent/x/1", {"docs/new.md": "human\n"})
    with pytest.raises(LeaseLost, match=f"points at {theirs}") as exc:
        forge.delete_branch("agent/x/1", lease=ours)
    assert exc.value.code == "human_edited"
    assert rev_parse_or_none(target.bare, "refs/heads/agent/x/1") == theirs


def test_pr_not_found(forge):
    with pytest.raises(PullRequestNotFound, match="no pull request #7"):
        forge.get_pr(7)
    assert forge.list_prs() == []


def _create_prs(path: str, worker: int) -> list[int]:
    forge = LocalForge(path)
    return [open_pr(forge, f"agent/w{worker}/{i}").number for i in range(3)]


def test_concurrent_creation_allocates_distinct_sequential_numbers(target):
    heads = [f"agent/w{w}/{i}" for w in range(4) for i in range(3)]
    run_git(["push", "--quiet", "origin", *(f"main:refs/heads/{h}" for h in heads)], cwd=target.work)

    # spawn, not fork: forking a pytest process that holds other threads' locks can deadlock the child.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_create_prs, [(str(target.bare), w) for w in range(4)])

    numbers = sorted(n for r in results for n in r)
    assert numbers == list(range(1, 13))
    forge = LocalForge(target.bare)
    prs = forge.list_prs()
    assert sorted(p.head for p in prs) == sorted(heads)
    assert sorted(p.name for p in (target.bare / "leviathan" / "pulls").iterdir()) == sorted(
        f"{n}.json" for n in numbers
    )


def test_corrupt_record_fails_closed_naming_the_file(target, forge):
    target.commit("agent/x/1", {"docs/new.md": "x\n"})
    open_pr(forge, "agent/x/1")
    record = target.bare / "leviathan" / "pulls" / "1.json"
    record.write_text(record.read_text()[:40])
    for call in (forge.list_open_prs, lambda: forge.get_pr(1), lambda: forge.find_pr_by_head("x")):
        with pytest.raises(ForgeError, match=f"corrupt pull request record {record}"):
            call()
    # Creating another PR must not paper over the unreadable record either.
    target.commit("agent/x/2", {"docs/b.md": "x\n"})
    with pytest.raises(ForgeError, match="corrupt"):
        open_pr(forge, "agent/x/2")

    record.write_text(json.dumps({"number": 1, "state": "weird"}))
    with pytest.raises(ForgeError, match=f"corrupt pull request record {record}"):
        forge.list_prs()


def test_record_with_wrong_number_is_corrupt(target, forge):
    target.commit("agent/x/1", {"docs/new.md": "x\n"})
    open_pr(forge, "agent/x/1")
    pulls = target.bare / "leviathan" / "pulls"
    (pulls / "1.json").rename(pulls / "5.json")
    with pytest.raises(ForgeError, match="5.json: it holds number 1"):
        forge.list_prs()


@pytest.mark.parametrize(("lock", "change"), [
    ("pulls.lock", lambda forge, sha: open_pr(forge, "agent/x/1")),
    ("issues.lock", lambda forge, sha: forge.create_issue(title="Dashboard", body="body", label="leviathan")),
    ("statuses.lock", lambda forge, sha: forge.set_status(sha, context="ci", state="success")),
])
def test_a_planted_lock_symlink_is_refused_by_every_store(target, forge, tmp_path, lock, change):
    """Each record store locks through the one no-follow helper: a link never creates or locks a file elsewhere."""
    sha = target.commit("agent/x/1", {"docs/new.md": "x\n"})
    elsewhere = tmp_path / "elsewhere"
    (target.bare / "leviathan").mkdir(exist_ok=True)
    (target.bare / "leviathan" / lock).symlink_to(elsewhere)
    with pytest.raises(ForgeError, match=f"cannot lock .*{re.escape(lock)}"):
        change(forge, sha)
    assert not elsewhere.exists()



def _bad_record(pulls: Path, kind: str) -> Path:
    """Plant a record that must not be read: each kind would hang, leak or exhaust a naive reader."""
    record = pulls / "2.json"
    if kind == "fifo":
        os.mkfifo(record)  # open() on a FIFO with no writer blocks forever without O_NONBLOCK
    elif kind == "symlink":
        record.symlink_to("/etc/passwd")
    elif kind == "huge":
        with open(record, "wb") as fh:
            fh.truncate(MAX_RECORD_BYTES + 1)  # sparse: big to read, cheap to make
    elif kind == "invalid_json":
        record.write_text('{"number": 2, ')
    elif kind == "directory":
        record.mkdir()
    return record


BAD_RECORDS = {
    "fifo": "not a regular file", "symlink": "it is a symbolic link", "huge": f"over {MAX_RECORD_BYTES}",
    "invalid_json": "corrupt pull request record", "directory": "not a regular file",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(BAD_RECORDS))
def test_unreadable_records_fail_closed_through_the_guardrails(target, forge, kind):
    """Each bad record is a ForgeError naming its path (never a hang), and the cycle skips on forge_state_unknown."""
    from leviathan_lib.core.backlog import parse_backlog
    from leviathan_lib.core.config import parse_target
    from leviathan_lib.core.guardrails import CycleState, decide
    from leviathan_lib.cycle.pr_sync import forge_state

    target.commit("agent/x/1", {"docs/new.md": "x\n"})
    open_pr(forge, "agent/x/1")
    record = _bad_record(target.bare / "leviathan" / "pulls", kind)
    started = time.monotonic()
    for call in (forge.list_open_prs, lambda: forge.get_pr(2), lambda: forge.find_pr_by_head("agent/x/1")):
        with pytest.raises(ForgeError, match=re.escape(str(record))) as info:
            call()
        assert BAD_RECORDS[kind] in str(info.value)
    assert time.monotonic() - started < 10
    if kind == "symlink":
        assert "root:" not in str(info.value)  # nothing of the link's target is read or echoed

    config = parse_target(f"target_id: t\ntarget_repo_url: {target.bare}\nforge: local\n", "t.yaml")
    state = forge_state(config, str(target.bare), [])
    open_prs = state.open_prs
    assert open_prs is None and state.changes == [] and state.actions == [] and state.review.refresh is None
    backlog, _ = parse_backlog("tasks:\n  - {id: a, title: A, ready: true, allowed_paths: [docs/a.md]}\n")
    decision = decide(config, backlog, CycleState(open_prs=open_prs))
    assert decision.decision == "skip" and "forge_state_unknown" in decision.reasons


def test_a_record_file_of_exactly_the_cap_is_read(target, forge):
    target.commit("agent/x/1", {"docs/new.md": "x\n"})
    pr = open_pr(forge, "agent/x/1")
    record = target.bare / "leviathan" / "pulls" / "1.json"
    data = record.read_bytes().rstrip()
    record.write_bytes(data + b" " * (MAX_RECORD_BYTES - len(data)))
    assert record.stat().st_size == MAX_RECORD_BYTES
    assert forge.get_pr(1) == pr

def test_unreachable_or_wrong_repositories(tmp_path, target):
    missing = tmp_path / "missing.git"
    with pytest.raises(ForgeError, match=str(missing)):
        LocalForge(missing)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ForgeError, match=f"{plain} is not a git repository"):
        LocalForge(plain)
    with pytest.raises(ForgeError, match="is a work tree; the local forge needs a bare git repository"):
        LocalForge(target.work)
    with pytest.raises(ForgeError, match="is not a bare git repository"):
        LocalForge(target.work / ".git")
    with pytest.raises(ForgeError, match="file:// URL"):
        LocalForge("https://example.com/r.git")


def test_open_forge(target):
    assert isinstance(open_forge("local", target.bare.as_uri()), LocalForge)
    with pytest.raises(ForgeError, match="cannot use GitHub connection 'github_default'"):
        open_forge("github", "https://github.com/o/r.git", "github_default")
    with pytest.raises(ValueError, match="unknown forge kind"):
        open_forge("gitlab", "x")


def test_diff_is_three_dot_and_survives_merge(target, forge):
    target.commit("agent/x/1", {"docs/new.md": "from the agent\n"})
    target.commit("main", {"README.md": "later human change\n"})
    open_pr(forge, "agent/x/1")
    diff = forge.diff(1)
    assert "+from the agent" in diff
    assert "later human change" not in diff
    forge.merge(1)
    target.commit("main", {"docs/after.md": "after merge\n"})
    merged_diff = forge.diff(1)
    assert "+from the agent" in merged_diff
    assert "after merge" not in merged_diff and "later human change" not in merged_diff


# -- CLI ---------------------------------------------------------------------------------------------


def test_cli_list_and_show(target, forge):
    target.commit("agent/x/1", {"docs/new.md": "cli content\n"})
    target.commit("main", {"README.md": "moved on\n"})
    open_pr(forge, "agent/x/1", "Add CLI doc")
    repo = str(target.bare)

    out = leviathan("forge", "list", "--repo", repo)
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split()[:2] == ["#", "STATE"]
    assert row.split()[:5] == ["1", "open", "agent/x/1", "->", "main"] and "Add CLI doc" in row

    listed = json.loads(leviathan("forge", "list", "--repo", repo, "--state", "all", "--json").stdout)
    assert [(p["number"], p["state"], p["head"]) for p in listed] == [(1, "open", "agent/x/1")]
    assert leviathan("forge", "list", "--repo", repo, "--state", "merged").stdout.strip() == (
        "no merged pull requests"
    )

    shown = leviathan("forge", "show", "--repo", repo, "1", "--diff")
    assert shown.returncode == 0, shown.stderr
    assert "#1 Add CLI doc" in shown.stdout and "Delivers agent/x/1." in shown.stdout
    assert "+cli content" in shown.stdout and "moved on" not in shown.stdout

    data = json.loads(leviathan("forge", "show", "--repo", repo, "1", "--json", "--diff").stdout)
    assert data["number"] == 1 and data["comments"] == []
    assert "+cli content" in data["diff"]


def test_cli_merge_and_close(target, forge):
    target.commit("agent/x/1", {"docs/new.md": "merged by a human\n"})
    target.commit("agent/x/2", {"docs/other.md": "closed\n"})
    open_pr(forge, "agent/x/1")
    open_pr(forge, "agent/x/2")
    repo = target.bare.as_uri()

    merged = leviathan("forge", "merge", "--repo", repo, "1")
    assert merged.returncode == 0, merged.stderr
    assert rev_parse(target.bare, "main") in merged.stdout
    assert target.show("main:docs/new.md") == "merged by a human\n"

    closed = leviathan("forge", "close", "--repo", repo, "2")
    assert closed.returncode == 0, closed.stderr
    assert forge.get_pr(2).state == "closed"
    assert [
        p["number"] for p in json.loads(leviathan("forge", "list", "--repo", repo, "--json").stdout)
    ] == []


def test_cli_merge_conflict_exits_1(target, forge):
    target.commit("agent/x/1", {"docs/a.md": "agent\n"})
    open_pr(forge, "agent/x/1")
    main_before = target.commit("main", {"docs/a.md": "human\n"})
    out = leviathan("forge", "merge", "--repo", str(target.bare), "1")
    assert out.returncode == 1
    assert out.stderr.strip() == "error: pull request #1 conflicts with main in: docs/a.md"
    assert rev_parse(target.bare, "main") == main_before


def test_cli_errors_exit_2_without_traceback(tmp_path, target):
    no_pr = leviathan("forge", "show", "--repo", str(target.bare), "9")
    assert no_pr.returncode == 2
    assert no_pr.stderr.strip() == f"error: no pull request #9 in {target.bare}"

    no_repo = leviathan("forge", "list", "--repo", str(tmp_path / "nope.git"))
    assert no_repo.returncode == 2
    assert len(no_repo.stderr.strip().splitlines()) == 1 and "nope.git" in no_repo.stderr
    assert "Traceback" not in no_repo.stderr + no_pr.stderr


def test_labels_reviewers_and_assignees_are_stored_and_shown(target):
    forge = LocalForge(target.bare, labels=("leviathan",), reviewers=("alice", "bob"), assignees=("carol",))
    target.commit("agent/t1/1", {"docs/a.md": "changed\n"})
    pr = open_pr(forge, "agent/t1/1")
    requests = LocalForge(target.bare).requests(pr.number)
    assert (requests.labels, requests.reviewers, requests.assignees) == (["leviathan"], ["alice", "bob"], ["carol"])
    shown = leviathan("forge", "show", "--repo", str(target.bare), "1")
    assert shown.returncode == 0, shown.stderr
    assert "reviewers: alice, bob" in shown.stdout and "assignees: carol" in shown.stdout
    data = json.loads(leviathan("forge", "show", "--repo", str(target.bare), "1", "--json").stdout)
    assert data["reviewers"] == ["alice", "bob"] and data["assignees"] == ["carol"]
