"""The dashboard's Markdown and its sync rules, without Airflow: hostile text stays text, hashes are stable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from markdown_it import MarkdownIt

from leviathan_lib.cli.evidence import _row
from leviathan_lib.contracts.xcom import CycleError, GuardrailResult, ReadResult
from leviathan_lib.core.config import parse_target
from leviathan_lib.core.guardrails import ClosedPR, CycleState
from leviathan_lib.cycle.dashboard import MAX_BODY, MAX_TASKS, md, render
from leviathan_lib.cycle.dashboard_sync import next_cycle, sync_dashboard
from leviathan_lib.cycle.decision import DecisionInputs, SandboxSeen, build_decision
from leviathan_lib.evidence.events import events_from
from leviathan_lib.evidence.records import CycleRecord, DashboardAction, DashboardState, Ledger, PrStateChange
from leviathan_lib.forge import ForgeError, LocalForge
from leviathan_lib.git.runner import init_bare

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOSTILE = [
    "@octocat @acme/admins please merge",
    "[click me](https://evil.example/phish) ![x](https://evil.example/x.png)",
    "<img src=x onerror=alert(1)> <script>alert(1)</script> <!-- hidden",
    "fixes #1 and acme/widgets#2, mail me: root@evil.example",
    "| breaks | the | table | `code span",
    "visit www.evil.example or http://evil.example",
    "right-to-left \u202etxt.exe\u202c and a zero\u200bwidth",
]


def _target(dashboard: bool = True):
    return parse_target(f"target_id: t1\ntarget_repo_url: /tmp/t1.git\ndashboard: {str(dashboard).lower()}\n",
                        "t1.yaml")


def _backlog(titles: list[str]) -> str:
    """Not-ready tasks with these titles, and one invalid entry."""
    tasks = "".join(f"  - id: task-{i}\n    title: '{t.replace(chr(39), chr(39) * 2)}'\n"
                    f"    ready: false\n    allowed_paths: [docs/{i}.md]\n" for i, t in enumerate(titles))
    return f"tasks:\n{tasks}  - id: broken\n    title: 7\n"


def _decided(target, titles: list[str]) -> tuple[ReadResult, GuardrailResult]:
    read = ReadResult(repo_url="/tmp/t1.git", branch="main", commit_sha="a" * 40,
                      backlog_path=".leviathan/backlog.yaml", backlog_text=_backlog(titles),
                      recipes_text="recipes: {}\n")
    result = build_decision(DecisionInputs(target=target, read=read, state=CycleState(now=NOW)))
    assert result.decision is not None
    return read, result


def _html(markdown: str) -> str:
    return MarkdownIt("gfm-like").render(markdown)  # tables, raw HTML and autolinks on, like GitHub


def test_hostile_task_titles_render_as_plain_text():
    target = _target()
    read, result = _decided(target, HOSTILE)
    body = render(target, read, result, run_id="manual__1", now=NOW, next_cycle=None).body
    html = _html(body)
    for tag in ("<a ", "<img", "<script", "<!--", "<code>code"):
        assert tag not in html, tag
    checks = len(result.decision.checks)
    assert html.count("<tr>") == (1 + checks) + (1 + len(HOSTILE) + 1)  # header + rows: no row split or added
    assert "<td>| breaks | the | table | `code span</td>" in html  # one cell, pipes and backtick as text
    for raw in ("@octocat", "@acme", "#1 ", "#2,", "root@evil", "www.evil", "http://", "https://", "\u202e"):
        assert raw not in body, raw
    assert "\\@\u200boctocat" in body  # still readable, just inert
    assert "task\\-0" in body and "not marked ready" in body
    assert "Invalid entries" in body and "broken" in body


def test_md_escapes_every_markdown_character_and_bounds_length():
    assert md("a*b_c`d~e|f<g>h[i]j(k)l!m#n\\o") == "a\\*b\\_c\\`d\\~e\\|f\\<g\\>h\\[i\\]j\\(k\\)l\\!m\\#n\\\\o"
    assert md("line one\nline two\r\n\tend") == "line one line two end"
    assert md("x" * 500, limit=10) == "x" * 9 + "…"


def test_the_content_hash_ignores_who_wrote_it_and_when_but_not_the_state():
    target = _target()
    read, result = _decided(target, ["One", "Two"])
    first = render(target, read, result, run_id="r1", now=NOW, next_cycle=NOW)
    again = render(target, read.model_copy(update={"commit_sha": "b" * 40}), result, run_id="r2",
                   now=datetime(2026, 12, 2, tzinfo=UTC), next_cycle=None)
    assert first.content_hash == again.content_hash and first.body != again.body
    assert "next cycle after it was due 2026-12-01 12:00 UTC" in first.body and "due unknown" in again.body
    read2, result2 = _decided(target, ["One", "Two changed"])
    assert render(target, read2, result2, run_id="r1", now=NOW, next_cycle=NOW).content_hash != first.content_hash
    off = GuardrailResult.model_validate({**result.model_dump(), "decision": {
        **result.decision.model_dump(), "decision": "skip", "reasons": ["circuit_breaker_open"]}})
    assert render(target, read, off, run_id="r1", now=NOW, next_cycle=NOW).content_hash != first.content_hash
    assert "Autonomy: **off** · circuit breaker: **closed**" in first.body
    tripped = result.decision.model_copy(update={"checks": [
        c.model_copy(update={"passed": False}) if c.name == "circuit_breaker" else c for c in result.decision.checks]})
    body = render(target, read, result.model_copy(update={"decision": tripped}), run_id="r1", now=NOW,
                  next_cycle=NOW).body
    assert "circuit breaker: **open (attempts stopped)**" in body


def test_a_huge_backlog_stays_under_githubs_body_limit():
    target = _target()
    read, result = _decided(target, [f"Task {i} " + "w" * 100 for i in range(MAX_TASKS + 50)])
    dashboard = render(target, read, result, run_id="r", now=NOW, next_cycle=None)
    assert len(dashboard.body) < 65_536 and len(dashboard.content) <= MAX_BODY + 100
    assert "50 more task(s) not shown" in dashboard.body or "cut" in dashboard.body


def test_a_cycle_stopped_before_its_guardrails_says_why():
    target = _target()
    read = ReadResult(repo_url="/tmp/t1.git", branch="main", backlog_path=".leviathan/backlog.yaml",
                      error=CycleError(code="backlog_invalid", message="tasks[0].title: <b>bad</b>"))
    body = render(target, read, GuardrailResult(error=read.error), run_id="r", now=NOW, next_cycle=None).body
    assert "Stopped before the guardrails" in body and "backlog\\_invalid" in body and "<b>" not in body


def test_next_cycle_follows_the_effective_schedule_or_is_unknown():
    assert next_cycle("*/5 * * * *", NOW) == datetime(2026, 12, 1, 12, 5, tzinfo=UTC)
    assert next_cycle("@daily", NOW) == datetime(2026, 12, 2, tzinfo=UTC)
    assert next_cycle("not a cron", NOW) is None


# -- sync -------------------------------------------------------------------------------------------------

@pytest.fixture
def local(tmp_path):
    bare = init_bare(tmp_path / "t1.git")
    return LocalForge(bare)


def _never() -> LocalForge:
    raise AssertionError("the forge must not be opened")


def test_unchanged_content_opens_no_forge_and_a_replay_or_an_off_switch_neither(local):
    target = _target()
    read, result = _decided(target, ["One"])
    created = sync_dashboard(target, read, result, run_id="r1", written_at=NOW, open_forge=lambda: local)
    assert created is not None and created.kind == "dashboard_created"
    record = CycleRecord(target_id="t1", dag_run_id="r1", recorded_at=NOW, decision="skip", stopped_reason="x",
                         dashboard=created)
    result.ledger = Ledger().with_cycle(record)
    assert result.ledger.dashboard.number == created.number
    assert sync_dashboard(target, read, result, run_id="r2", written_at=NOW, open_forge=_never) is None
    replay = read.model_copy(update={"as_of": NOW})
    assert sync_dashboard(target, replay, result, run_id="r3", written_at=NOW, open_forge=_never) is None
    assert sync_dashboard(_target(dashboard=False), read, result, run_id="r4", written_at=NOW,
                          open_forge=_never) is None


def test_a_forge_that_cannot_be_opened_is_a_reason_code_not_a_failure():
    target = _target()
    read, result = _decided(target, ["One"])

    def broken() -> LocalForge:
        raise ForgeError("local forge repository /nowhere does not exist")

    action = sync_dashboard(target, read, result, run_id="r1", written_at=NOW, open_forge=broken)
    assert action is not None and action.kind == "dashboard_update_failed" and action.error_code == "forge_error"
    assert "/nowhere" in action.detail


def test_a_retried_plan_rewrites_nothing(local):
    """``written_at`` is the run's time, so the same run renders the same body: no second write."""
    target = _target()
    read, result = _decided(target, ["One"])
    first = sync_dashboard(target, read, result, run_id="r1", written_at=NOW, open_forge=lambda: local)
    record = CycleRecord(target_id="t1", dag_run_id="r0", recorded_at=NOW, decision="skip", stopped_reason="x",
                         dashboard=DashboardAction(kind="dashboard_created", number=first.number, content_hash="old",
                                                   body_sha256=first.body_sha256))
    result.ledger = Ledger().with_cycle(record)
    stamp = local.path / "leviathan" / "issues" / "1.json"
    before = stamp.stat().st_mtime_ns
    retried = sync_dashboard(target, read, result, run_id="r1", written_at=NOW, open_forge=lambda: local)
    assert retried.kind == "dashboard_updated" and not retried.overwrote_edit
    assert stamp.stat().st_mtime_ns == before and len(local.list_issues()) == 1


