"""Branches held for green CI (``pr_creation: checks_pass``) on the local forge, without Airflow: the wait,
the note, the switch, unknown CI and a human's push decide what happens, with an explicit clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leviathan_lib.core.config import parse_target
from leviathan_lib.cycle.held import HeldInputs, sync_held
from leviathan_lib.evidence.records import LedgerHeld
from leviathan_lib.forge import ForgeError, LocalForge
from tests.forge.test_local import Target

PUSHED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BRANCH = "agent/t/1"


class _Down(LocalForge):
    """A forge whose CI cannot be read (a 5xx, a rate limit)."""

    def ci_status(self, sha: str):
        raise ForgeError("server error 502")


def _setup(tmp_path, forge_class=LocalForge):
    t = Target(tmp_path)
    head = t.commit(BRANCH, {"docs/b.md": "b\n"})
    target = parse_target(f"target_id: t\ntarget_repo_url: {t.bare}\npr_creation: checks_pass\n", "t.yaml")
    held = LedgerHeld(task_id="t", branch=BRANCH, task_hash="h", head_sha=head, pushed_at=PUSHED,
                      title="[leviathan] t", body="why")
    return t, forge_class(t.bare), target, held


def _sync(forge, target, held, *, minutes: int, may_open: bool = True):
    return sync_held(forge, target, HeldInputs(branches=[held], now=PUSHED + timedelta(minutes=minutes),
                                               may_open=may_open))


def test_no_ci_waits_ci_wait_minutes_then_opens_with_a_note(tmp_path):
    t, forge, target, held = _setup(tmp_path)
    early = _sync(forge, target, held, minutes=29)
    assert early.actions == [] and early.still_held == [held] and forge.list_prs() == []
    late = _sync(forge, target, held, minutes=30)
    assert [a.kind for a in late.actions] == ["pr_created"] and late.still_held == []
    [pr] = forge.list_prs()
    assert pr.body.startswith("why\n") and "**No CI reported**" in pr.body and "within 30 minutes" in pr.body


def test_green_opens_only_while_autonomy_is_on(tmp_path):
    t, forge, target, held = _setup(tmp_path)
    forge.set_status(held.head_sha, context="ci", state="success")
    off = _sync(forge, target, held, minutes=1, may_open=False)
    assert [a.kind for a in off.actions] == ["ci_passed"] and forge.list_prs() == []
    held = off.still_held[0]
    on = _sync(forge, target, held, minutes=2)
    assert [a.kind for a in on.actions] == ["pr_created"] and forge.list_prs()[0].body == "why"


def test_unknown_ci_never_opens_even_after_the_wait(tmp_path):
    t, forge, target, held = _setup(tmp_path, _Down)
    result = _sync(forge, target, held, minutes=600)
    assert [(a.kind, a.ci_state) for a in result.actions] == [("ci_unknown", "unknown")]
    assert "server error 502" in result.actions[0].detail and result.still_held and forge.list_prs() == []


def test_a_human_push_or_a_deleted_branch_is_left_alone(tmp_path):
    t, forge, target, held = _setup(tmp_path)
    tip = t.commit(BRANCH, {"docs/c.md": "mine\n"})
    result = _sync(forge, target, held, minutes=600)
    assert [(a.kind, a.head_sha) for a in result.actions] == [("human_edited", tip)] and result.still_held == []
    assert forge.branch_sha(BRANCH) == tip and forge.list_prs() == []
