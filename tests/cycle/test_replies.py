"""Replies on a real local forge: one per event, never twice (ledger and marker), never echoing the input."""

from datetime import UTC, datetime

import pytest

from leviathan_lib.core.commands import parse_command
from leviathan_lib.cycle import replies
from leviathan_lib.evidence.records import MAX_REPLY_TRIES, CycleRecord, Ledger, LedgerPR, LifecycleAction, OwedReply
from leviathan_lib.forge import LocalForge
from tests.forge.test_local import Target, open_pr

HOSTILE = "@org/team see [x](https://evil.example) <!-- <img src=x onerror=alert(1)> #1 `` |"


@pytest.fixture
def pr(tmp_path):
    target = Target(tmp_path)
    forge = LocalForge(target.bare)
    head = target.commit("agent/a/1", {"docs/a.md": "a\n"})
    open_pr(forge, "agent/a/1")
    forge.set_permission("alice", "write")
    return forge, LedgerPR(number=1, task_id="a", branch="agent/a/1", task_hash="h", head_sha=head)


def _cycle(ledger: Ledger, actions: list[LifecycleAction]) -> Ledger:
    return ledger.with_cycle(CycleRecord(target_id="t", dag_run_id="r", recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
                                         decision="skip", stopped_reason="open_pr_limit", lifecycle=actions))


def _ignored(forge: LocalForge, known: LedgerPR) -> list[LifecycleAction]:
    from leviathan_lib.cycle.feedback import read_feedback

    return read_feedback(forge, forge.list_open_prs(), [known])


def test_a_burst_of_hostile_commands_is_answered_once_without_echo_and_a_crash_never_doubles(pr):
    forge, known = pr
    forge.comment(1, "/leviathan retry\n" + "A" * 900_000, author="mallory")  # near the local forge's 1 MiB
    for _ in range(29):
        forge.comment(1, "/leviathan retry\n" + HOSTILE, author="mallory")
    actions = _ignored(forge, known)
    assert len(actions) == 30 and {a.reason for a in actions} == {"command_malformed"}
    posted = replies.post_replies(forge, [known], actions, {1})
    assert [(a.kind, len(a.reply_keys)) for a in posted] == [("reply_posted", replies.MAX_PER_COMMENT)]
    [reply] = [c for c in forge.list_comments(1) if c.author == "leviathan"]
    assert "evil" not in reply.body and "onerror" not in reply.body and "AAAA" not in reply.body
    assert "\\@\u200bmallory" in reply.body and "@mallory" not in reply.body.replace("\\@\u200bmallory", "")
    assert parse_command(reply.body) is None  # a reply is never read as a command, by anyone
    ledger = _cycle(Ledger(open_prs=[known]), actions + posted)
    assert [r.key for r in ledger.open_prs[0].replies] == [f"c{i}" for i in range(21, 31)]

    # The rest next cycle, in a second comment; a crash before the record (the ledger never learnt of the
    # post) is settled by the marker: the same replies are found, not posted again.
    again = replies.post_replies(forge, ledger.open_prs, [], {1})
    assert [(a.kind, a.commented) for a in again] == [("reply_posted", True)]
    replayed = replies.post_replies(forge, ledger.open_prs, [], {1})
    assert [(a.kind, a.commented, a.detail) for a in replayed] == [
        ("reply_posted", False, "already answered on the forge")]
    assert len([c for c in forge.list_comments(1) if c.author == "leviathan"]) == 2
    assert _cycle(ledger, again).open_prs[0].replies == []


def test_a_reply_the_forge_refuses_stays_owed_then_is_given_up(pr):
    forge, known = pr
    forge.comment(1, "/leviathan retry", author="bob")
    actions = _ignored(forge, known)
    forge.lock(1)
    ledger = Ledger(open_prs=[known])
    for _ in range(MAX_REPLY_TRIES):
        failed = replies.post_replies(forge, ledger.open_prs, actions, {1})
        assert [(a.kind, a.reply_keys) for a in failed] == [("reply_failed", ["c1"])]
        ledger = _cycle(ledger, actions + failed)
        actions = []
    assert ledger.open_prs[0].replies == [] and [c.author for c in forge.list_comments(1)] == ["bob"]


def test_a_served_reply_names_the_pushed_commit_and_paths_inertly():
    owed = OwedReply(key="c1", kind="served", author="alice", head_sha="ab" * 20, paths=["docs/a.md", "a`b.md"])
    text = replies.render([owed])
    assert "Pushed `abababababab` for \\@\u200balice's command; it changes `docs/a.md`, ``a`b.md``." in text
    assert text.endswith("<!-- leviathan-reply: c1 -->")