def test_the_ledger_keeps_the_newest_settled_prs_and_events_show_the_dashboard():
    changes = [PrStateChange(number=n, task_id=f"t{n}", branch=f"agent/t{n}/1", state="merged") for n in range(30)]
    record = CycleRecord(target_id="t1", dag_run_id="r1", recorded_at=NOW, decision="skip", stopped_reason="x",
                         pr_sync=changes, dashboard=DashboardAction(kind="dashboard_closed", number=4,
                                                                    content_hash="h"))
    state = DashboardState().with_cycle(record)
    assert [p.number for p in state.settled_prs] == list(range(10, 30)) and state.closed and state.number == 4
    failed = record.model_copy(update={"pr_sync": [], "dashboard": DashboardAction(
        kind="dashboard_update_failed", number=4, error_code="forge_error")})
    assert state.with_cycle(failed) == state  # a failure changes nothing Leviathan knows about the issue
    events = events_from([(7, NOW, "r1", record.model_dump(mode="json"))])
    [dash] = [e for e in events if e.type.startswith("dashboard.")]
    assert dash.type == "dashboard.closed" and dash.data["number"] == 4
    assert _row(failed)["lifecycle"] == "dashboard #4 update_failed (forge_error)"  # `leviathan evidence`


def test_ci_of_open_prs_is_shown_with_hostile_check_names_inert():
    from leviathan_lib.evidence.records import LedgerPR, LifecycleAction

    target = _target()
    read, result = _decided(target, ["one"])
    result.ledger = Ledger(open_prs=[LedgerPR(number=3, task_id="task-0", branch="agent/task-0/1", task_hash="h",
                                              head_sha="b" * 40)])
    detail = "failing: " + ", ".join(HOSTILE)
    result.lifecycle = [LifecycleAction(kind="ci_failed", number=3, task_id="task-0", branch="agent/task-0/1",
                                        head_sha="b" * 40, ci_state="failure", detail=detail)]
    body = render(target, read, result, run_id="manual__1", now=NOW, next_cycle=None).body
    line = next(ln for ln in body.splitlines() if ln.startswith("- open: #3"))
    assert "CI **failure**" in line
    html = _html(line)
    for tag in ("<a ", "<img", "<script", "<!--"):
        assert tag not in html, tag
    for raw in ("@octocat", "#1 ", "https://"):
        assert raw not in line, raw


