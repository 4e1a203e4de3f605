"""PR state sync on a real local forge: open agent/ PRs, human merges and closes, own-PR filtering."""

import shutil
from datetime import UTC, datetime

import pytest

from leviathan_lib.core.guardrails import ClosedPR, OpenPR
from leviathan_lib.cycle import pr_sync
from leviathan_lib.cycle.decision import ledger_open_prs
from leviathan_lib.evidence.records import (
    AttemptEvidence,
    CycleRecord,
    History,
    Ledger,
    LedgerPR,
    PrCi,
    PrStateChange,
)
from leviathan_lib.forge import LocalForge
from tests.forge.test_local import Target, open_pr, rev_parse_or_none


@pytest.fixture
def target(tmp_path) -> Target:
    return Target(tmp_path)


def _known(number: int, task_id: str, branch: str, head_sha: str | None = None) -> LedgerPR:
    return LedgerPR(number=number, task_id=task_id, branch=branch, task_hash=f"hash-{task_id}", head_sha=head_sha)


def test_open_agent_prs_are_listed_with_the_task_their_branch_names(target):
    forge = LocalForge(target.bare)
    target.commit("agent/a/1", {"docs/a.md": "a\n"})
    target.commit("feature/x", {"docs/x.md": "x\n"})
    open_pr(forge, "agent/a/1")
    open_pr(forge, "feature/x")
    open_prs, changes = pr_sync.sync_pr_states(forge, [_known(1, "a", "agent/a/1")])
    head = forge.get_pr(1).head_sha
    assert open_prs == [OpenPR(number=1, branch="agent/a/1", task_id="a", head_sha=head)] and changes == []


def test_a_closed_pr_loses_its_branch_and_a_merged_one_is_reported(target):
    forge = LocalForge(target.bare)
    target.commit("agent/a/1", {"docs/a.md": "a\n"})
    target.commit("agent/b/1", {"docs/b.md": "b\n"})
    open_pr(forge, "agent/a/1")
    open_pr(forge, "agent/b/1")
    forge.close_pr(1)
    merge = forge.merge(2).merge_sha
    closed, merged = forge.get_pr(1), forge.get_pr(2)
    green = _known(2, "b", "agent/b/1").model_copy(update={"ci": PrCi(first_head="x", first_push="success")})
    open_prs, changes = pr_sync.sync_pr_states(forge, [_known(1, "a", "agent/a/1"), green])
    assert open_prs == []
    # The forge's times and the first push's CI go on the record (the scorecard's merge times and CI rate).
    assert changes == [
        PrStateChange(number=1, task_id="a", branch="agent/a/1", state="closed", task_hash="hash-a",
                      branch_deleted=True, opened_at=closed.created_at, decided_at=closed.closed_at),
        # No recorded push to compare the tip with (an old record): the merged branch is kept.
        PrStateChange(number=2, task_id="b", branch="agent/b/1", state="merged", task_hash="hash-b",
                      branch_kept="pushed_head_unknown", merge_sha=merge, opened_at=merged.created_at,
                      decided_at=merged.merged_at, ci_first_push="success"),
    ]
    assert closed.closed_at is not None and merged.merged_at is not None
    assert rev_parse_or_none(target.bare, "refs/heads/agent/a/1") is None
    assert rev_parse_or_none(target.bare, "refs/heads/agent/b/1") is not None
    assert pr_sync.closed_by_humans(changes) == [ClosedPR(task_id="a", task_hash="hash-a")]


def test_a_pr_the_forge_cannot_find_yet_is_left_for_the_next_cycle(target):
    forge = LocalForge(target.bare)
    open_prs, changes = pr_sync.sync_pr_states(forge, [_known(7, "a", "agent/a/1")])
    assert open_prs == [] and changes == []


def test_an_unreadable_forge_makes_the_open_prs_unknown(target):
    forge = LocalForge(target.bare)
    shutil.rmtree(target.bare)
    assert pr_sync.sync_pr_states(forge, []) == (None, [])


