"""The page with a model that has a "not a digit" answer (class 10 of 11 outputs): it says so
plainly in #prediction and shows the closest digit small.  The model is a tiny one that always
refuses (the ``refusing_model`` fixture), saved to a temporary file and served on its own port."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import draw_with_mouse, running_app
from playwright.sync_api import expect

import npcnn

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 10_000  # ms


@pytest.fixture(scope="module")
def refusing_url(
    tmp_path_factory: pytest.TempPathFactory, feedback_db_url: str, refusing_model: npcnn.Sequential
):
    path: Path = tmp_path_factory.mktemp("refusing") / "refusing.npz"
    npcnn.save(refusing_model, path, metadata={"architecture_name": "always-refuses"})
    with running_app(path, feedback_db_url) as url:
        yield url


def test_the_page_says_it_does_not_look_like_a_digit(browser, refusing_url) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    try:
        page.goto(refusing_url + "/")
        page.wait_for_function("() => document.getElementById('canvas').width > 64")
        draw_with_mouse(page, 8)
        prediction = page.locator("#prediction")
        expect(prediction).to_have_attribute("data-state", "not-digit", timeout=TIMEOUT)
        expect(prediction).to_contain_text("That doesn't look like a digit")
        expect(prediction.locator(".closest")).to_have_text("closest: 4")
        expect(page.locator("#probabilities .bar-row.top")).to_have_attribute("data-digit", "4")
        expect(page.locator("#model-info")).to_contain_text("says when a drawing is not a digit")
        assert page.locator("#probabilities .bar-row").count() == 10
        page.locator("#prediction:not([data-busy])").wait_for(timeout=TIMEOUT)
        page.wait_for_timeout(300)  # any explanation that follows the answer
    finally:
        context.close()
    assert errors == []
