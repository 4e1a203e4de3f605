"""What the approval gate shows and records: escaped, bounded, secret-free text; who decided and when."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leviathan_lib.contracts.xcom import AttemptPlan, ReadResult
from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.config import parse_target
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.guardrails import ClosedPR, CycleState, ReasonCode, decide
from leviathan_lib.cycle import approval
from leviathan_lib.cycle.decision import guardrail_inputs
from leviathan_lib.evidence.records import CycleRecord, Ledger

TARGET = parse_target("target_id: t\ntarget_repo_url: /r.git\napproval: pull_request\nautonomy_enabled: true\n"
                      "approval_assignees: [alice]\n", "t.yaml")
BACKLOG = """\
tasks:
  - id: docs-a
    title: "Evil [link](http://x) <b>html</b> `code`"
    description: "```\\nbreak out\\n```"
    ready: true
    status: pending
    allowed_paths: [docs/a.md]
    recipe: write
"""
RECIPES = "recipes:\n  write:\n    steps:\n      - [python3, write.py, \"it's\"]\n    env: {MODE: fast}\n"
READ = ReadResult(repo_url="/r.git", branch="main", commit_sha="a" * 40, backlog_path=".leviathan/backlog.yaml",
                  backlog_text=BACKLOG, recipes_text=RECIPES)
PLAN = AttemptPlan(task_id="docs-a", attempt=1, branch="agent/docs-a/1", task_hash="h1", recipe="write")


def test_plan_body_escapes_user_text_and_fences_code():
    body = approval.plan_body(TARGET, READ, PLAN)
    assert "Evil \\[link\\]\\(http\\:\u200b\\/\\/x\\) \\<b\\>html\\<\\/b\\> \\`code\\`" in body  # no autolink either
    assert "````\n```\nbreak out\n```\n````" in body  # a fence longer than any backtick run inside
    assert "```sh\npython3 write.py 'it'\\''s'\n```" in body
    assert "with environment MODE" in body and "fast" not in body  # env names, never values


def test_diff_body_shows_a_bounded_diff_and_withholds_one_with_a_secret():
    patch = "--- a/docs/a.md\n+++ b/docs/a.md\n@@ -0,0 +1 @@\n+hello ```` fence\n" + "+x\n" * 20_000
    body = approval.diff_body(TARGET, READ, PLAN, patch, ["docs/a.md"])
    assert f"(first {approval.MAX_DIFF_CHARS} of {len(patch)} characters)" in body
    assert "`````diff\n--- a/docs/a.md" in body
    token = "ghp_" + "Kp4w" * 9
    leaked = approval.diff_body(TARGET, READ, PLAN, f"+++ b/docs/a.md\n+token = {token}\n", ["docs/a.md"])
    assert token not in leaked and "**The diff is not shown**" in leaked


def test_decision_records_who_and_when_and_a_timeout_has_nobody():
    at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    yes = approval.decision("plan", TARGET, PLAN, {"chosen_options": ["Approve"], "responded_at": at,
                                                  "responded_by_user": {"id": "alice", "name": "Alice"}})
    assert (yes.choice, yes.reason, yes.by, yes.by_name, yes.at, yes.assignees) == (
        "approved", "human", "alice", "Alice", at, ["alice"])
    late = approval.decision("plan", TARGET, PLAN, {"chosen_options": ["Reject"], "responded_at": at,
                                                   "responded_by_user": None, "timedout": True})
    assert (late.choice, late.reason, late.by) == ("rejected", "timeout", None)
    assert approval.rejection_message(late).startswith("nobody answered the plan approval in time")


def test_a_rejection_makes_the_task_wait_until_its_definition_changes():
    at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    no = approval.decision("plan", TARGET, PLAN, {"chosen_options": ["Reject"], "responded_at": at,
                                                 "responded_by_user": {"id": "alice", "name": "alice"}})
    backlog, _ = parse_backlog(BACKLOG, source="b")
    record = CycleRecord(target_id="t", dag_run_id="r1", recorded_at=at, decision="run",
                         stopped_reason="rejected_by_human", approval=no.model_copy(
                             update={"task_hash": backlog.tasks[0].definition_hash()}))
    ledger = Ledger().with_cycle(record)
    attempts, closed = guardrail_inputs(ledger)
    assert closed == [ClosedPR(task_id="docs-a", task_hash=backlog.tasks[0].definition_hash(), by_human_gate=True)]
    verdict = decide(TARGET, backlog, CycleState(closed_prs=closed)).tasks[0]
    assert verdict.reasons == [ReasonCode.REJECTED_BY_HUMAN]  # its own reason, not pr_closed_unchanged
    changed, _ = parse_backlog(BACKLOG.replace("break out", "stay in"), source="b")
    assert decide(TARGET, changed, CycleState(closed_prs=closed)).tasks[0].eligible


@pytest.mark.parametrize(("text", "problem"), [
    ("approval: always\n", "approval: Input should be 'none', 'plan' or 'pull_request'"),
    ("approval: plan\napproval_assignees: ['-x']\n", "t.yaml:4: approval_assignees[0]: String should match pattern"),
    ("approval: plan\napproval_timeout_seconds: 0\n", "approval_timeout_seconds: Input should be greater than"),
    ("approval_assignees: [alice]\n", "approval_assignees needs a gate: set approval to plan or pull_request"),
])
def test_invalid_approval_settings_are_clear_errors(text, problem):
    with pytest.raises(ValidationFailed) as caught:
        parse_target("target_id: t\ntarget_repo_url: /r.git\n" + text, "t.yaml")
    assert problem in str(caught.value), str(caught.value)


def test_the_decision_is_an_event_and_a_rejected_diff_is_no_failure():
    from leviathan_lib.evidence.events import events_from
    from leviathan_lib.evidence.records import AttemptEvidence

    at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    no = approval.decision("pull_request", TARGET, PLAN, {"chosen_options": ["Reject"], "responded_at": at,
                                                         "responded_by_user": {"id": "alice", "name": "alice"}})
    attempt = approval.rejected_attempt(AttemptEvidence(task_id="docs-a", attempt=1, task_hash="h1",
                                                        branch="agent/docs-a/1", backend="local",
                                                        outcome="succeeded"), no)
    record = CycleRecord(target_id="t", dag_run_id="r1", recorded_at=at, decision="run", attempt=attempt,
                         stopped_reason="rejected_by_human", approval=no)
    events = events_from([(1, at, "r1", record.model_dump(mode="json"))])
    types = [e.type for e in events]
    assert "attempt.rejected" in types and "attempt.failed" not in types
    [decided] = [e for e in events if e.type == "approval.rejected"]
    assert decided.data["by"] == "alice" and decided.data["gate"] == "pull_request"
    assert Ledger().with_cycle(record).recent_attempts[0].outcome == "succeeded"  # the breaker does not count it
