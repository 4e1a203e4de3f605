"""The Leviathan view (``/leviathan/ui``) in process: real app, real metadata DB, real demo repositories.

Users are SimpleAuthManager users with JWTs signed by the configured auth manager, sent as the Airflow UI's
``_token`` cookie (as a browser does) or as a bearer token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from leviathan_lib.core import names
from leviathan_lib.core.names import evidence_asset_uri
from leviathan_lib.demo import create_demo_target
from tests.airflow_helpers import commit_file, evidence_record, run_cycle, set_switch

EVIL = "<script>alert(1)</script>'\"&"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#39;&#34;&amp;"
BASE = "http://testserver"
SAME_ORIGIN = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}


def _token(user: str, role: str) -> str:
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role=role))


@pytest.fixture(scope="module")
def app(airflow_db):
    from leviathan_lib.spider.app import create_app

    return create_app()


def _browser(app, user: str, role: str) -> TestClient:
    client = TestClient(app, base_url=BASE)
    client.cookies.set("_token", _token(user, role))
    return client


@pytest.fixture
def admin(app):
    return _browser(app, "admin", "admin")


@pytest.fixture
def viewer(app):
    return _browser(app, "viewer", "viewer")


@pytest.fixture
def switch_variable():
    yield
    set_switch(True)


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)


def _variable():
    from airflow.models.variable import Variable

    return Variable.get("leviathan_autonomy_enabled", default_var=None)


def _write_extra(target_id: str, extra) -> None:
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == evidence_asset_uri(target_id)))
        asset_manager.register_asset_change(asset=asset, extra=extra, session=session)


def _hostile_backlog(repo: Path, work: Path) -> None:
    commit_file(repo, work, ".leviathan/backlog.yaml", f"""tasks:
  - id: evil-task
    title: {json.dumps(EVIL)}
    description: x
    ready: true
    status: pending
    recipe: nope
    allowed_paths: [docs/]
  - id: later
    title: "later <b>bold</b>"
    ready: false
