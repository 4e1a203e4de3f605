"""The Leviathan view in a real browser: chromium, driven by Playwright, against a real ``airflow api-server``."""

from __future__ import annotations

import pytest

from tests.api_server import ApiServer
from tests.browser import chromium, leviathan_frame, login, new_page

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def server(airflow_db):
    api = ApiServer(airflow_db).start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_log_in_and_reach_the_view_from_the_airflow_nav(server, browser):
    page = new_page(browser)
    login(page, server, "viewer", "/plugin/leviathan")
    frame = leviathan_frame(page)
    frame.wait_for_selector("h1")
    assert "Leviathan" in frame.inner_text("h1")

