"""Human edits on open PRs, on a real local forge: noticed, commented on once, remembered in the ledger."""

from datetime import UTC, datetime

import pytest

from leviathan_lib.cycle import lifecycle
from leviathan_lib.evidence.records import CycleRecord, Ledger, LedgerPR
from leviathan_lib.forge import LocalForge, local
from tests.forge.test_local import Target, open_pr


@pytest.fixture
def target(tmp_path) -> Target:
    return Target(tmp_path)


def test_an_open_pr_someone_else_pushed_to_gets_one_comment_ever(target):
    forge = LocalForge(target.bare)
    pushed = target.commit("agent/a/1", {"docs/a.md": "a\n"})
    untouched = target.commit("agent/b/1", {"docs/b.md": "b\n"})
    open_pr(forge, "agent/a/1")
    open_pr(forge, "agent/b/1")
    known = [LedgerPR(number=1, task_id="a", branch="agent/a/1", task_hash="h", head_sha=pushed),
             LedgerPR(number=2, task_id="b", branch="agent/b/1", task_hash="h", head_sha=untouched)]
    assert lifecycle.notice_human_edits(forge, forge.list_open_prs(), known) == []

    edited = target.commit("agent/a/1", {"docs/a.md": "a, the reviewer's way\n"})
    actions = lifecycle.notice_human_edits(forge, forge.list_open_prs(), known)
    assert [(a.kind, a.number, a.head_sha, a.commented) for a in actions] == [("human_edited", 1, edited, True)]
    assert [c.body for c in forge.comments(1)] == [lifecycle.HUMAN_EDITED_COMMENT] and forge.comments(2) == []

    # The ledger remembers the comment, so the next cycle does not comment again.
    record = CycleRecord(target_id="t", dag_run_id="r", recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
                         decision="skip", stopped_reason="open_pr_limit", lifecycle=actions)
    ledger = Ledger(open_prs=known).with_cycle(record)
    assert [p.human_edited for p in ledger.open_prs] == [True, False]
    assert lifecycle.notice_human_edits(forge, forge.list_open_prs(), ledger.open_prs) == []
    assert len(forge.comments(1)) == 1


def test_a_comment_the_forge_refuses_is_tried_again_next_cycle(target, monkeypatch):
    forge = LocalForge(target.bare)
    pushed = target.commit("agent/a/1", {"docs/a.md": "a\n"})
    open_pr(forge, "agent/a/1")
    target.commit("agent/a/1", {"docs/a.md": "edited\n"})
    known = [LedgerPR(number=1, task_id="a", branch="agent/a/1", task_hash="h", head_sha=pushed)]
    monkeypatch.setattr(local, "MAX_COMMENTS", 0)  # the record is full: the forge refuses the comment
    actions = lifecycle.notice_human_edits(forge, forge.list_open_prs(), known)
    assert [(a.commented, a.detail) for a in actions] == [(False, "forge_error: could not comment")]
    record = CycleRecord(target_id="t", dag_run_id="r", recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
                         decision="skip", stopped_reason="open_pr_limit", lifecycle=actions)
    assert Ledger(open_prs=known).with_cycle(record).open_prs[0].human_edited is False


def test_old_ledgers_without_a_pushed_sha_notice_nothing(target):
    forge = LocalForge(target.bare)
    target.commit("agent/a/1", {"docs/a.md": "a\n"})
    open_pr(forge, "agent/a/1")
    target.commit("agent/a/1", {"docs/a.md": "edited\n"})
    known = [LedgerPR(number=1, task_id="a", branch="agent/a/1", task_hash="h")]
    assert lifecycle.notice_human_edits(forge, forge.list_open_prs(), known) == []


def _review(forge, known, hashes, base_sha=None, refreshes=0, max_refreshes=2):
    from collections import Counter

    return lifecycle.review_open_prs(forge, forge.list_open_prs(), known, hashes=hashes, base_sha=base_sha,
                                     refreshes=Counter({"a": refreshes}), max_refreshes=max_refreshes)


def test_a_superseded_pr_the_forge_will_not_close_stays_open_and_blocks_its_task(target, monkeypatch):
    forge = LocalForge(target.bare)
    pushed = target.commit("agent/a/1", {"docs/a.md": "a\n"})
    open_pr(forge, "agent/a/1")
    known = [LedgerPR(number=1, task_id="a", branch="agent/a/1", task_hash="old", head_sha=pushed)]

    def refuse(number):
        raise local.ForgeError("the forge is down")

    monkeypatch.setattr(forge, "close_pr", refuse)
    review = _review(forge, known, {"a": "new"})
    assert [(a.kind, a.closed, a.commented, a.detail) for a in review.actions] == [
        ("pr_superseded", False, False, "forge_error: could not close")]
    assert review.closed == [] and forge.get_pr(1).state == "open" and forge.comments(1) == []
    monkeypatch.undo()
    review = _review(forge, known, {"a": "new"})  # next cycle: closed, commented, its branch deleted
    assert review.closed == [1] and forge.get_pr(1).state == "closed" and forge.branch_sha("agent/a/1") is None
    assert [c.body for c in forge.comments(1)] == [lifecycle.SUPERSEDED_COMMENT]


def test_conflicts_are_checked_only_when_the_base_moved_and_refreshed_within_the_bound(target):
    forge = LocalForge(target.bare)
    pushed = target.commit("agent/a/1", {"docs/a.md": "one\nTWO\nthree\n"})
    open_pr(forge, "agent/a/1")
    built_on = target.commit("main", {"README.md": "moved, no conflict\n"}) + "^"
    known = [LedgerPR(number=1, task_id="a", branch="agent/a/1", task_hash="h", head_sha=pushed,
                      base_sha=built_on)]
    clean = target.commit("main", {"README.md": "moved again\n"})
    assert _review(forge, known, {"a": "h"}, base_sha=clean).refresh is None  # merely behind
    conflicted = target.commit("main", {"docs/a.md": "one\n2\nthree\n"})
    review = _review(forge, known, {"a": "h"}, base_sha=conflicted)
    assert review.refresh is not None and review.refresh_task == "a"
    assert (review.refresh.number, review.refresh.head_sha, review.refresh.start, review.refresh.why) == (
        1, pushed, "base", "pr_conflicted")
    spent = [known[0].model_copy(update={"conflict_bases": [conflicted]})]
    assert _review(forge, spent, {"a": "h"}, base_sha=conflicted) == lifecycle.Review()  # once per base
    limited = _review(forge, known, {"a": "h"}, base_sha=conflicted, refreshes=2)
    assert limited.refresh is None and [(a.kind, a.base_sha) for a in limited.actions] == [
        ("pr_refresh_limit", conflicted)]
    assert _review(forge, known, {}, base_sha=conflicted) == lifecycle.Review()  # the task left the backlog