""", "hostile titles")


def test_csp_allows_only_the_view_s_own_style_and_script(viewer, targets_dir):
    page = viewer.get("/ui")
    assert page.status_code == 200, page.text
    csp = page.headers["content-security-policy"]
    style = re.search(r"<style>(.*?)</style>", page.text, re.S).group(1)
    script = re.search(r"<script>(.*?)</script>", page.text, re.S).group(1)

    def digest(text: str) -> str:
        return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert [d.strip() for d in csp.split(";")] == [
        "default-src 'none'", f"style-src '{digest(style)}'", f"script-src '{digest(script)}'", "img-src 'self'",
        "frame-ancestors 'self'", "base-uri 'none'", "form-action 'self'"]
    assert page.text.count("<script") == 1 and "unsafe-inline" not in csp and " on" not in script.split("(")[0]
    assert page.headers["x-frame-options"] == "SAMEORIGIN"


def test_anonymous_gets_a_sign_in_page_not_json(app):
    page = TestClient(app, base_url=BASE).get("/ui")
    assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
    assert "Sign in" in page.text and "/auth/login/" in page.text


def test_fleet_and_target_pages_escape_hostile_backlog_titles_and_explain_skips(tmp_path, targets_dir, viewer):
    target_file = create_demo_target(tmp_path, target_id="view_evil", targets_dir=targets_dir)
    run, _ = run_cycle(target_file)  # opens PR #1 on the demo's first task
    assert evidence_record(run)["stopped_reason"] == "pr_opened"
    _hostile_backlog(tmp_path / "repos" / "view_evil.git", tmp_path / "work")
    run_cycle(target_file)  # pins the hostile commit (a skip: the open PR holds the target)
    fleet = viewer.get("/ui")
    assert fleet.status_code == 200
    row = re.search(r'<tr data-target="view_evil">.*?</tr>', fleet.text, re.S).group(0)
    assert 'href="/leviathan/ui/targets/view_evil/prs/1"' in row  # the local forge's PR: the view's own page
    assert "<form" not in fleet.text and 'id="read-only"' in fleet.text  # a viewer gets no controls

    page = viewer.get("/ui/targets/view_evil")
    assert page.status_code == 200, page.text
    # May run now is the decision's answer: the open PR holds the target, so "no", with the failed check.
    assert '<strong id="decision">skip</strong>' in page.text
    assert 'May run now: <span class="badge no">no</span>' in page.text
    why_not = re.search(r'<ul class="reasons why-not">(.*?)</ul>', page.text, re.S).group(1)
    assert "<li>open_prs: 1 open agent/ PR(s), limit 1</li>" in why_not
    assert "<script>alert" not in page.text and "<b>bold</b>" not in page.text
    assert ESCAPED in page.text and "later &lt;b&gt;bold&lt;/b&gt;" in page.text
    evil_row = re.search(r'<tr data-task="evil-task">.*?</tr>', page.text, re.S).group(0)
    assert "invalid_task" in evil_row  # unknown recipe: as `leviathan plan` reports it
    later_row = re.search(r'<tr data-task="later">.*?</tr>', page.text, re.S).group(0)
    assert "not_ready" in later_row and "not marked ready: true by a human" in later_row
    assert f'href="/dags/{names.dag_id("view_evil")}/runs/' in page.text  # records link to their DAG run
    for label in ("Cycles by decision", "Attempts by outcome", "PRs opened, merged and closed",
                  "Lead time from ready to merged"):
        assert re.search(rf'<svg class="chart" role="img" [^>]*aria-label="{label}', page.text), label
    assert "run 1" in re.search(r'aria-label="Cycles by decision[^"]*"', page.text).group(0)

    pr = viewer.get("/ui/targets/view_evil/prs/1")
    assert pr.status_code == 200 and 'id="pr-diff"' in pr.text and "agent/" in pr.text
    _pr_page_renders_reviews_and_comments_inert_and_follows_the_state(viewer, tmp_path / "repos" / "view_evil.git")


def _pr_page_renders_reviews_and_comments_inert_and_follows_the_state(viewer, repo: Path) -> None:
    from leviathan_lib.forge.local import LocalForge

    forge = LocalForge(repo)
    token = "ghp_" + "a1B2" * 9
    forge.review(1, author="alice", state="COMMENTED", body="Looks **fine**; see [docs](https://example.com/d)")
    forge.comment(1, f"{EVIL} [x](javascript:alert(1)) <img src=x onerror=alert(1)> {token} <!-- hidden?",
                  author="mallory")
    forge.comment(1, "Noted: nothing to do.")  # Leviathan's own reply (its login)
    page = viewer.get("/ui/targets/view_evil/prs/1")
    assert page.status_code == 200 and page.text.count("<script") == 1  # the view's own script only
    body = re.search(r'<div class="markdown" id="pr-body">(.*?)</div>', page.text, re.S).group(1)
    assert "<h2>Task</h2>" in body and "<table>" in body and '<ul class="contains-task-list">' in body
    notes = re.search(r'<div id="pr-notes">(.*?)</div>\n<h3>', page.text, re.S).group(1)
    assert [m for m in re.findall(r"<strong>(\w+)</strong>", notes) if m != "fine"] == ["alice", "mallory",
                                                                                        "leviathan"]
    assert notes.count('class="note own"') == 1 and "Looks <strong>fine</strong>" in notes
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in notes and "&lt;img src=x onerror=alert(1)&gt;" in notes
    assert "&lt;!-- hidden?" in notes and token not in page.text and "[REDACTED:github_token]" in notes
    assert "javascript:" not in re.sub(r"\[x\]\(javascript:alert\(1\)\)", "", notes)  # text, never a link
    assert re.search(r'<span class="d-add">\+', page.text) and re.search(r'<span class="d-del">-', page.text)
    assert "leviathan forge merge" in page.text and "Open for review" in page.text
    forge.close_pr(1)
    closed = viewer.get("/ui/targets/view_evil/prs/1").text
    assert "Closed without merging" in closed and "forge merge" not in closed and "Open for review" not in closed


def test_bad_input_pages_render_and_say_what_is_unknown(tmp_path, targets_dir, viewer):
    (targets_dir / "broken.yaml").write_text("target_id: [not, a, string\n")  # no id: the file name's
    (targets_dir / "Not An Id.yaml").write_text("target_id: [not, a, string\n")  # no id at all
    target_file = create_demo_target(tmp_path, target_id="view_fresh", targets_dir=targets_dir)
    fleet = viewer.get("/ui")
    assert fleet.status_code == 200
    row = re.search(r'<tr data-target="broken" class="config-invalid">.*?</tr>', fleet.text, re.S).group(0)
    assert "config_invalid" in row and "broken.yaml:2: invalid YAML" in row
    assert "Not An Id.yaml" in re.search(r'<table id="broken">.*?</table>', fleet.text, re.S).group(0)
    assert "no cycle yet" in re.search(r'<tr data-target="view_fresh">.*?</tr>', fleet.text, re.S).group(0)
    fresh = viewer.get("/ui/targets/view_fresh")
    assert fresh.status_code == 200 and "no cycle yet" in fresh.text
    broken = viewer.get("/ui/targets/broken")
    assert broken.status_code == 200 and 'id="config-invalid"' in broken.text and 'id="records"' in broken.text
    assert viewer.get("/ui/targets/not-an-id").status_code == 404
    missing = viewer.get("/ui/targets/nope")
    assert missing.status_code == 404 and "no configured target" in missing.text
    assert viewer.get("/ui/targets/view_fresh?days=5&page=x").status_code == 200

    # The repository (the local forge) cannot be reached: the backlog at the pinned commit is unknown, with the
    # reason; an unreadable evidence record is listed, flagged and counted; the page still renders.
    run_cycle(target_file)
    _write_extra("view_fresh", {"kind": "cycle", "target_id": "view_fresh", "decision": "maybe"})
    repo = tmp_path / "repos" / "view_fresh.git"
    repo.rename(tmp_path / "gone.git")
    page = viewer.get("/ui/targets/view_fresh")
    assert page.status_code == 200 and 'id="unreadable"' in page.text and '<tr class="unreadable">' in page.text
    assert "Backlog verdicts unknown: repo_unreachable" in page.text
    # What the last cycle recorded is still shown.
    assert "The last cycle's verdicts" in page.text and 'data-task="docs-quickstart"' in page.text
    assert viewer.get("/ui/targets/view_fresh/prs/1").status_code == 404
    assert "unknown: the forge cannot be read" in viewer.get("/ui/targets/view_fresh/prs/1").text


def test_viewer_is_refused_and_csrf_is_required(tmp_path, targets_dir, admin, viewer, switch_variable):
    create_demo_target(tmp_path, target_id="view_guard", targets_dir=targets_dir)
    token = _csrf(admin.get("/ui").text)
    body = {"enabled": "false", "reason": "r", "csrf_token": token}
    # A viewer, even with an admin's token and from the same origin, is refused.
    refused = viewer.post("/ui/actions/autonomy", data=body, headers=SAME_ORIGIN, follow_redirects=False)
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
    assert viewer.post("/ui/targets/view_guard/pause", data=body, headers=SAME_ORIGIN).status_code == 403
    assert viewer.post("/ui/targets/view_guard/reset-breaker", data=body, headers=SAME_ORIGIN).status_code == 403
    # An admin without the CSRF token, with another login's token, or cross-origin, is refused.
    other = _csrf(_browser(admin.app, "admin2", "admin").get("/ui").text)
    for data, headers in (({**body, "csrf_token": ""}, SAME_ORIGIN), ({k: v for k, v in body.items()
                          if k != "csrf_token"}, SAME_ORIGIN), ({**body, "csrf_token": other}, SAME_ORIGIN),
                          (body, {"Origin": "https://evil.example"}), (body, {})):
        assert admin.post("/ui/actions/autonomy", data=data, headers=headers).status_code == 403
    assert _variable() == "true"
    # No reason: refused, nothing changes.
    assert admin.post("/ui/actions/autonomy", data={**body, "reason": "  "}, headers=SAME_ORIGIN).status_code == 400
    assert _variable() == "true"
    done = admin.post("/ui/actions/autonomy", data=body, headers=SAME_ORIGIN, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/leviathan/ui?done=autonomy-off"
    assert _variable() == "false"
    page = admin.get("/ui?done=autonomy-off").text
    assert "Global autonomy switched OFF" in page and "Switch autonomy ON" in page
    assert admin.get(f"/ui?done={EVIL}").text.count("<script") == 1  # only fixed notices are shown
    bad = admin.post("/ui/targets/Bad..Id/pause", data=body, headers=SAME_ORIGIN)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    assert admin.post("/ui/targets/not_configured/pause", data=body, headers=SAME_ORIGIN).status_code == 404


def test_admin_pauses_resumes_and_resets_on_the_record(tmp_path, targets_dir, admin, viewer):
    from leviathan_lib.control.evidence_db import read_events

    create_demo_target(tmp_path, target_id="view_admin", targets_dir=targets_dir)
    cursor = 0  # the newest event so far (the session's DB may hold more than one page of them)
    while page := read_events(after=cursor, limit=1000):
        cursor = page[-1].id
    token = _csrf(admin.get("/ui").text)
    page = admin.get("/ui/targets/view_admin").text
    assert "/view_admin/pause" not in page and "/view_admin/resume" not in page  # no DAG yet: nothing to pause
    run_cycle(targets_dir / "view_admin.yaml")  # parses the DAG into the metadata DB
    page = admin.get("/ui/targets/view_admin").text
    form = "pause" if 'action="/leviathan/ui/targets/view_admin/pause"' in page else "resume"
    done = admin.post(f"/ui/targets/view_admin/{form}", data={"reason": f"test {form}", "csrf_token": token},
                      headers=SAME_ORIGIN, follow_redirects=False)
    assert done.status_code == 303, done.text
    done = admin.post("/ui/targets/view_admin/reset-breaker", data={"reason": "fixed it", "csrf_token": token},
                      headers=SAME_ORIGIN, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("?done=breaker-reset")
    events = [e for e in read_events(after=cursor, limit=1000) if e.target_id == "view_admin"]
    kinds = [(e.type, e.data.get("by"), e.data.get("reason")) for e in events
             if e.type in ("autonomy.changed", "breaker.reset")]
    assert kinds == [("autonomy.changed", "admin", f"test {form}"), ("breaker.reset", "admin", "fixed it")]
    page = viewer.get("/ui/targets/view_admin").text
    assert "by admin: fixed it" in page and f"by admin: test {form}" in page  # who and why, on the page


def test_fleet_page_escapes_every_value_from_records_and_files():
    from leviathan_lib.control.fleet import Overview, TargetState
    from leviathan_lib.core.config import TargetConfig
    from leviathan_lib.core.target_scan import TargetFile
    from leviathan_lib.evidence.records import History
    from leviathan_lib.spider.view import Viewer, render_fleet

    state = TargetState(target_id="t1", dag_id="leviathan__x' onmouseover='alert(1)", target_flag=True,
                        dag_paused=False, breaker_open=False, consecutive_failures=0, breaker_threshold=2,
                        effective_enabled=True, last_decision=EVIL, last_stopped_reason=EVIL, last_reasons=[EVIL],
                        open_prs=[{"number": 7, "branch": EVIL, "task_id": EVIL}], llm_budget_detail=EVIL)
    target = TargetConfig.model_validate({"target_id": "t1", "target_repo_url": "/r.git"})
    overview = Overview(global_enabled=True, global_detail=EVIL, targets=[state],
                        unnamed_files=[TargetFile(name=EVIL, path="/x", problems=[EVIL])])
    page = render_fleet(Viewer(EVIL, True, "c0ffee"), overview, {"t1": History()}, {"t1": target}, next_runs={})
    assert page.count("<script") == 1 and "<b>" not in page and "onmouseover='" not in page
    # switch detail, user, decision, stopped reason, budget, the PR's task, the broken file's name and problem
    assert page.count(ESCAPED) == 8
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;&#39;&#34;&amp;</td></tr>") == 1  # the file's problem


def test_pr_links_go_to_the_forge_or_to_the_view_s_own_page():
    from leviathan_lib.control.target_view import pr_link
    from leviathan_lib.core.config import TargetConfig

    github = TargetConfig.model_validate({"target_id": "g", "target_repo_url": "https://github.com/acme/shop.git",
                                          "forge": "github"})
    local = TargetConfig.model_validate({"target_id": "l", "target_repo_url": "/r.git"})
    assert pr_link(github, 5, None) == "https://github.com/acme/shop/pull/5"
    assert pr_link(github, 5, "https://github.com/acme/shop/pull/5") == "https://github.com/acme/shop/pull/5"
    assert pr_link(local, 5, "file:///r.git#pull/5") is None  # a browser cannot open file://: the view's page
    assert pr_link(github, 5, "javascript:alert(1)") == "https://github.com/acme/shop/pull/5"


def test_a_merged_pr_shows_its_lead_time_and_counts_in_the_charts(tmp_path, targets_dir, viewer):
    from leviathan_lib.forge.local import LocalForge

    target_file = create_demo_target(tmp_path, target_id="view_merge", targets_dir=targets_dir)
    run_cycle(target_file)  # PR #1 for docs-quickstart
    LocalForge(tmp_path / "repos" / "view_merge.git").merge(1)  # a human merges it
    second, _ = run_cycle(target_file)  # sees #1 merged, opens #2 for the next task
    assert [c["state"] for c in evidence_record(second)["pr_sync"]] == ["merged"]
    page = viewer.get("/ui/targets/view_merge?days=30").text
    prs = re.search(r'<table id="prs">.*?</table>', page, re.S).group(0)
    first_row = re.search(r"<tr><td><a class=\"pr\"[^>]*>#1</a>.*?</tr>", prs, re.S).group(0)
    assert "merged" in first_row and re.search(r"\d+\.\d+ h", first_row)
    assert re.search(r'aria-label="Lead time from ready to merged per PR, last 30 days: #1 docs-quickstart [\d.]+ h"',
                     page)
    assert re.search(r'aria-label="PRs opened, merged and closed[^"]*opened 2, merged 1, closed 0"', page)


def test_the_attempts_table_shows_each_attempts_checks(tmp_path, targets_dir, viewer):
    """The repository's checks of an attempt, on the pinned commit and on the change; names escaped."""
    target_file = create_demo_target(tmp_path, target_id="view_checks", targets_dir=targets_dir)
    commit_file(tmp_path / "repos" / "view_checks.git", tmp_path / "work", ".leviathan/recipes/write_doc.py",
                "from pathlib import Path\nPath('docs/quickstart.md').write_text('# Q\\n\\nTODO\\n')\n", "a TODO")
    dag_run, _ = run_cycle(target_file)
    assert evidence_record(dag_run)["attempt"]["error_code"] == "checks_failed"
    page = viewer.get("/ui/targets/view_checks?days=7").text
    attempts = re.search(r'<table id="attempts">.*?</table>', page, re.S).group(0)
    assert "<th>Checks <small>(pinned commit → change)</small></th>" in attempts
    cell = re.search(r'<td class="checks">(.*?)</td>', attempts, re.S).group(1)
    assert cell == '<code>lint-docs</code> pass → <span class="badge no">FAIL(1)</span>'


