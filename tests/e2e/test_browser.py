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

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from tests.airflow_helpers import evidence_record, run_cycle, scheduler_heartbeat
from tests.api_server import ApiServer
from tests.browser import chromium, leviathan_frame, login, needs_chromium, new_page

pytestmark = [pytest.mark.browser, needs_chromium]
TARGET = "shop"
LIVE = "live"
SHOTS = os.environ.get("LEVIATHAN_SCREENSHOTS")


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
    from airflow.models.variable import Variable

    yield
    Variable.delete("leviathan_autonomy_enabled")


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
    assert f"{LIVE}.yaml:18: max_prs_per_hr: unknown key; did you mean 'max_prs_per_hour'?" in banner
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
    page.goto(f"{server.base}/leviathan/ui/targets/{TARGET}/prs/1")
    _shot(page, "view-pr")
    # A DAG run link leaves the sandboxed iframe: the Airflow shell itself opens the run.
    page.goto(f"{server.base}/plugin/leviathan/leviathan/ui/targets/{TARGET}")
    frame = leviathan_frame(page)
    link = frame.locator("#records a[data-leave=top]").first
    run_id = link.inner_text()
    link.click()
    page.wait_for_url(re.compile(rf"/dags/{names.dag_id(TARGET)}/runs/"))
    assert run_id.split("T")[0] in page.url


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
