"""``npcnn.digits.number_set``: the project's own pictures of numbers (dev and test sets)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from npcnn.digits.augment import augmenter
from npcnn.digits.number_set import CATEGORIES, digit_sources, make_number, number_set


@pytest.fixture(scope="module")
def dev() -> list:
    return number_set("dev", 12)


def test_the_set_is_deterministic(dev) -> None:
    again = number_set("dev", 12)
    assert [p.text for p in again] == [p.text for p in dev]
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(again, dev, strict=True))
    other = number_set("dev", 12, seed=7)
    assert [p.text for p in other] != [p.text for p in dev]


def test_dev_and_test_sets_differ(dev) -> None:
    test = number_set("test", 12)
    assert [p.text for p in test] != [p.text for p in dev]


def test_pictures_look_like_written_numbers(dev) -> None:
    assert [p.category for p in dev] == list(CATEGORIES) * 2
    for picture in dev:
        assert 2 <= len(picture.text) <= 8 and picture.text.isdigit()
        assert picture.pixels.dtype == np.uint8 and picture.pixels.ndim == 2
        assert len(picture.boxes) == len(picture.text)
        height, width = picture.pixels.shape
        for x0, y0, x1, y1 in picture.boxes:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert 11 <= y1 - y0 <= 127  # scaled up like a real number (40-120 px, mixed 0.6x)
        lefts = [b[0] for b in picture.boxes]
        assert lefts == sorted(lefts)
        assert picture.png().startswith(b"\x89PNG")


def test_touching_digits_touch_and_spaced_ones_do_not(dev) -> None:
    for picture in dev:
        paper = np.median(picture.pixels)
        ink = np.abs(picture.pixels.astype(np.float32) - paper) > 100
        if picture.category == "touching":
            pieces = ndimage.label(ink, structure=np.ones((3, 3)))[1]
            assert pieces < len(picture.text) + 6  # neighbours joined (specks may add pieces)
            boxes = picture.boxes
            assert all(b[0] < a[2] for a, b in zip(boxes, boxes[1:], strict=False))
        if picture.category == "spaced":
            boxes = picture.boxes
            assert all(b[0] > a[2] for a, b in zip(boxes, boxes[1:], strict=False))


def test_an_unknown_set_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        number_set("train", 3)


def test_the_number_reader_never_learns_the_dev_sets_digits() -> None:
    """The digits "train" (what train_number_reader.py learns from) and "dev" (what is tuned on)
    split MNIST's training digits as train_model.py's validation split does."""
    train_images, train_labels, train_synth, _ = digit_sources("train")
    dev_images, dev_labels, dev_synth, _ = digit_sources("dev")
    test_images, _, _, _ = digit_sources("test")
    assert (len(train_images), len(dev_images), len(test_images)) == (55_000, 5_000, 10_000)
    share = np.bincount(np.concatenate([train_labels, dev_labels])) / 12  # 5,000 of 60,000
    assert np.abs(np.bincount(dev_labels) - share).max() <= 1  # stratified: each digit its share
    learnt = {image.tobytes() for image in train_images}
    assert sum(image.tobytes() in learnt for image in dev_images) == 0
    assert not np.array_equal(train_synth, dev_synth)  # synthetic digits of their own seed


def test_training_pictures_change_every_digit_before_placing_it() -> None:
    calls = []

    def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        calls.append(batch.shape)
        return augmenter(1.0)(batch, rng)

    picture = make_number(np.random.default_rng(5), "train", "plain", augment)
    assert calls == [(1, 28, 28)] * len(picture.text)
    assert len(picture.boxes) == len(picture.text)
    plain = make_number(np.random.default_rng(5), "train", "plain")
    assert plain.text[0] == picture.text[0]  # the same first digit, written differently
    assert not np.array_equal(plain.pixels, picture.pixels)