def test_hostile_ci_text_is_escaped_on_the_target_page_and_counted_by_state(tmp_path, targets_dir, viewer):
    from leviathan_lib.cli.main import main

    target_file = create_demo_target(tmp_path, target_id="view_ci", targets_dir=targets_dir)
    run_cycle(target_file)  # PR #1
    bare = tmp_path / "repos" / "view_ci.git"
    secret = "ghp_" + "Vw3" * 12
    assert main(["forge", "status", "--repo", str(bare), "1", "--context", EVIL, "--state", "failure",
                 "--description", f"{EVIL} @octocat token {secret}"]) == 0
    run_cycle(target_file)  # reads the red CI and fixes it: the new head has no CI yet
    page = viewer.get("/ui/targets/view_ci?days=30").text
    prs = re.search(r'<table id="prs">.*?</table>', page, re.S).group(0)
    assert "CI failure" in prs and "<script>alert" not in prs and secret not in page
    assert prs.count(ESCAPED) == 3  # the check's name in the detail, and its name and summary in the report
    assert "[REDACTED:github_token]" in prs
    fleet = viewer.get("/ui").text
    assert re.search(r'<tr data-target="view_ci">.*?CI none.*?</tr>', fleet, re.S)
    metrics = viewer.get("/metrics").text
    assert 'leviathan_pr_ci_state{state="none",target_id="view_ci"} 1.0' in metrics
    assert 'leviathan_pr_ci_state{state="failure",target_id="view_ci"} 0.0' in metrics


