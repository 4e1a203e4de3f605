"""The Leviathan view in a real browser: Debian's chromium, driven by Playwright, against a real ``airflow
api-server`` whose evidence comes from real cycles (``dag.test()``) of the demo target.

An operator and a repo owner answer their questions in the view, without a terminal: is it on, why not
my task, what did it do, stop it now; a viewer sees the same state but cannot change it. With
``LEVIATHAN_SCREENSHOTS=<dir>`` set (scripts/screenshots.sh), each page is also saved there as a PNG.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from leviathan_lib.cli.main import main as leviathan
from leviathan_lib.core import names
from leviathan_lib.core.config import load_target
from leviathan_lib.demo import create_demo_target
from tests.airflow_helpers import evidence_record, run_cycle, scheduler_heartbeat, set_switch
from tests.api_server import ApiServer
from tests.browser import chromium, leviathan_frame, login, needs_chromium, new_page

pytestmark = [pytest.mark.browser, needs_chromium]
TARGET = "shop"
LIVE = "live"
SHOTS = os.environ.get("LEVIATHAN_SCREENSHOTS")
TOKEN = "ghp_" + "Z9y8" * 9  # a token shape: the page shows it redacted
#: A comment that tries everything: markup, an event handler, a javascript: link, a token, an unclosed comment.
HOSTILE = ("<script>window.pwned = 1</script> <img src=x onerror=\"window.pwned = 2\"> "
           f"[click me](javascript:window.pwned=3) @octocat please look; my token {TOKEN} "
           "<!-- everything after this stays visible")


def _shot(page, name: str, *, full_page: bool = True) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, airflow_db):
    """The demo target with two real cycles (PR #1 opened, then a skip), and a broken target file."""
    targets = Path(os.environ["LEVIATHAN_TARGETS_DIR"])
    for item in targets.iterdir():
        item.unlink()
    target_file = create_demo_target(tmp_path_factory.mktemp("browser"), target_id=TARGET, targets_dir=targets)
    first, _ = run_cycle(target_file)
    second, _ = run_cycle(target_file)
    assert evidence_record(first)["stopped_reason"] == "pr_opened"
    assert evidence_record(second)["reasons"] == ["open_pr_limit"]
    (targets / "typo.yaml").write_text("target_id: typo\ntarget_repo_url: /nowhere.git\nmax_open_prs: lots\n")
    # A live target, then a typo in its file: it must stay on the fleet page, loud, with its PR and history.
    live = create_demo_target(tmp_path_factory.mktemp("live"), target_id=LIVE, targets_dir=targets)
    assert evidence_record(run_cycle(live)[0])["stopped_reason"] == "pr_opened"
    live.write_text(live.read_text() + "max_prs_per_hr: 5\n")
    yield target_file
    for item in targets.iterdir():
        item.unlink()


@pytest.fixture(scope="module")
def server(airflow_db, demo):
    api = ApiServer(airflow_db).start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def switch_variable():
    yield
    set_switch(True)


def test_log_in_and_see_the_fleet_from_the_airflow_nav(server, browser):
    page = new_page(browser)
    login(page, server, "viewer", "/")
    page.get_by_role("link", name="Leviathan").first.click()  # the nav entry (external_views)
    page.wait_for_url("**/plugin/leviathan**")
    frame = leviathan_frame(page)
    row = frame.locator(f'tr[data-target="{TARGET}"]')
    row.wait_for()
    assert frame.inner_text("#global-switch") == "ON"
    assert "no" in row.locator("td").nth(1).inner_text()  # a fresh DAG is paused: it may not run now
    assert "its DAG is paused" in row.inner_text()
    assert row.locator("a.pr").inner_text() == "#1"
    typo = frame.locator('tr[data-target="typo"]')  # a broken target file keeps a row, with its problem
    assert "config_invalid" in typo.inner_text() and "typo.yaml:3: max_open_prs" in typo.inner_text()
    assert frame.locator("form").count() == 0 and frame.locator("#read-only").is_visible()
    _shot(page, "view-fleet-in-airflow", full_page=False)
    page.goto(f"{server.base}/leviathan/ui")
    _shot(page, "view-fleet")


def test_a_broken_live_target_stays_loud_with_its_history_and_the_fleet_is_degraded(server, browser):
    with scheduler_heartbeat():  # Airflow itself is fine: the broken target alone makes the fleet degraded
        _broken_live_target(server, browser)


def _broken_live_target(server, browser):
    page = new_page(browser)
    login(page, server, "viewer", "/plugin/leviathan")
    frame = leviathan_frame(page)
    frame.wait_for_selector("#health-status")
    assert frame.inner_text("#health-status") == "degraded"  # what /leviathan/health answers, in words
    problems = frame.inner_text("#health-problems")
    assert f"target {LIVE}: config_invalid:" in problems and "did you mean 'max_prs_per_hour'?" in problems
    row = frame.locator(f'tr[data-target="{LIVE}"]')
    assert "config_invalid" in row.inner_text() and row.locator("a.pr").inner_text() == "#1"
    row.get_by_role("link", name=LIVE, exact=True).click()
    frame.wait_for_selector("#config-invalid")
    banner = frame.inner_text("#config-invalid")
    assert f"{LIVE}.yaml:19: max_prs_per_hr: unknown key; did you mean 'max_prs_per_hour'?" in banner
    assert "No cycle runs until the file is fixed" in banner
    assert "#1" in frame.inner_text("#prs") and "pr_opened" in frame.inner_text("#records")  # history below
    assert frame.locator("#backlog").count() == 0  # no verdicts from a config that cannot be read
    health = page.evaluate("fetch('/leviathan/health').then(r => r.json().then(b => [r.status, b.status]))")
    assert health == [200, "degraded"]
    page.goto(f"{server.base}/leviathan/ui/targets/{LIVE}")
    _shot(page, "view-target-config-invalid")


def test_open_a_target_and_read_why_a_task_was_skipped(server, browser):
    page = new_page(browser)
    login(page, server, "viewer", "/plugin/leviathan")
    frame = leviathan_frame(page)
    frame.get_by_role("link", name=TARGET, exact=True).first.click()
    frame.wait_for_selector("#backlog")
    architecture = frame.locator('tr[data-task="docs-architecture"]')
    assert "not_ready" in architecture.inner_text() and "not marked ready: true by a human" in architecture.inner_text()
    backlog = frame.locator("section[aria-labelledby=backlog-h]").inner_text()
    assert frame.inner_text("#decision") == "skip" and "open_pr_limit" in backlog  # PR #1 is still open
    assert "pr_open_for_task" in frame.locator('tr[data-task="docs-quickstart"]').inner_text()
    badge = frame.locator('tr[data-task="docs-readme-badge"]')
    assert "status_not_pending" in badge.inner_text()
    charts = frame.locator("svg.chart[role=img]")
    assert charts.count() == 4
    labels = [charts.nth(i).get_attribute("aria-label") for i in range(4)]
    assert labels[0].startswith("Cycles by decision") and "run 1" in labels[0] and "skip 1" in labels[0]
    assert labels[1].startswith("Attempts by outcome") and "succeeded 1" in labels[1]
    assert labels[2].startswith("PRs opened, merged and closed") and "opened 1" in labels[2]
    assert labels[3].startswith("Lead time from ready to merged")
    frame.get_by_role("link", name="30 days").click()
    frame.wait_for_url("**days=30")
    assert "Last 30 days" in frame.inner_text("#charts-h")
    page.goto(f"{server.base}/leviathan/ui/targets/{TARGET}")
    _shot(page, "view-target")


def test_follow_a_pr_link_and_a_dag_run_link(server, browser):
    page = new_page(browser)
    login(page, server, "viewer", f"/plugin/leviathan/leviathan/ui/targets/{TARGET}")
    frame = leviathan_frame(page)
    frame.locator("#prs a.pr", has_text="#1").click()
    frame.wait_for_selector("#pr-title")
    assert "agent/docs-quickstart/1" in frame.inner_text("body")
    assert "docs/quickstart.md" in frame.inner_text("#pr-diff")
    # A DAG run link leaves the sandboxed iframe: the Airflow shell itself opens the run.
    page.goto(f"{server.base}/plugin/leviathan/leviathan/ui/targets/{TARGET}")
    frame = leviathan_frame(page)
    link = frame.locator("#records a[data-leave=top]").first
    run_id = link.inner_text()
    link.click()
    page.wait_for_url(re.compile(rf"/dags/{names.dag_id(TARGET)}/runs/"))
    assert run_id.split("T")[0] in page.url


def _repo(target_file: Path) -> str:
    return str(load_target(target_file).repo_location(target_file))


def test_a_reviewer_reads_the_rendered_pr_its_reviews_and_a_coloured_diff(server, browser, demo):
    repo = _repo(demo)
    assert leviathan(["forge", "review", "--repo", repo, "1", "--as", "alice", "--comment",
                      "--body", "Reads well. **One nit:** see [the guide](https://example.com/guide)."]) == 0
    assert leviathan(["forge", "comment", "--repo", repo, "1", "--as", "mallory", "--body", HOSTILE]) == 0
    assert leviathan(["forge", "comment", "--repo", repo, "1", "--as", "leviathan", "--body",
                      "Noted: nothing for Leviathan to do."]) == 0
    page = new_page(browser, width=1400)
    login(page, server, "viewer", f"/plugin/leviathan/leviathan/ui/targets/{TARGET}/prs/1")
    frame = leviathan_frame(page)
    frame.wait_for_selector("#pr-title")
    # The body is rendered Markdown, full width and unclipped: headings, the acceptance list, the evidence table.
    body = frame.locator("#pr-body")
    assert body.locator("h2", has_text="Task").count() == 1 and body.locator("table").count() >= 1
    assert body.locator("ul.contains-task-list input[type=checkbox][disabled]").count() >= 1
    box = body.evaluate("e => [e.scrollHeight, e.clientHeight, e.scrollWidth, e.clientWidth, "
                        "getComputedStyle(e).whiteSpace]")
    assert box[0] == box[1] and box[2] <= box[3] and box[4] == "normal"
    # Reviews and comments, oldest first; Leviathan's own reply is marked; the hostile one is inert text.
    notes = frame.locator("#pr-notes article.note")
    assert notes.count() == 3 and [notes.nth(i).locator(".note-meta strong").inner_text() for i in range(3)] == [
        "alice", "mallory", "leviathan"]
    assert "review: commented" in notes.nth(0).inner_text()
    assert notes.nth(0).locator("strong", has_text="One nit").count() == 1
    assert notes.nth(2).get_attribute("class") == "note own" and "Leviathan" in notes.nth(2).inner_text()
    hostile = notes.nth(1).inner_text()
    assert "<script>window.pwned = 1</script>" in hostile and "@octocat" in hostile
    assert "everything after this stays visible" in hostile and "[REDACTED:github_token]" in hostile
    assert TOKEN not in frame.content()
    inert = frame.evaluate("""() => ({
        scripts: document.scripts.length,
        handlers: [...document.querySelectorAll('*')]
            .filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
        images: document.images.length,
        jsLinks: [...document.links].filter(a => !/^(https?|mailto):/i.test(a.href)).length,
        pwned: window.pwned === undefined ? null : window.pwned,
    })""")
    assert inert == {"scripts": 1, "handlers": 0, "images": 0, "jsLinks": 0, "pwned": None}
    guide = frame.locator("#pr-notes a", has_text="the guide")
    assert guide.get_attribute("rel") == "nofollow noopener noreferrer" and guide.get_attribute("data-leave") == "new"
    # The diff: coloured lines (added green, removed red), monospace, scrolls sideways, never clipped downwards.
    diff = frame.locator("#pr-diff")
    assert diff.locator("span.d-file").count() and diff.locator("span.d-hunk").count()
    added, removed = (diff.locator(f"span.d-{kind}").first.evaluate("e => getComputedStyle(e).backgroundColor")
                      for kind in ("add", "del"))
    assert added != removed and "0, 0, 0, 0" not in added + removed
    style = diff.evaluate("e => [getComputedStyle(e).overflowX, getComputedStyle(e).maxHeight, "
                          "getComputedStyle(e).fontFamily, e.scrollHeight - e.clientHeight]")
    assert style[0] == "auto" and style[1] == "none" and "mono" in style[2].lower() and style[3] <= 20  # scrollbar
    assert "leviathan forge merge" in frame.inner_text("#pr-help") and "Open for review" in frame.inner_text("#pr-help")
    page.goto(f"{server.base}/leviathan/ui/targets/{TARGET}/prs/1")
    _shot(page, "view-pr")


def test_chart_text_is_legible_at_1400_px(server, browser):
    page = new_page(browser, width=1400)
    login(page, server, "viewer", f"/plugin/leviathan/leviathan/ui/targets/{TARGET}")
    frame = leviathan_frame(page)
    frame.wait_for_selector("svg.chart text")
    sizes = frame.evaluate("""() => [...document.querySelectorAll('svg.chart text')].map(t =>
        parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a)""")
    assert len(sizes) > 10 and min(sizes) >= 11, sizes
    heights = frame.evaluate("""() => [...document.querySelectorAll('svg.chart text.axis')].map(t =>
        t.getBoundingClientRect().height)""")
    assert min(heights) >= 11, heights


def test_admin_switches_autonomy_off_and_it_takes_effect(server, browser, demo, switch_variable):
    page = new_page(browser)
    login(page, server, "admin", "/plugin/leviathan")
    frame = leviathan_frame(page)
    frame.fill("form.action input[name=reason]", "incident 42: stop everything")
    frame.get_by_role("button", name="Switch autonomy OFF").click()
    frame.wait_for_selector("#notice")
    assert "switched OFF" in frame.inner_text("#notice") and frame.inner_text("#global-switch") == "OFF"
    assert "global autonomy switch is off" in frame.inner_text(f'tr[data-target="{TARGET}"]')
    _shot(page, "view-fleet-admin-off", full_page=False)
    dag_run, states = run_cycle(demo)  # the next cycle: nothing starts (PR #1 is also still open)
    assert evidence_record(dag_run)["reasons"][0] == "autonomy_disabled"
    assert states[names.TASK_RUN_WORKER] == "skipped"
    frame.get_by_role("link", name=TARGET, exact=True).first.click()
    records = frame.locator("#records")
    records.wait_for()
    assert "autonomy_disabled" in records.inner_text()
    assert "global switch off by admin: incident 42: stop everything" in records.inner_text()
    frame.locator("#state-h").scroll_into_view_if_needed()
    _shot(page, "view-target-admin", full_page=False)
    # Switch it back on from the page, too.
    frame.get_by_role("link", name="Fleet").click()
    frame.get_by_role("button", name="Switch autonomy ON").wait_for()  # the fleet page, loaded
    frame.fill("form.action input[name=reason]", "incident 42 resolved")
    frame.get_by_role("button", name="Switch autonomy ON").click()
    frame.wait_for_selector("#notice")
    assert frame.inner_text("#global-switch") == "ON"


def test_a_viewer_gets_no_controls_and_the_api_refuses_them(server, browser):
    page = new_page(browser)
    login(page, server, "viewer", f"/plugin/leviathan/leviathan/ui/targets/{TARGET}")
    frame = leviathan_frame(page)
    frame.wait_for_selector("#read-only")
    assert frame.locator("form").count() == 0
    statuses = page.evaluate("""async () => {
        const form = new URLSearchParams({enabled: 'false', reason: 'viewer tries', csrf_token: 'x'});
        const post = (path) => fetch(path, {method: 'POST', body: form}).then(r => r.status);
        const put = fetch('/leviathan/autonomy', {method: 'PUT', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({enabled: false, reason: 'viewer tries'})}).then(r => r.status);
        return [await post('/leviathan/ui/actions/autonomy'), await post('/leviathan/ui/targets/shop/pause'),
                await post('/leviathan/ui/targets/shop/reset-breaker'), await put];
    }""")
    assert statuses == [403, 403, 403, 403]
    page.goto(f"{server.base}/leviathan/ui")
    assert page.inner_text("#global-switch") == "ON"


def test_a_merged_pr_says_merged_and_asks_nothing_more(server, browser, demo):
    assert leviathan(["forge", "merge", "--repo", _repo(demo), "1"]) == 0  # last: the PR is no longer open
    page = new_page(browser)
    login(page, server, "viewer", f"/leviathan/ui/targets/{TARGET}/prs/1")
    page.wait_for_selector("#pr-help")
    assert page.inner_text("#pr-state") == "merged"
    help_text = page.inner_text("#pr-help")
    assert help_text.startswith("Merged into main") and "Nothing is left to review" in help_text
    assert "review and merge" not in page.inner_text("body").lower() and "forge merge" not in help_text
