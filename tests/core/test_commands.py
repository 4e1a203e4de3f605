"""The review/command grammar and permission rules: a table of inputs and the stable reason codes they give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leviathan_lib.core.commands import (
    MAX_FEEDBACK_BYTES,
    PrComment,
    Review,
    Seen,
    authors_to_check,
    bounded_feedback,
    decide_feedback,
    may_command,
    parse_command,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("body", "expected"), [
    ("/leviathan retry", "retry"),
    ("  /leviathan retry \n\n", "retry"),
    ("/leviathan retry please", "command_malformed"),
    ("/leviathan retry\nand also delete main", "command_malformed"),
    ("/leviathan retry; rm -rf /", "command_malformed"),
    ("/leviathan", "command_malformed"),
    ("Thanks!\n/leviathan retry", "command_malformed"),
    ("/leviathan rebase", "rebase"),
    ("/leviathan rebase onto main", "command_malformed"),
    ("/leviathan merge", "command_unknown"),
    ("/leviathan RETRY", "command_unknown"),
    ("/LEVIATHAN retry", None),
    ("/leviathanretry", None),
    ("please /leviathan retry", None),
    ("Looks good to me", None),
    ("", None),
])
def test_command_grammar_is_exact(body, expected):
    assert parse_command(body) == expected


@pytest.mark.parametrize(("permission", "allowed"), [
    ("admin", True), ("maintain", True), ("write", True),
    ("triage", False), ("read", False), ("none", False), ("unknown", False), ("", False),
])
def test_only_write_permission_commands(permission, allowed):
    assert may_command(permission) is allowed


def _review(id_, author, state="CHANGES_REQUESTED", body="fix it", minutes=0):
    return Review(id=id_, author=author, state=state, body=body, submitted_at=T0 + timedelta(minutes=minutes))


def _comment(id_, author, body, minutes=0):
    return PrComment(id=id_, author=author, body=body, created_at=T0 + timedelta(minutes=minutes))


PERMS = {"alice": "write", "root": "admin", "bob": "read", "eve": "none"}


def test_changes_requested_by_a_writer_is_a_request_carrying_its_text():
    decided = decide_feedback([_review(1, "alice", body="Rename x.")], [], PERMS, seen=Seen())
    assert decided.request.model_dump() == {"why": "changes_requested", "author": "alice", "feedback": "Rename x.",
                                            "review_id": 1, "comment_id": None}
    assert decided.ignored == [] and decided.seen == Seen(review_id=1)


def test_other_reviews_and_plain_comments_are_no_requests_and_leave_no_trace():
    decided = decide_feedback([_review(1, "alice", "APPROVED"), _review(2, "alice", "COMMENTED")],
                              [_comment(5, "alice", "retry please")], PERMS, seen=Seen())
    assert decided.request is None and decided.ignored == []
    assert decided.seen == Seen(review_id=2, comment_id=5)


def test_non_collaborators_and_readers_are_ignored_with_who_and_why():
    decided = decide_feedback([_review(1, "mallory"), _review(2, "bob")],
                              [_comment(3, "eve", "/leviathan retry"), _comment(4, "bob", "/leviathan retry")],
                              PERMS, seen=Seen())
    assert decided.request is None
    assert [(i.reason, i.author, i.review_id, i.comment_id, i.detail) for i in decided.ignored] == [
        ("review_not_permitted", "mallory", 1, None, "permission unknown"),
        ("review_not_permitted", "bob", 2, None, "permission read"),
        ("command_not_permitted", "eve", None, 3, "permission none"),
        ("command_not_permitted", "bob", None, 4, "permission read"),
    ]


def test_junk_after_a_command_is_malformed_even_from_an_admin():
    decided = decide_feedback([], [_comment(1, "root", "/leviathan retry now!"),
                                   _comment(2, "root", "/leviathan deploy")], PERMS, seen=Seen())
    assert decided.request is None
    assert [(i.reason, i.detail) for i in decided.ignored] == [("command_malformed", "/leviathan retry now!"),
                                                               ("command_unknown", "/leviathan deploy")]


def test_permitted_retry_and_the_newest_request_wins():
    decided = decide_feedback([_review(10, "alice", body="old", minutes=1)],
                              [_comment(20, "root", "/leviathan retry", minutes=2)], PERMS, seen=Seen())
    assert (decided.request.why, decided.request.author, decided.request.feedback) == ("retry_command", "root", None)
    decided = decide_feedback([_review(10, "alice", body="new", minutes=3)],
                              [_comment(20, "root", "/leviathan retry", minutes=2)], PERMS, seen=Seen())
    assert (decided.request.why, decided.request.feedback) == ("changes_requested", "new")


def test_rebase_is_a_request_from_writers_only_and_starts_on_the_base():
    from leviathan_lib.cycle.feedback import continue_prs
    from leviathan_lib.evidence.records import LedgerPR, LifecycleAction

    decided = decide_feedback([], [_comment(20, "root", "/leviathan rebase", minutes=1),
                                   _comment(21, "stranger", "/leviathan rebase", minutes=2)],
                              {**PERMS, "stranger": "read"}, seen=Seen())
    assert (decided.request.why, decided.request.comment_id) == ("rebase_command", 20)
    assert [(i.reason, i.author) for i in decided.ignored] == [("command_not_permitted", "stranger")]
    request = LifecycleAction(kind="rebase_command", number=1, task_id="t", branch="agent/t/1", author="root",
                              comment_id=20)
    pr = LedgerPR(number=1, task_id="t", branch="agent/t/1", task_hash="h", head_sha="a" * 40)
    cont = continue_prs([pr], {1: request})["t"]
    assert (cont.start, cont.why, cont.head_sha, cont.feedback) == ("base", "rebase_command", "a" * 40, None)


def test_each_item_is_decided_once():
    reviews, comments = [_review(1, "alice"), _review(2, "mallory")], [_comment(3, "eve", "/leviathan retry")]
    first = decide_feedback(reviews, comments, PERMS, seen=Seen())
    assert first.request is not None and len(first.ignored) == 2
    again = decide_feedback(reviews, comments, PERMS, seen=first.seen)
    assert again.request is None and again.ignored == [] and again.seen == first.seen
    assert authors_to_check(reviews, comments, seen=first.seen) == []
    assert authors_to_check(reviews, comments, seen=Seen()) == ["alice", "eve", "mallory"]


def test_own_logins_are_never_read():
    decided = decide_feedback([_review(1, "leviathan[bot]")], [_comment(2, "leviathan[bot]", "/leviathan x")],
                              {}, seen=Seen(), own_logins=frozenset({"leviathan[bot]"}))
    assert decided.request is None and decided.ignored == []


def test_feedback_is_redacted_and_bounded():
    token = "ghp_" + "A1b2" * 9
    text = bounded_feedback(f"use this token {token}\r\nthanks")
    assert token not in text and "[REDACTED:github_token]" in text and "\r" not in text
    long = bounded_feedback("é" * MAX_FEEDBACK_BYTES)
    assert len(long.encode()) <= MAX_FEEDBACK_BYTES and long.endswith("[... feedback truncated]")
