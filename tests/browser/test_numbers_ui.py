"""Number mode in a real Chromium (issue 12): the number is read while the user draws, each
digit's box and confidence sits on an overlay over the pad, the number's confidence and a close
runner-up are shown, and a number drawn in single-digit mode gets a hint to switch.

Numbers are drawn with the mouse, digits touching included.  The end-to-end tests read with the
served model; the runner-up, low-confidence and hint renderings are also checked on answers
changed in flight (``page.route``) so that they do not depend on what the model says.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from browser_helpers import Box, canvas_rect, draw_number, draw_with_mouse, stroke_points
from PIL import Image
from playwright.sync_api import expect
from scipy import ndimage

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 15_000  # ms; generous for a busy machine, never a sleep
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
)

# Digits side by side with clear space between them (number mode switches itself on).
SPACED_2026: list[tuple[int, Box]] = [
    (2, (0.03, 0.32, 0.2, 0.68)),
    (0, (0.28, 0.32, 0.45, 0.68)),
    (2, (0.53, 0.32, 0.7, 0.68)),
    (6, (0.78, 0.32, 0.95, 0.68)),
]
# The pen is 1/16 of the pad wide: ink closer than that is one connected piece (each test
# checks that its drawing is one piece).  A "1" and a "7" whose top bar starts against the
# 1's stem.
TOUCHING_17: list[tuple[int, Box]] = [
    (1, (0.12, 0.15, 0.42, 0.85)),
    (7, (0.315, 0.15, 0.615, 0.85)),
]
# Two "1"s, the second one's flag starting against the first one's stem.
TOUCHING_11: list[tuple[int, Box]] = [
    (1, (0.17, 0.2, 0.47, 0.8)),
    (1, (0.2, 0.2, 0.7, 0.8)),
]
# A "4" whose bar runs into the side of a "0".
TOUCHING_40: list[tuple[int, Box]] = [
    (4, (0.12, 0.15, 0.48, 0.85)),
    (0, (0.42, 0.15, 0.78, 0.85)),
]


def number_mode_on(page) -> None:
    page.click("label.switch")
    expect(page.locator("#number-mode")).to_be_checked()


def settled(page) -> None:
    """The answer on screen is about the drawing as it is: nothing pending, boxes placed."""
    page.locator("#prediction:not([data-busy])").wait_for(state="attached", timeout=TIMEOUT)
    expect(page.locator("#boxes")).to_have_attribute("data-state", "fresh", timeout=TIMEOUT)


def ink_pieces(page) -> int:
    """How many separate pieces of ink the pad holds (8-connected, dark on the light pad)."""
    url = page.locator("#canvas").evaluate("c => c.toDataURL('image/png')")
    picture = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L")
    return ndimage.label(np.asarray(picture) < 128, structure=np.ones((3, 3)))[1]


def boxes_on_pad(page) -> list[dict]:
    """Each digit box on the overlay: its rectangle (viewport pixels), digit and label."""
    return page.locator("#boxes .digit-box").evaluate_all(
        """boxes => boxes.map((b) => {
            const r = b.getBoundingClientRect();
            return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom, digit: b.dataset.digit,
                    label: b.querySelector('span').textContent,
                    unsure: b.classList.contains('unsure')};
        })"""
    )


def assert_boxes_fit(page, number: str) -> list[dict]:
    """One box per digit of ``number``, left to right, inside the pad, labelled "d · NN%"."""
    boxes = boxes_on_pad(page)
    assert [b["digit"] for b in boxes] == list(number)
    pad = canvas_rect(page)
    for b in boxes:
        assert pad["x"] - 1 <= b["x0"] < b["x1"] <= pad["x"] + pad["width"] + 1
        assert pad["y"] - 1 <= b["y0"] < b["y1"] <= pad["y"] + pad["height"] + 1
        assert b["x1"] - b["x0"] > 5 and b["y1"] - b["y0"] > 5
        assert b["label"].startswith(f"{b['digit']} · ") and b["label"].endswith("%")
    centres = [(b["x0"] + b["x1"]) / 2 for b in boxes]
    assert centres == sorted(centres)
    return boxes


def change_answer(page, path: str, change) -> None:
    """Let the server answer ``path``, then ``change(answer)`` before the page sees it."""

    def handle(route) -> None:
        response = route.fetch()
        body = response.json()
        if response.ok:
            change(body)
        route.fulfill(response=response, body=json.dumps(body))

    page.route(f"**{path}", handle)


def test_spaced_number_is_read_with_boxes_in_order(page) -> None:
    """2026 with gaps: number mode switches itself on; 4 boxes on the pad, left to right."""
    draw_number(page, SPACED_2026)
    expect(page.locator("#number-mode")).to_be_checked(timeout=TIMEOUT)
    expect(page.locator("#number")).to_have_text("2026", timeout=TIMEOUT)
    settled(page)
    expect(page.locator("#boxes .digit-box")).to_have_count(4)
    expect(page.locator("#number")).to_have_text("2026")
    boxes = assert_boxes_fit(page, "2026")
    # each box holds the ink of its own digit: the centre of the drawn box is inside it
    pad = canvas_rect(page)
    for b, (_, (x0, y0, x1, y1)) in zip(boxes, SPACED_2026, strict=True):
        cx, cy = pad["x"] + pad["width"] * (x0 + x1) / 2, pad["y"] + pad["height"] * (y0 + y1) / 2
        assert b["x0"] <= cx <= b["x1"] and b["y0"] <= cy <= b["y1"]
    expect(page.locator("#number-digits li")).to_have_count(4)
    # the server's confidence in the whole number (the field is new: absent from older servers)
    expect(page.locator("#number-confidence")).to_have_text(re.compile(r"^\d+% sure of the whole"))


@pytest.mark.parametrize(
    ("digits", "number"),
    [(TOUCHING_17, "17"), (TOUCHING_11, "11"), (TOUCHING_40, "40")],
    ids=["17", "11", "40"],
)
def test_touching_digits_are_read_as_a_number(page, digits, number: str) -> None:
    number_mode_on(page)
    draw_number(page, digits)
    assert ink_pieces(page) == 1  # the digits really touch
    expect(page.locator("#number")).to_have_text(number, timeout=TIMEOUT)
    settled(page)
    expect(page.locator("#number")).to_have_text(number)
    expect(page.locator("#boxes .digit-box")).to_have_count(len(number))
    assert_boxes_fit(page, number)


def test_the_number_is_read_while_drawing_one_request_at_a_time(page) -> None:
    """No button and no stroke end needed: the reading follows the pen, one request at a time."""
    page.evaluate(
        """() => {  // count the number readings and how many are in flight at once
            const realFetch = window.fetch;
            window.readings = {sent: 0, open: 0, maxOpen: 0};
            window.fetch = async (url, ...rest) => {
                const counted = String(url).includes('/api/predict_number');
                if (counted) {
                    readings.sent++; readings.open++;
                    readings.maxOpen = Math.max(readings.maxOpen, readings.open);
                }
                try { return await realFetch(url, ...rest); }
                finally { if (counted) readings.open--; }
            };
        }"""
    )
    number_mode_on(page)
    draw_number(page, SPACED_2026[:2])
    expect(page.locator("#number")).to_have_text("20", timeout=TIMEOUT)
    # The 2 of "202", drawn slowly and held down at its end: the pen never leaves the pad.
    points = stroke_points(2, canvas_rect(page), SPACED_2026[2][1], steps=12)[0]
    page.mouse.move(*points[0])
    page.mouse.down()
    moves = 0
    for x, y in points[1:]:
        page.mouse.move(x, y)
        moves += 1
    expect(page.locator("#number")).to_have_text("202", timeout=TIMEOUT)
    page.mouse.up()
    settled(page)
    expect(page.locator("#boxes .digit-box")).to_have_count(3)
    readings = page.evaluate("() => window.readings")
    assert readings["maxOpen"] == 1
    assert readings["sent"] < moves  # debounced: far fewer readings than pointer moves


def stub_number(page, number: str, boxes: list[list[int]], size=(280, 280), **fields) -> None:
    """Answer every number reading with ``number`` (digits in ``boxes``) plus ``fields``."""
    digits = []
    for digit, box in zip(number, boxes, strict=True):
        probabilities = [0.005] * 10
        probabilities[int(digit)] = 0.955
        digits.append(
            {
                "digit": int(digit),
                "confidence": 0.955,
                "probabilities": probabilities,
                "box": box,
                "is_digit": True,
                "low_confidence": False,
                "preview": PIXEL,
            }
        )
    for index in fields.pop("unsure", ()):
        digits[index].update(confidence=0.41, low_confidence=True)
    body = {"number": number, "digits": digits, "image_size": list(size), "low_confidence": False}
    body.update(fields)
    page.route("**/api/predict_number", lambda route: route.fulfill(json=body))


def test_runner_up_confidence_and_an_unsure_digit_are_shown(page) -> None:
    """The page's rendering of a close call, on a stubbed answer: the number's confidence, the
    runner-up, a dashed box for the unsure digit, and boxes scaled from the picture's pixels."""
    boxes = [[14, 84, 56, 196], [84, 84, 126, 196], [154, 84, 196, 196], [224, 84, 266, 196]]
    stub_number(
        page,
        "2026",
        boxes,
        confidence=0.61,
        runner_up={"number": "2028", "confidence": 0.32},
        unsure=[3],
    )
    draw_number(page, SPACED_2026)
    expect(page.locator("#number")).to_have_text("2026", timeout=TIMEOUT)
    settled(page)
    expect(page.locator("#number-runner-up")).to_be_visible()
    expect(page.locator("#number-runner-up")).to_have_text("or maybe 2028? (32%)")
    expect(page.locator("#number-confidence")).to_have_text("61% sure of the whole number")
    expect(page.locator("#status")).to_contain_text("Not sure about 1 of them")
    expect(page.locator("#status")).to_contain_text("or maybe 2028")
    drawn = assert_boxes_fit(page, "2026")
    assert [b["unsure"] for b in drawn] == [False, False, False, True]
    assert [b["label"] for b in drawn] == ["2 · 96%", "0 · 96%", "2 · 96%", "6 · 41%"]
    expect(page.locator("#boxes .digit-box.unsure")).to_have_css("border-top-style", "dashed")
    expect(page.locator("#boxes .digit-box").first).to_have_css("border-top-style", "solid")
    pad = canvas_rect(page)
    for b, (x0, y0, x1, y1) in zip(drawn, boxes, strict=True):  # 280 px of picture = the pad
        scale = pad["width"] / 280
        assert abs(b["x0"] - (pad["x"] + x0 * scale)) < 1.5
        assert abs(b["x1"] - (pad["x"] + x1 * scale)) < 1.5
        assert abs(b["y0"] - (pad["y"] + y0 * scale)) < 1.5
        assert abs(b["y1"] - (pad["y"] + y1 * scale)) < 1.5