# -- approval gates and until when ------------------------------------------------------------------------

def _ready(target_yaml: str) -> tuple:
    target = parse_target("target_id: t1\ntarget_repo_url: /tmp/t1.git\ndashboard: true\nautonomy_enabled: true\n"
                          f"allowed_path_prefixes: [docs/]\n{target_yaml}", "t1.yaml")
    read = ReadResult(repo_url="/tmp/t1.git", branch="main", commit_sha="a" * 40,
                      backlog_path=".leviathan/backlog.yaml", recipes_text='recipes:\n  w:\n    steps: [["true"]]\n',
                      backlog_text="tasks:\n  - id: a\n    title: A\n    ready: true\n    recipe: w\n"
                                   "    allowed_paths: [docs/a.md]\n")
    return target, read


def _decide(target, read, state: CycleState) -> GuardrailResult:
    return build_decision(DecisionInputs(target=target, read=read, state=state, sandbox=SandboxSeen()))


def test_an_hourly_skip_says_until_when_in_the_decision_line():
    target, read = _ready("")
    opened = [datetime(2026, 12, 1, 11, 5, 30, tzinfo=UTC), datetime(2026, 12, 1, 11, 40, tzinfo=UTC)]
    result = _decide(target, read, CycleState(now=NOW, prs_opened_at=opened))
    body = render(target, read, result, run_id="r", now=NOW, next_cycle=None).body
    decision = body.split("### Decision\n\n", 1)[1].split("\n", 1)[0]
    assert decision.startswith("**Skip**: `pr_hourly_limit`: ")
    # an hour after the older PR, the minute rounded up
    detail = md("2 PR(s) opened in the last hour, limit 2; next PR after 12:06 UTC")
    assert decision.endswith(f"(prs\\_per\\_hour: {detail})")


