"""The page in a real Chromium: draw with a mouse and with a finger, see the right digit, its bars
and the model's-eye view; undo, clear, upload, drop, paste, number mode, the explanation panel;
and the screenshots helper.  No test may leave an error in the console (see conftest.py).
"""

from __future__ import annotations

import io
import re

import pytest
from browser_helpers import (
    SPACED_207,
    digit_picture,
    draw_number,
    draw_with_mouse,
    draw_with_touch,
    send_file_event,
)
from PIL import Image
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 10_000  # ms
DATA_PNG = re.compile("^data:image/png")


def expect_digit(page, digit: int) -> None:
    """The page shows ``digit`` as the prediction, its bar on top, and a 28x28 preview."""
    expect(page.locator("#prediction")).to_have_text(str(digit), timeout=TIMEOUT)
    expect(page.locator("#probabilities .bar-row.top")).to_have_attribute("data-digit", str(digit))
    expect(page.locator("#preview")).to_have_attribute("src", DATA_PNG)
    assert page.locator("#probabilities .bar-row").count() == 10
    page.locator("#prediction:not([data-busy])").wait_for(timeout=TIMEOUT)  # the last answer
    page.wait_for_timeout(250)  # the bars grow in a short transition
    meter, text, share = page.locator("#probabilities .bar-row.top").evaluate(
        """row => [Number(row.querySelector('.bar-track').getAttribute('aria-valuenow')),
                   row.querySelector('.bar-value').textContent,
                   row.querySelector('.bar-fill').getBoundingClientRect().width /
                   row.querySelector('.bar-track').getBoundingClientRect().width]"""
    )
    assert meter >= 30
    assert text == f"{meter}%"
    assert abs(share * 100 - meter) < 1.5  # the bar is as long as the number says


def canvas_pixels(page) -> str:
    return page.locator("#canvas").evaluate("c => c.toDataURL()")


def expect_empty(page) -> None:
    expect(page.locator("#prediction")).to_have_text("–", timeout=TIMEOUT)
    expect(page.locator("#status")).to_contain_text("Draw a digit")


@pytest.mark.parametrize("digit", range(10))
def test_mouse_drawing_is_recognised(page, digit: int) -> None:
    expect_empty(page)
    draw_with_mouse(page, digit)
    expect_digit(page, digit)
    expect(page.locator("#confidence")).to_contain_text("%")


def test_small_off_centre_drawing_is_recognised(page) -> None:
    draw_with_mouse(page, 7, box=(0.05, 0.05, 0.3, 0.35))
    expect_digit(page, 7)


def test_touch_drawing_on_a_phone_draws_instead_of_scrolling(phone_page) -> None:
    page = phone_page
    assert page.locator("#canvas").evaluate("c => getComputedStyle(c).touchAction") == "none"
    page.locator("#canvas").scroll_into_view_if_needed()
    scroll_before = page.evaluate("window.scrollY")
    draw_with_touch(page, 3)
    expect_digit(page, 3)
    assert page.evaluate("window.scrollY") == scroll_before
    # dark scheme: light ink on a dark pad, still read correctly
    corner = page.locator("#canvas").evaluate(
        "c => Array.from(c.getContext('2d').getImageData(2, 2, 1, 1).data.slice(0, 3))"
    )
    assert max(corner) < 60


def test_undo_and_clear_with_buttons_and_keys(page) -> None:
    draw_with_mouse(page, 7)
    expect_digit(page, 7)
    after_seven = canvas_pixels(page)
    draw_with_mouse(page, 1, box=(0.05, 0.1, 0.2, 0.9))
    assert canvas_pixels(page) != after_seven
    page.click("#undo")
    expect_digit(page, 7)
    assert canvas_pixels(page) == after_seven  # undo redraws exactly what was there

    page.click("#clear")
    expect_empty(page)
    expect(page.locator("#undo")).to_be_disabled()
    expect(page.locator("#preview")).to_have_attribute("alt", "Nothing drawn yet")

    draw_with_mouse(page, 4)
    expect_digit(page, 4)
    draw_with_mouse(page, 1, box=(0.85, 0.1, 0.95, 0.9))
    page.keyboard.press("Control+z")
    expect_digit(page, 4)
    page.keyboard.press("Escape")
    expect_empty(page)
    draw_with_mouse(page, 0)
    expect_digit(page, 0)
    page.keyboard.press("Delete")
    expect_empty(page)