def test_a_reverted_pr_stays_merged_on_the_page_marked_reverted_and_counted(tmp_path, targets_dir, viewer):
    from leviathan_lib.forge.local import LocalForge
    from leviathan_lib.git.runner import run_git

    target_file = create_demo_target(tmp_path, target_id="view_revert", targets_dir=targets_dir)
    bare, work = tmp_path / "repos" / "view_revert.git", tmp_path / "human"
    run_cycle(target_file)  # PR #1
    merge = LocalForge(bare).merge(1).merge_sha
    run_cycle(target_file)  # sees #1 merged
    run_git(["clone", "--quiet", str(bare), str(work)])
    run_git(["revert", "--no-edit", "-m", "1", merge], cwd=work)
    run_git(["push", "--quiet", "origin", "HEAD:main"], cwd=work)
    record = evidence_record(run_cycle(target_file)[0])
    assert [c["state"] for c in record["pr_sync"]] == ["reverted"]
    page = viewer.get("/ui/targets/view_revert?days=30").text
    prs = re.search(r'<table id="prs">.*?</table>', page, re.S).group(0)
    row = re.search(r"<tr><td><a class=\"pr\"[^>]*>#1</a>.*?</tr>", prs, re.S).group(0)
    assert "merged" in row and "reverted" in row
    assert re.search(r'aria-label="PRs opened, merged and closed[^"]*merged 1', page)
    assert 'leviathan_prs_reverted_total{target_id="view_revert"} 1.0' in viewer.get("/metrics").text


