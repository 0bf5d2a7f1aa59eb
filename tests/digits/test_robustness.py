"""npcnn.digits.robustness: the corruptions of the robustness report."""

from __future__ import annotations

import numpy as np
import pytest

import npcnn
from npcnn.digits import architectures, robustness


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    images[:, 6:22, 12:16] = 255  # a thick upright bar: a "1"
    images[::2, 6:9, 9:20] = 200  # and a top bar on some: a "7"-ish
    return images


@pytest.mark.parametrize("name", [*robustness.CORRUPTIONS, *robustness.THROUGH_PREPROCESSING])
def test_each_corruption_keeps_shape_and_type_and_is_seeded(name, digits):
    corrupt = {**robustness.CORRUPTIONS, **robustness.THROUGH_PREPROCESSING}[name]
    first = corrupt(digits, np.random.default_rng(1))
    assert first.shape == digits.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, corrupt(digits, np.random.default_rng(1)))
    if name.startswith("clean"):
        np.testing.assert_array_equal(first, digits)
    else:
        assert not np.array_equal(first, digits), name


def test_preprocessing_turns_an_inverted_digit_back(digits):
    inverted = robustness.inverted(digits, np.random.default_rng(0))
    restored = robustness.preprocess_all(inverted)
    assert (restored[:, 0, 0] == 0).all() and (restored.max(axis=(1, 2)) == 255).all()


def test_the_table_has_a_row_per_corruption(digits):
    model = architectures.build("keras-small", seed=0, classes=11)
    labels = np.ones(len(digits), dtype=np.int64)
    rows = robustness.robustness_table(model, digits, labels, preprocess_limit=3)
    names = [row["corruption"] for row in rows]
    assert names == [*robustness.CORRUPTIONS, *robustness.THROUGH_PREPROCESSING]
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["refused"] <= 1
    assert rows[-1]["images"] == 3
    assert "corruption" in robustness.format_table(rows, "title")
    assert isinstance(model, npcnn.Sequential)