def test_buttons_are_reachable_with_the_keyboard(page) -> None:
    reached = set()
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id"))
    assert {"canvas", "upload", "number-mode"} <= reached
    draw_with_mouse(page, 7)
    expect_digit(page, 7)
    page.focus("#clear")
    page.keyboard.press("Enter")
    expect_empty(page)


def test_upload_of_a_coloured_picture(page) -> None:
    page.set_input_files(
        "#upload",
        files=[{"name": "five.png", "mimeType": "image/png", "buffer": digit_picture(5)}],
    )
    expect_digit(page, 5)
    # the 400 x 300 picture is shown on the pad, fitted: white bars above and below it
    pixel = (
        "([fx, fy]) => Array.from(document.getElementById('canvas').getContext('2d')"
        ".getImageData(fx * canvas.width, fy * canvas.height, 1, 1).data.slice(0, 3))"
    )
    assert page.evaluate(pixel, [0.1, 0.2]) == [250, 228, 120]  # the yellow paper
    assert page.evaluate(pixel, [0.1, 0.05]) == [255, 255, 255]  # the pad


def test_drop_and_paste_of_pictures(page) -> None:
    send_file_event(page, "drop", digit_picture(2, size=(640, 480)))
    expect_digit(page, 2)
    send_file_event(page, "paste", digit_picture(9, ink=(240, 240, 240), paper=(20, 60, 30)))
    expect_digit(page, 9)


def test_a_blank_upload_is_answered_honestly(page, console) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (255, 255, 255)).save(buffer, format="PNG")
    blank = buffer.getvalue()
    draw_with_mouse(page, 7)
    expect_digit(page, 7)
    # Chromium itself logs the 422 answer as a failed resource load: that one is expected.
    console.allow("status of 422")
    page.set_input_files(
        "#upload", files=[{"name": "blank.png", "mimeType": "image/png", "buffer": blank}]
    )
    expect(page.locator("#status")).to_contain_text("Nothing to recognise", timeout=TIMEOUT)
    expect(page.locator("#prediction")).to_have_text("–")
    expect(page.locator("#preview")).to_have_attribute("alt", "Nothing drawn yet")


def test_low_confidence_is_said_honestly(page) -> None:
    """The page's wording for an unsure answer (the server's answer is stubbed here)."""
    probabilities = [0.01] * 10
    probabilities[4], probabilities[9] = 0.47, 0.45
    body = {
        "digit": 4,
        "confidence": 0.47,
        "probabilities": probabilities,
        "low_confidence": True,
        "runner_up": 9,
        "preview": "data:image/png;base64,"
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==",
    }
    page.route("**/api/predict", lambda route: route.fulfill(json=body))
    draw_with_mouse(page, 4)
    expect(page.locator("#status")).to_have_text("Not sure — maybe 4 or 9", timeout=TIMEOUT)
    expect(page.locator("#prediction")).to_have_attribute("data-state", "unsure")
    expect(page.locator("#confidence")).to_have_text("47% sure")


def test_an_answer_about_an_old_drawing_is_dropped(page) -> None:
    """Clear while the answer is on its way: the page stays empty when it arrives."""
    page.evaluate(
        """() => {  // hold every answer until the test releases it
            const realFetch = window.fetch;
            window.heldAnswers = [];
            window.fetch = (...args) => new Promise((resolve, reject) => {
                realFetch(...args).then((r) => window.heldAnswers.push(() => resolve(r)), reject);
            });
        }"""
    )
    box = page.locator("#canvas").bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + 0.5 * w, y + 0.2 * h)  # one quick stroke: a "1"
    page.mouse.down()
    page.mouse.move(x + 0.5 * w, y + 0.5 * h)
    page.mouse.move(x + 0.5 * w, y + 0.8 * h)
    page.mouse.up()
    page.wait_for_function("() => window.heldAnswers.length === 1")
    page.click("#clear")
    expect_empty(page)
    page.evaluate("() => window.heldAnswers.splice(0).forEach((release) => release())")
    page.wait_for_timeout(500)
    expect_empty(page)  # the answer about the cleared drawing was not shown


def test_a_server_that_cannot_be_reached_is_reported(page, console) -> None:
    console.allow("net::ERR_FAILED")
    page.route("**/api/predict", lambda route: route.abort())
    draw_with_mouse(page, 1)
    expect(page.locator("#status")).to_contain_text("Cannot reach the server", timeout=TIMEOUT)