def test_an_answer_without_the_new_fields_still_shows_number_and_boxes(page) -> None:
    """No ``confidence`` and no ``runner_up`` (an older server): no such lines, no errors."""
    stub_number(page, "42", [[20, 60, 120, 220], [150, 60, 260, 220]])
    number_mode_on(page)
    draw_number(page, [(4, (0.08, 0.25, 0.4, 0.75)), (2, (0.55, 0.25, 0.9, 0.75))])
    expect(page.locator("#number")).to_have_text("42", timeout=TIMEOUT)
    settled(page)
    expect(page.locator("#number-runner-up")).to_be_hidden()
    expect(page.locator("#number-confidence")).to_be_hidden()
    expect(page.locator("#confidence")).to_have_text("2 digits")
    assert_boxes_fit(page, "42")


def test_a_number_in_single_digit_mode_gets_a_hint_to_switch(page) -> None:
    """Touching digits do not switch number mode on by themselves: the server's
    ``looks_like_number`` brings a hint whose button reads the drawing as a number."""
    change_answer(page, "/api/predict", lambda answer: answer.update(looks_like_number=True))
    draw_number(page, TOUCHING_11)
    assert ink_pieces(page) == 1
    hint = page.locator("#number-hint")
    expect(hint).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#status")).to_contain_text("looks like several digits")
    expect(page.locator("#number-mode")).not_to_be_checked()
    button = page.get_by_role("button", name="Read it as a number")
    expect(button).to_be_visible()
    button.click()
    expect(page.locator("#number-mode")).to_be_checked()
    expect(hint).to_be_hidden()
    expect(page.locator("#number")).to_have_text("11", timeout=TIMEOUT)
    settled(page)
    expect(page.locator("#boxes .digit-box")).to_have_count(2)


