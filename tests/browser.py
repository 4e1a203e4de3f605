"""Browser-test harness: Playwright (PyPI) driving Debian's chromium against a real ``airflow api-server``.

Playwright never downloads a browser here: :func:`chromium` launches ``/usr/bin/chromium`` headless with no
sandbox (tests run as root), no GPU and no background networking. Every wait is bounded (:data:`TIMEOUT_MS`).
:func:`login` signs in through the simple auth manager's real login form, as a person would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.api_server import ApiServer

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: Longest wait for any page load, selector or navigation (the API server is local, but the machine is busy).
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@contextmanager
def chromium() -> Iterator[object]:
    """A headless chromium browser (``playwright.sync_api.Browser``), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True,
                                             timeout=TIMEOUT_MS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, *, width: int = 1280, height: int = 900):
    """A page in a fresh context (own cookies), with bounded default timeouts."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context.new_page()


def login(page, server: ApiServer, user: str, next_path: str = "/") -> None:
    """Sign in through the Airflow login form; the browser then holds the UI's ``_token`` cookie."""
    page.goto(f"{server.base}/auth/login/?next={quote(server.base + next_path, safe='')}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", server.password(user))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_function("() => document.cookie.includes('_token') || !location.pathname.startsWith('/auth')")
    page.wait_for_url(lambda url: "/auth/login" not in url)


def leviathan_frame(page):
    """The Leviathan view inside the Airflow shell (``/plugin/leviathan`` renders it in a sandboxed iframe:
    scripts, same origin and forms allowed; no popups and no top-level navigation)."""
    page.wait_for_selector("iframe[src*='/leviathan/ui']")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        for frame in page.frames:
            if frame is not page.main_frame and "/leviathan/ui" in frame.url:
                frame.wait_for_load_state()
                return frame
        page.wait_for_timeout(200)
    raise AssertionError(f"no Leviathan frame in {page.url} after {TIMEOUT_MS} ms")
