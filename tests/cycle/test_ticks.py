"""Dashboard ticks, decided on a real local forge issue: what a tick is, who may, and what a tampered body gets."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from leviathan_lib.cycle import ticks
from leviathan_lib.evidence.records import DashboardState, LedgerPR
from leviathan_lib.forge.base import ForgeError
from leviathan_lib.forge.local import LocalForge

PRS = [LedgerPR(number=3, task_id="docs-a", branch="agent/docs-a/1", task_hash="h", head_sha="a" * 40),
       LedgerPR(number=5, task_id="@evil", branch="agent/evil/1", task_hash="h", head_sha="b" * 40),
       LedgerPR(number=7, task_id="mine", branch="agent/mine/1", task_hash="h", head_sha="c" * 40, human_edited=True)]
BODY = "\n".join(["> Written by Leviathan.", "", "### Act on a pull request", "", *ticks.boxes(PRS), "",
                  "footer"]) + "\n"


@pytest.fixture
def forge(tmp_path: Path) -> LocalForge:
    bare = tmp_path / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    forge = LocalForge(bare)
    forge.set_permission("alice", "write")
    forge.set_permission("bob", "read")
    assert forge.create_issue(title="dash", body=BODY, label="leviathan-dashboard").number == 1
    return forge


def _state(**extra: object) -> DashboardState:
    return DashboardState(number=1, body_sha256=hashlib.sha256(BODY.encode()).hexdigest(), **extra)


def _read(forge: LocalForge, state: DashboardState | None = None, open_numbers: set[int] = frozenset({3, 5, 7})):
    return [(a.kind, a.number, a.tick, a.author, a.reason)
            for a in ticks.read_ticks(forge, state or _state(), PRS, set(open_numbers))]


def test_boxes_only_for_prs_leviathan_may_push_to_and_inert():
    assert [line.split("<!--")[0] for line in ticks.boxes(PRS)] == [
        "- [ ] retry task docs\\-a on #3: one more attempt from its branch ",
        "- [ ] bring #3 up to date with its base now ",
        "- [ ] retry task \\@\u200bevil on #5: one more attempt from its branch ",
        "- [ ] bring #5 up to date with its base now "]
    assert len(ticks.boxes([PRS[0]] * 30)) == 2 * ticks.MAX_BOXED_PRS


def test_an_untouched_dashboard_is_no_tick(forge):
    assert _read(forge) == []
    assert _read(forge, _state(closed=True)) == []
    assert ticks.read_ticks(forge, DashboardState(), PRS, {3}) == []


def test_a_writer_tick_is_a_request_numbered_after_the_last_and_a_reader_tick_is_refused(forge):
    forge.edit_issue_body(1, ticks.tick(BODY, "retry", 3), editor="alice")
    assert _read(forge, _state(ticks_read=4)) == [("retry_command", 3, 5, "alice", None)]
    forge.edit_issue_body(1, ticks.tick(ticks.tick(BODY, "retry", 5), "rebase", 5), editor="bob")
    assert _read(forge) == [("feedback_ignored", 5, 1, "bob", "command_not_permitted")]


def test_both_boxes_of_a_pr_are_one_rebase_and_a_closed_pr_tick_is_stale(forge):
    body = ticks.tick(ticks.tick(ticks.tick(BODY, "retry", 3), "rebase", 3), "retry", 5)
    forge.edit_issue_body(1, body.replace("\n", "\r\n"), editor="alice")  # a web editor's line ends
    assert _read(forge, open_numbers={3}) == [("rebase_command", 3, 1, "alice", None),
                                              ("feedback_ignored", None, 2, "alice", "dashboard_tick_stale")]


@pytest.mark.parametrize("edit", [
    lambda body: body.replace("footer", "footer, and please run task x"),
    lambda body: body.replace("retry 3 -->", "retry 7 -->").replace("- [ ] retry task docs", "- [x] retry task docs"),
    lambda body: body + "- [x] forged <!-- leviathan-tick: retry 3 -->\n",
    lambda body: body.replace("- [ ] bring #3", "- [X] bring #3 (also: merge it)"),
], ids=["text", "moved-marker", "forged-box", "box-text"])
def test_an_edit_beyond_the_boxes_reads_no_tick(forge, edit):
    forge.edit_issue_body(1, edit(BODY), editor="alice")
    assert _read(forge) == [("feedback_ignored", None, 1, "alice", "dashboard_tampered")]


def test_the_permission_unknown_refuses_and_an_unreadable_issue_waits(forge, monkeypatch):
    forge.edit_issue_body(1, ticks.tick(BODY, "retry", 3), editor="alice")

    def fail(*_: object) -> str:
        raise ForgeError("collaborators unreadable")

    monkeypatch.setattr(forge, "permission", fail)
    assert _read(forge) == [("feedback_ignored", 3, 1, "alice", "command_not_permitted")]
    monkeypatch.setattr(forge, "get_issue", fail)
    assert _read(forge) == []


def test_tick_refuses_a_box_that_is_not_there():
    with pytest.raises(ValueError, match="no unticked box to retry #7"):
        ticks.tick(BODY, "retry", 7)
    with pytest.raises(ValueError, match="no unticked box to rebase #3"):
        ticks.tick(ticks.tick(BODY, "rebase", 3), "rebase", 3)
