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