def test_replays_use_the_ledger_and_a_rerun_ignores_its_own_pr():
    known = [_known(1, "a", "agent/a/1"), _known(2, "b", "agent/b/1")]
    assert ledger_open_prs(Ledger(open_prs=known)) == [OpenPR(number=1, branch="agent/a/1", task_id="a"),
                                                OpenPR(number=2, branch="agent/b/1", task_id="b")]
    own = CycleRecord(target_id="t", dag_run_id="run-1", recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
                      decision="run", stopped_reason="pr_opened",
                      attempt=AttemptEvidence(task_id="a", attempt=1, task_hash="h", branch="agent/a/1",
                                              backend="local"))
    history = History(cycles=[own])
    open_prs = ledger_open_prs(Ledger(open_prs=known))
    assert pr_sync.without_own_prs(open_prs, history, "run-1") == [open_prs[1]]
    assert pr_sync.without_own_prs(open_prs, history, "run-2") == open_prs


def test_merged_branches_leviathan_alone_pushed_to_are_deleted(target):
    forge = LocalForge(target.bare)
    pushed = target.commit("agent/a/1", {"docs/a.md": "a\n"})
    open_pr(forge, "agent/a/1")
    merge = forge.merge(1).merge_sha
    _, changes = pr_sync.sync_pr_states(forge, [_known(1, "a", "agent/a/1", pushed)])
    pr = forge.get_pr(1)
    assert changes == [PrStateChange(number=1, task_id="a", branch="agent/a/1", state="merged",
                                     task_hash="hash-a", branch_deleted=True, merge_sha=merge,
                                     opened_at=pr.created_at, decided_at=pr.merged_at)]
    assert rev_parse_or_none(target.bare, "refs/heads/agent/a/1") is None
    assert rev_parse_or_none(target.bare, "refs/heads/main") is not None


def test_merged_branches_are_kept_when_the_target_says_so(target):
    forge = LocalForge(target.bare)
    pushed = target.commit("agent/a/1", {"docs/a.md": "a\n"})
    open_pr(forge, "agent/a/1")
    forge.merge(1)
    _, changes = pr_sync.sync_pr_states(forge, [_known(1, "a", "agent/a/1", pushed)], delete_merged=False)
    assert [(c.branch_deleted, c.branch_kept) for c in changes] == [(False, "delete_merged_branches_off")]
    assert rev_parse_or_none(target.bare, "refs/heads/agent/a/1") == pushed


@pytest.mark.parametrize("human", ["merge", "close"])
def test_a_branch_a_human_pushed_to_is_never_deleted(target, human):
    forge = LocalForge(target.bare)
    pushed = target.commit("agent/a/1", {"docs/a.md": "a\n"})
    open_pr(forge, "agent/a/1")
    edited = target.commit("agent/a/1", {"docs/a.md": "a, as the reviewer wants it\n"})
    forge.merge(1) if human == "merge" else forge.close_pr(1)
    _, changes = pr_sync.sync_pr_states(forge, [_known(1, "a", "agent/a/1", pushed)])
    assert [(c.state, c.branch_deleted, c.branch_kept) for c in changes] == [
        ("merged" if human == "merge" else "closed", False, "human_edited")]
    assert rev_parse_or_none(target.bare, "refs/heads/agent/a/1") == edited


def test_a_branch_deleted_by_hand_is_neither_deleted_nor_kept(target):
    forge = LocalForge(target.bare)
    pushed = target.commit("agent/a/1", {"docs/a.md": "a\n"})
    open_pr(forge, "agent/a/1")
    forge.merge(1)
    forge.delete_branch("agent/a/1", lease=pushed)
    _, changes = pr_sync.sync_pr_states(forge, [_known(1, "a", "agent/a/1", pushed)])
    assert [(c.state, c.branch_deleted, c.branch_kept) for c in changes] == [("merged", False, None)]
