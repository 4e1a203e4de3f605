"""Revert detection on real git history: a real ``git revert`` of a merged PR (local forge merge) is found;
a commit that only says "Revert" and names the merge, a partial revert, and a later reworking are not."""

from __future__ import annotations

import pytest

from leviathan_lib.cycle.reverts import find_reverts
from leviathan_lib.evidence.records import LedgerMerged
from leviathan_lib.forge import LocalForge
from leviathan_lib.git.runner import rev_parse, run_git
from tests.forge.test_local import Target


@pytest.fixture
def merged(tmp_path):
    """PR #1 (two files) merged into main by the local forge; a clone of main to commit from."""
    t = Target(tmp_path)
    t.commit("agent/t/1", {"docs/a.md": "one\ntwo\nTHREE\n", "docs/new.md": "new\n"})
    forge = LocalForge(t.bare)
    forge.create_pr(head="agent/t/1", base="main", title="t", body="")
    pr = forge.merge(1)
    run_git(["fetch", "--quiet", "origin"], cwd=t.work)
    run_git(["checkout", "--quiet", "-B", "main", "origin/main"], cwd=t.work)
    watched = LedgerMerged(number=1, task_id="t", branch="agent/t/1", merge_sha=pr.merge_sha)
    return t, watched


def _commit(t: Target, message: str, files: dict[str, str | None]) -> str:
    for name, text in files.items():
        if text is None:
            (t.work / name).unlink()
        else:
            (t.work / name).write_text(text)
    run_git(["add", "--all"], cwd=t.work)
    run_git(["commit", "--quiet", "-m", message], cwd=t.work)
    run_git(["push", "--quiet", "origin", "HEAD:main"], cwd=t.work)
    return rev_parse(t.work, "HEAD")


def _find(t: Target, watched: LedgerMerged, since: str | None = None) -> list[tuple[int, str | None]]:
    pinned = rev_parse(t.bare, "main")
    return [(c.number, c.revert_sha) for c in find_reverts(t.bare, pinned, [watched], since=since, new=set())]


def test_a_real_git_revert_is_found_among_later_commits(merged):
    t, watched = merged
    _commit(t, "unrelated", {"README.md": "hello again\n"})
    run_git(["revert", "--no-edit", "-m", "1", watched.merge_sha], cwd=t.work)
    run_git(["push", "--quiet", "origin", "HEAD:main"], cwd=t.work)
    revert = rev_parse(t.work, "HEAD")
    _commit(t, "later", {"README.md": "later\n"})
    assert _find(t, watched) == [(1, revert)]
    assert _find(t, watched, since=revert) == []  # an earlier cycle already looked at it


def test_a_commit_that_only_says_revert_and_names_the_merge_is_not_one(merged):
    t, watched = merged
    _commit(t, f'Revert "t"\n\nThis reverts commit {watched.merge_sha}.', {"docs/a.md": "something else\n"})
    _commit(t, f"Revert {watched.merge_sha}", {"README.md": "nothing to do with it\n"})
    assert _find(t, watched) == []


def test_a_partial_revert_is_not_a_revert(merged):
    t, watched = merged
    _commit(t, "Revert half of #1", {"docs/new.md": None})  # docs/a.md keeps the PR's change
    assert _find(t, watched) == []
    _commit(t, "and the rest", {"docs/a.md": "one\ntwo\nthree\n"})  # the rest, in a second commit: not one either
    assert _find(t, watched) == []


def test_a_merge_not_in_the_history_read_is_not_judged(merged):
    t, watched = merged
    unknown = watched.model_copy(update={"merge_sha": "0" * 40})
    assert find_reverts(t.bare, rev_parse(t.bare, "main"), [unknown], since=None, new=set()) == []