def test_a_gated_run_awaits_approval_and_a_rejection_shows_the_task_waiting_with_its_reason(local):
    from leviathan_lib.evidence.records import ApprovalEvidence, LedgerRejected

    target, read = _ready("approval: plan\napproval_timeout_seconds: 3600\n")
    result = _decide(target, read, CycleState(now=NOW))
    planned = render(target, read, result, run_id="r", now=NOW, next_cycle=None).body
    assert ("**Run**: task a, attempt 1 on branch agent\\/a\\/1; awaiting approval since 12:00 UTC; rejected without "
            "an answer after 13:00 UTC (the plan, in Airflow's Required Actions)") in planned
    assert "| a | A | **selected** |" in planned

    created = sync_dashboard(target, read, result, run_id="r", written_at=NOW, open_forge=lambda: local)
    rejection = ApprovalEvidence(gate="plan", task_id="a", task_hash=result.attempt.task_hash, choice="rejected",
                                 reason="human", by="alice", by_name="Alice", at=NOW, note="@team <b>too broad</b>")
    after = result.model_copy(update={"dashboard": created})
    rewritten = sync_dashboard(target, read, after, run_id="r", written_at=NOW, open_forge=lambda: local,
                               rejection=rejection)
    assert rewritten.kind == "dashboard_updated" and rewritten.number == created.number  # the same issue
    [issue] = local.list_issues()
    why = md("rejected by Alice at 2026-12-01 12:00 UTC: @team <b>too broad</b>", 400)
    assert f"**Rejected at the approval gate**: task a — {why}; it waits until its definition changes" in issue.body
    assert "**selected**" not in issue.body and "awaiting approval" not in issue.body
    assert "<b>" not in issue.body and "@team" not in issue.body  # the reason is inert
    [row] = [line for line in issue.body.splitlines() if line.startswith("| a | A |")]
    assert row.startswith("| a | A | no | `rejected_by_human`: ") and why in row

    # The next cycle: the ledger remembers who, when and why; the task waits with them.
    ledger = Ledger(rejected=[LedgerRejected(task_id="a", task_hash=rejection.task_hash, by="Alice", at=NOW,
                                             note=rejection.note)])
    later = _decide(target, read, CycleState(
        now=NOW, closed_prs=[ClosedPR(task_id="a", task_hash=rejection.task_hash, by_human_gate=True)]))
    later = later.model_copy(update={"ledger": ledger})
    body = render(target, read, later, run_id="r2", now=NOW, next_cycle=None).body
    [row] = [line for line in body.splitlines() if line.startswith("| a | A |")]
    assert "`rejected_by_human`" in row and why in row
