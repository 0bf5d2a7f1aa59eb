"""Correcting the network in a real Chromium: "Wrong? It was: …" by a tap and by a key, the
thank-you, Undo, and per-digit corrections in number mode; each checked in the database."""

from __future__ import annotations

import os

import pytest
from browser_helpers import SPACED_207, digit_picture, draw_number, draw_with_mouse
from playwright.sync_api import expect

from npcnn.digits.feedback import FeedbackStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 10_000  # ms


@pytest.fixture()
def store(feedback_db_url):
    if os.environ.get("NPCNN_TEST_URL"):
        pytest.skip("the app under test is not ours: its database is elsewhere")
    with FeedbackStore(feedback_db_url) as s:
        yield s


def rows_by_id(store) -> dict:
    return {row.id: row for row in store.iter_rows(with_upload=True)}


def wait_for_answer(page, text: str) -> None:
    expect(page.locator("#prediction")).to_have_text(text, timeout=TIMEOUT)
    page.locator("#prediction:not([data-busy])").wait_for(timeout=TIMEOUT)
    expect(page.locator("#feedback")).to_be_visible()


def saved_id(page, store, before: set) -> int:
    expect(page.locator("#feedback-status")).to_contain_text("Thank you", timeout=TIMEOUT)
    new = set(rows_by_id(store)) - before
    assert len(new) == 1
    return new.pop()


def test_no_correction_is_offered_before_an_answer(page) -> None:
    expect(page.locator("#feedback")).to_be_hidden()


def test_correct_a_drawing_by_a_click_then_undo(page, store) -> None:
    before = set(rows_by_id(store))
    draw_with_mouse(page, 3)
    wait_for_answer(page, "3")
    button = page.get_by_role("button", name="It was an 8")
    expect(button).to_be_visible()
    button.click()
    row_id = saved_id(page, store, before)
    row = rows_by_id(store)[row_id]
    assert row.label == "8" and row.predicted == "3"
    assert row.image.shape == (28, 28) and row.image.max() > 100
    assert row.upload[:8] == b"\x89PNG\r\n\x1a\n"  # the drawing as sent to /api/predict
    undo = page.get_by_role("button", name="Undo the correction")
    expect(undo).to_be_visible()
    undo.click()
    expect(page.locator("#feedback-status")).to_contain_text("Undone", timeout=TIMEOUT)
    expect(undo).to_be_hidden()
    assert row_id not in rows_by_id(store)


def test_correct_by_key_and_not_a_digit(page, store) -> None:
    before = set(rows_by_id(store))
    draw_with_mouse(page, 7)
    wait_for_answer(page, "7")
    page.locator("#canvas").focus()
    page.keyboard.press("1")
    row_id = saved_id(page, store, before)
    assert rows_by_id(store)[row_id].label == "1"
    before = set(rows_by_id(store))
    page.keyboard.press("n")
    expect(page.locator("#feedback-status")).to_contain_text("not a digit", timeout=TIMEOUT)
    row_id = saved_id(page, store, before)
    assert rows_by_id(store)[row_id].label == "none"
    expect(page.locator("#prediction")).to_have_text("7")  # the keys did not touch the drawing


def test_keys_in_an_input_do_not_correct(page, store) -> None:
    before = set(rows_by_id(store))
    draw_with_mouse(page, 4)
    wait_for_answer(page, "4")
    page.locator("#number-mode").focus()
    page.keyboard.press("2")
    page.wait_for_timeout(300)
    assert set(rows_by_id(store)) == before
    expect(page.locator("#feedback-status")).to_have_text("")


def test_correct_an_upload(page, store) -> None:
    before = set(rows_by_id(store))
    picture = digit_picture(2)
    page.set_input_files(
        "#upload", files=[{"name": "two.png", "mimeType": "image/png", "buffer": picture}]
    )
    wait_for_answer(page, "2")
    page.get_by_role("button", name="It was not a digit").click()
    row_id = saved_id(page, store, before)
    row = rows_by_id(store)[row_id]
    assert row.upload == picture and row.label == "none" and row.predicted == "2"


def test_number_mode_corrects_one_digit(page, store) -> None:
    before = set(rows_by_id(store))
    page.click("label.switch")
    draw_number(page, SPACED_207)
    expect(page.locator("#number")).to_have_text("207", timeout=TIMEOUT)
    page.locator("#prediction:not([data-busy])").wait_for(state="attached", timeout=TIMEOUT)
    page.locator("#number-digits li button").nth(1).click()  # the chip of the 0
    expect(page.locator("#feedback-prompt")).to_contain_text("Digit 2")
    page.get_by_role("button", name="It was a 6").click()
    row_id = saved_id(page, store, before)
    row = rows_by_id(store)[row_id]
    assert row.label == "6" and row.predicted == "0"
    before = set(rows_by_id(store))
    page.locator("#boxes .digit-box span").nth(2).click()  # the box of the 7, on the pad
    expect(page.locator("#feedback-prompt")).to_contain_text("Digit 3")
    page.locator("#canvas").focus()
    page.keyboard.press("1")
    row_id = saved_id(page, store, before)
    row = rows_by_id(store)[row_id]
    assert row.label == "1" and row.predicted == "7"