def _state(**fields):
    from leviathan_lib.control.fleet import TargetState

    base = {"target_id": "t1", "dag_id": "leviathan__t1", "target_flag": True, "dag_paused": False,
            "breaker_open": False, "consecutive_failures": 0, "breaker_threshold": 2, "effective_enabled": True}
    return TargetState(**{**base, **fields})


def test_may_run_now_never_contradicts_the_decision_and_time_bound_skips_say_until_when():
    from datetime import UTC, datetime, timedelta

    from leviathan_lib.control.target_view import BacklogView
    from leviathan_lib.core import until
    from leviathan_lib.spider.view import decision_why_not, why_not

    free = datetime.now(UTC) + timedelta(minutes=20)
    state = _state(next_pr_at=free, breaker_open=True, consecutive_failures=2, effective_enabled=False)
    # The fleet page (no decision): every reason, each time-bound one with until when.
    assert why_not(state, True) == [
        f"circuit breaker open (2/2 failures): {until.BREAKER_UNTIL}",
        f"pr_hourly_limit: {until.next_pr_after(free, datetime.now(UTC))}"]
    # The target page with a decision: the guardrails' failed checks, in their words, never a second version.
    hourly = f"2 PR(s) opened in the last hour, limit 2; {until.next_pr_after(free, datetime.now(UTC))}"
    skip = BacklogView(decision="skip", reasons=["pr_hourly_limit"], checks=[
        {"name": "autonomy", "passed": True, "detail": "on"},
        {"name": "prs_per_hour", "passed": False, "detail": hourly}])
    assert why_not(_state(next_pr_at=free), True, decided=True) == []
    assert decision_why_not(skip) == [f"prs_per_hour: {hourly}"]
    no_task = BacklogView(decision="skip", reasons=["no_eligible_task"], checks=[])
    assert decision_why_not(no_task) == ["no_eligible_task: no task in the backlog may run now (see each task)"]
    assert decision_why_not(BacklogView(decision="run", selected_task="a")) == []
    assert decision_why_not(BacklogView(unknown="repo_unreachable: x")) == []
    # Paused DAGs and unreadable records are not in the decision: they stay.
    assert why_not(_state(dag_paused=True, unreadable_records=1), False, decided=True) == [
        "its DAG is paused", "1 unreadable evidence record(s): the breaker is treated as open"]


