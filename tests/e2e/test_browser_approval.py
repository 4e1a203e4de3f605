"""Approval gates in a real browser: chromium (Playwright) against a real ``airflow api-server``.

Each cycle runs with ``dag.test()`` in a child process on the test session's metadata DB and waits while
its gate is ``awaiting_input``; a person logs in, opens Browse → Required Actions, reads the plan and
answers with the view's own buttons. The API server's response handler resumes the waiting task.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leviathan_lib.core import names
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from tests.airflow_helpers import evidence_record
from tests.api_server import ApiServer
from tests.browser import chromium, login, new_page

pytestmark = [pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]
CYCLE = """
import sys
from pathlib import Path
from leviathan_lib.core.config import load_target
from leviathan_lib.orchestrator.dag_factory import build_target_dag
path = Path(sys.argv[1])
run = build_target_dag(load_target(path), path).test()
print("RUN", run.run_id, run.state)
"""
#: Longest wait for a cycle to reach its gate, or to finish after the answer.
CYCLE_SECONDS = 240
#: What the approver types in the gate's Reason field (markup in it must stay text).
REASON = "Too broad for one PR <b>split it</b>"


@pytest.fixture(scope="module")
def server(airflow_db):
    api = ApiServer(airflow_db).start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _start_cycle(target_file: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CYCLE, str(target_file)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    try:
        out, _ = proc.communicate(timeout=CYCLE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"the cycle did not finish: {out[-3000:]}") from None
    line = [x for x in out.splitlines() if x.startswith("RUN ")]
    assert line and line[-1].endswith(" success"), out[-3000:]
    return line[-1].split()[1]


def _answer_in_the_ui(page, server: ApiServer, subject: str, button: str) -> None:
    """Browse → Required Actions, open the waiting action by its subject, press ``button``."""
    deadline = time.monotonic() + CYCLE_SECONDS
    while True:
        page.goto(f"{server.base}/required_actions")
        try:
            page.get_by_text(subject).first.wait_for(timeout=3000)
            break
        except Exception:  # noqa: BLE001 — not listed yet: the cycle is still planning
            if time.monotonic() > deadline:
                raise AssertionError(f"no required action {subject!r}: {page.inner_text('body')[:2000]}") from None
    page.get_by_text(subject).first.click()
    with page.expect_response(lambda r: "hitlDetails" in r.url and r.request.method == "PATCH") as answered:
        page.get_by_role("button", name=button, exact=True).click()
    assert answered.value.ok, answered.value.text()


def _waiting_in_the_view(page, server: ApiServer, target_id: str, task_id: str) -> str:
    """The fleet page and the target page show the waiting gate; the link to its Required Action."""
    deadline = time.monotonic() + CYCLE_SECONDS
    row = page.locator(f'tr[data-target="{target_id}"] li.approval')
    while True:
        page.goto(f"{server.base}/leviathan/ui")
        if row.count():
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no waiting approval of {target_id}: {page.inner_text('body')[:2000]}")
        page.wait_for_timeout(1000)
    text = row.first.inner_text()
    assert re.search(r"awaiting approval since \d\d:\d\d UTC; rejected without an answer after "
                     r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", text), text
    assert f"{target_id} / {task_id}: approve the plan (attempt 1)" in text
    href = row.first.locator("a").get_attribute("href")
    assert re.fullmatch(rf"/dags/leviathan__{target_id}/runs/[^/]+/tasks/approve_plan/required_actions", href), href
    page.goto(f"{server.base}/leviathan/ui/targets/{target_id}")
    assert page.locator("li.approval").first.inner_text() == text
    return href


def _reject_from_the_view(page, server: ApiServer, href: str, reason: str | None) -> None:
    """Open the Required Action the view links to and press Reject, with ``reason`` in its Reason field."""
    page.goto(f"{server.base}{href}")
    if reason is not None:
        try:
            page.locator("#element_reason").fill(reason)
        except Exception as exc:  # noqa: BLE001 — say what the page showed instead
            raise AssertionError(f"no reason field: {exc}: {page.inner_text('body')[:3000]}") from None
    with page.expect_response(lambda r: "hitlDetails" in r.url and r.request.method == "PATCH") as answered:
        page.get_by_role("button", name="Reject", exact=True).click()
    assert answered.value.ok, answered.value.text()


def _kill(proc: subprocess.Popen) -> None:
    """The gate was never answered: stop its cycle, so the failure that stopped the test is the one reported."""
    proc.kill()
    proc.communicate()


def _run(dag_id: str, run_id: str):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
        session.expunge(run)
        return run


def _gated(tmp_path: Path, targets_dir: Path, target_id: str) -> Path:
    target_file = create_demo_target(tmp_path, target_id=target_id, targets_dir=targets_dir)
    with target_file.open("a", encoding="utf-8") as out:
        out.write("approval: plan\napproval_assignees: [admin]\n")
    return target_file


def test_approve_a_gated_plan_in_the_ui_and_see_the_pr_opened(server, browser, tmp_path, targets_dir):
    target_file = _gated(tmp_path, targets_dir, "ui_yes")
    proc = _start_cycle(target_file)
    try:
        page = new_page(browser)
        login(page, server, "admin", "/required_actions")
        _answer_in_the_ui(page, server, "ui_yes / docs-quickstart: approve the plan", "Approve")
    finally:
        run_id = _finish(proc)
    record = evidence_record(_run(names.dag_id("ui_yes"), run_id))
    assert record["stopped_reason"] == "pr_opened"
    assert record["approval"]["by"] == "admin" and record["approval"]["choice"] == "approved"
    prs = LocalForge(tmp_path / "repos" / "ui_yes.git").list_open_prs()
    assert [p.head for p in prs] == ["agent/docs-quickstart/1"]


def test_reject_in_the_ui_and_see_the_task_wait(server, browser, tmp_path, targets_dir):
    target_file = _gated(tmp_path, targets_dir, "ui_no")
    page = new_page(browser)
    login(page, server, "admin", "/required_actions")
    proc = _start_cycle(target_file)
    try:
        # Leviathan's own pages show the waiting gate; its link opens the Required Action, rejected with a reason.
        _reject_from_the_view(page, server, _waiting_in_the_view(page, server, "ui_no", "docs-quickstart"), REASON)
    except BaseException:
        _kill(proc)
        raise
    run_id = _finish(proc)
    record = evidence_record(_run(names.dag_id("ui_no"), run_id))
    assert record["stopped_reason"] == "rejected_by_human" and record["approval"]["by"] == "admin"
    assert record["approval"]["note"] == REASON and record["stopped_detail"].endswith(f": {REASON}")
    assert LocalForge(tmp_path / "repos" / "ui_no.git").list_prs() == []
    # The view: the gate is gone, the task waits, with who rejected it and why.
    page.goto(f"{server.base}/leviathan/ui/targets/ui_no")
    assert page.locator("li.approval").count() == 0
    waiting = page.locator('tr[data-task="docs-quickstart"]').inner_text()
    assert "rejected_by_human" in waiting and "rejected by admin at " in waiting and REASON in waiting
    assert REASON in page.locator("#records").inner_text()  # the evidence record's detail

    # The next cycle asks about the next task: the rejected one waits for a new definition.
    proc = _start_cycle(target_file)
    try:
        _reject_from_the_view(page, server, _waiting_in_the_view(page, server, "ui_no", "docs-faq"), None)
    except BaseException:
        _kill(proc)
        raise
    run_id = _finish(proc)
    record = evidence_record(_run(names.dag_id("ui_no"), run_id))
    verdicts = {t["id"]: t["reasons"] for t in record["tasks"]}
    assert verdicts["docs-quickstart"] == ["rejected_by_human"]
