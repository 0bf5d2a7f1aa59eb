"""Fixtures for the browser tests: the app on a free port, Debian's Chromium, and pages that
fail the test on any console error.

They skip (with the reason) when /usr/bin/chromium is absent, or when there is no model to serve
(``weights/mnist_cnn.npz`` or ``$NPCNN_TEST_WEIGHTS``).  ``$NPCNN_TEST_URL`` points them at an
app that is already running instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser_helpers import CHROMIUM, launch_chromium, running_app, weights_for_tests  # noqa: E402


@pytest.fixture(scope="session")
def feedback_db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The corrections database of the app under test: a temporary SQLite file."""
    return f"sqlite:///{tmp_path_factory.mktemp('feedback') / 'feedback.sqlite3'}"


@pytest.fixture(scope="session")
def app_url(feedback_db_url: str):
    if os.environ.get("NPCNN_TEST_URL"):
        yield os.environ["NPCNN_TEST_URL"].rstrip("/")
        return
    weights = weights_for_tests()
    if weights is None:
        pytest.skip(
            "no model to serve: weights/mnist_cnn.npz is absent and NPCNN_TEST_WEIGHTS unset"
        )
    with running_app(weights, feedback_db_url) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian's chromium package; see `make browser`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


class ConsoleWatch:
    """Console errors and uncaught exceptions on a page; a test may ``allow`` an expected one."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        self.allowed: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def allow(self, fragment: str) -> None:
        self.allowed.append(fragment)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


def open_page(browser, app_url: str, **context_options):
    context = browser.new_context(**context_options)
    page = context.new_page()
    watch = ConsoleWatch(page)
    page.goto(app_url + "/")
    page.wait_for_function("() => document.getElementById('canvas').width > 64")
    return context, page, watch


@pytest.fixture()
def desktop(browser, app_url):
    """A desktop page (1280 x 800, light) and its console watch; errors fail the test."""
    context, page, watch = open_page(browser, app_url, viewport={"width": 1280, "height": 800})
    yield page, watch
    context.close()
    assert watch.unexpected() == []


@pytest.fixture()
def page(desktop):
    return desktop[0]


@pytest.fixture()
def console(desktop):
    return desktop[1]


@pytest.fixture()
def phone_page(browser, app_url):
    """A phone (390 x 844, touch, 3x pixels, dark scheme); console errors fail the test."""
    context, page, watch = open_page(
        browser,
        app_url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
        color_scheme="dark",
    )
    yield page
    context.close()
    assert watch.unexpected() == []