def test_a_waiting_approval_is_on_the_fleet_page_escaped_with_its_required_action_link():
    from datetime import UTC, datetime, timedelta

    from leviathan_lib.control.approvals import PendingApproval
    from leviathan_lib.control.fleet import Overview
    from leviathan_lib.core import until
    from leviathan_lib.evidence.records import History
    from leviathan_lib.spider import metrics
    from leviathan_lib.spider.view import Viewer, render_fleet

    since = datetime.now(UTC) - timedelta(minutes=5)
    waiting = PendingApproval(dag_id="leviathan__t1", run_id="manual__2026-12-07T13:20:00+00:00",
                              gate_task="approve_plan", subject=f"t1 / {EVIL}: approve the plan (attempt 1)",
                              since=since, rejects_at=since + timedelta(hours=24))
    overview = Overview(global_enabled=True, global_detail="on", targets=[_state(approvals=[waiting])])
    page = render_fleet(Viewer("v", False, ""), overview, {"t1": History()}, {}, next_runs={})
    row = re.search(r'<tr data-target="t1">.*?</tr>', page, re.S).group(0)
    assert waiting.text() in row and waiting.text().startswith(f"awaiting approval since {until.clock(since)}; ")
    assert ('href="/dags/leviathan__t1/runs/manual__2026-12-07T13%3A20%3A00%2B00%3A00/tasks/approve_plan/'
            'required_actions"') in row
    assert f"t1 / {ESCAPED}: approve the plan" in row and "<script>alert" not in page
    # ... and in /metrics (the fleet overview feeds both)
    assert 'leviathan_approvals_pending{target_id="t1"} 1.0' in metrics.render(overview).decode()