def test_number_mode_reads_several_digits(page) -> None:
    page.click("label.switch")
    expect(page.locator("#number-mode")).to_be_checked()
    draw_number(page, SPACED_207)
    expect(page.locator("#number")).to_have_text("207", timeout=TIMEOUT)
    # Under load a reading of the unfinished 7 may already say 207 while the last one is on its
    # way: wait until nothing is pending and the boxes belong to the finished drawing.
    page.locator("#prediction:not([data-busy])").wait_for(state="attached", timeout=TIMEOUT)
    expect(page.locator("#boxes")).to_have_attribute("data-state", "fresh", timeout=TIMEOUT)
    expect(page.locator("#number")).to_have_text("207")
    expect(page.locator("#number-digits li")).to_have_count(3)
    expect(page.locator("#boxes .digit-box")).to_have_count(3)
    page.locator("#number-digits li button").nth(2).click()
    expect(page.locator("#probabilities .bar-row.top")).to_have_attribute("data-digit", "7")


def test_number_mode_switches_itself_on_for_digits_side_by_side(page) -> None:
    draw_with_mouse(page, 5)  # two strokes (the top bar apart), but one digit
    expect_digit(page, 5)
    expect(page.locator("#number-mode")).not_to_be_checked()
    draw_with_mouse(page, 1, box=(0.8, 0.2, 0.95, 0.8))
    expect(page.locator("#number-mode")).to_be_checked(timeout=TIMEOUT)
    expect(page.locator("#number")).to_have_text("51", timeout=TIMEOUT)
    page.click("#undo")
    expect(page.locator("#number-mode")).not_to_be_checked(timeout=TIMEOUT)
    expect_digit(page, 5)
    expect(page.locator("#number-result")).to_be_hidden()


def test_explanation_panel_shows_saliency_and_feature_maps(page) -> None:
    draw_with_mouse(page, 3)
    expect_digit(page, 3)
    page.click("#explain-panel summary")
    expect(page.locator("#saliency")).to_have_attribute("src", DATA_PNG, timeout=TIMEOUT)
    expect(page.locator("#feature-maps")).to_have_attribute("src", DATA_PNG)
    expect(page.locator("#explain-status")).to_contain_text("filters")
    size = page.locator("#feature-maps").evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert size[0] > 50 and size[1] > 20


def test_a_busy_server_is_asked_again_for_the_explanation(page, console) -> None:
    """The server sheds heavy requests with 503 and Retry-After: the page waits and asks again."""
    console.allow("status of 503")
    answered = []

    def busy_once(route) -> None:
        if not answered:
            answered.append(503)
            route.fulfill(
                status=503,
                headers={"Retry-After": "1"},
                json={"error": "the server is busy: try again in 1 s"},
            )
        else:
            answered.append(200)
            route.continue_()

    page.route("**/api/explain", busy_once)
    draw_with_mouse(page, 3)
    expect_digit(page, 3)
    page.click("#explain-panel summary")
    expect(page.locator("#explain-status")).to_contain_text("busy", timeout=TIMEOUT)
    expect(page.locator("#saliency")).to_have_attribute("src", DATA_PNG, timeout=TIMEOUT)
    expect(page.locator("#explain-status")).to_contain_text("filters")
    assert answered[:2] == [503, 200]


def test_the_page_works_under_its_content_security_policy(browser, app_url) -> None:
    """The served policy forbids inline script and style: no violation while the page is used."""
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script(
        """window.violations = [];
        document.addEventListener('securitypolicyviolation',
            (e) => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));"""
    )
    response = page.goto(app_url + "/")
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"]
    page.wait_for_function("() => document.getElementById('canvas').width > 64")
    draw_with_mouse(page, 6)
    expect_digit(page, 6)
    page.click("#explain-panel summary")
    expect(page.locator("#saliency")).to_have_attribute("src", DATA_PNG, timeout=TIMEOUT)
    assert page.evaluate("window.violations") == []
    context.close()


def test_screenshots_helper_writes_all_four_views(browser, app_url, tmp_path) -> None:
    from screenshots import take_screenshots

    paths = take_screenshots(browser, app_url, tmp_path)
    assert len(paths) == 4
    for path in paths:
        assert path.stat().st_size > 10_000