def test_the_hint_end_to_end_after_choosing_single_digit_mode(page) -> None:
    """A user who turned number mode off draws 42 anyway: the server's own answer brings the
    hint, and its button reads the drawing as a number."""
    number_mode_on(page)
    page.click("label.switch")  # ... and off again: the user's choice, no automatic switching
    expect(page.locator("#number-mode")).not_to_be_checked()
    draw_number(page, [(4, (0.08, 0.25, 0.4, 0.75)), (2, (0.58, 0.25, 0.9, 0.75))])
    expect(page.locator("#number-hint")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#number-mode")).not_to_be_checked()
    page.get_by_role("button", name="Read it as a number").click()
    expect(page.locator("#number")).to_have_text("42", timeout=TIMEOUT)
    settled(page)
    assert_boxes_fit(page, "42")


def test_no_hint_for_a_single_digit(page) -> None:
    change_answer(page, "/api/predict", lambda answer: answer.update(looks_like_number=False))
    draw_with_mouse(page, 7)
    expect(page.locator("#prediction")).to_have_text("7", timeout=TIMEOUT)
    page.locator("#prediction:not([data-busy])").wait_for(state="attached", timeout=TIMEOUT)
    expect(page.locator("#number-hint")).to_be_hidden()
    expect(page.locator("#boxes .digit-box")).to_have_count(0)


def test_boxes_are_cleared_by_clear_and_by_a_new_stroke(page) -> None:
    number_mode_on(page)
    draw_number(page, SPACED_2026[:3])
    expect(page.locator("#number")).to_have_text("202", timeout=TIMEOUT)
    settled(page)
    expect(page.locator("#boxes .digit-box")).to_have_count(3)
    # the overlay is not part of the drawing: the canvas holds only paper and (near-grey) ink,
    # none of the boxes' blue
    bluest = page.locator("#canvas").evaluate(
        """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let most = 0;
            for (let i = 0; i < d.length; i += 4) most = Math.max(most, d[i + 2] - d[i]);
            return most;
        }"""
    )
    assert bluest < 20
    # a new stroke makes the boxes stale: they go at once, and come back fitted to the new ink
    pad = canvas_rect(page)
    page.mouse.move(pad["x"] + 0.87 * pad["width"], pad["y"] + 0.3 * pad["height"])
    page.mouse.down()
    expect(page.locator("#boxes .digit-box")).to_have_count(0)
    page.mouse.move(pad["x"] + 0.87 * pad["width"], pad["y"] + 0.5 * pad["height"], steps=4)
    page.mouse.move(pad["x"] + 0.87 * pad["width"], pad["y"] + 0.7 * pad["height"], steps=4)
    page.mouse.up()
    expect(page.locator("#number")).to_have_text("2021", timeout=TIMEOUT)
    settled(page)
    expect(page.locator("#boxes .digit-box")).to_have_count(4)
    page.click("#clear")
    expect(page.locator("#boxes .digit-box")).to_have_count(0)
    expect(page.locator("#boxes")).to_have_attribute("data-state", "empty")
    expect(page.locator("#number-result")).to_be_hidden()
