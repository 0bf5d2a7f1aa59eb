"""Fixtures of the preprocessing tests: reference outputs, real MNIST digits, the shipped model.

Where the MNIST cache or the shipped model do not exist, the tests that need them skip, saying why.
"""

from __future__ import annotations

import numpy as np
import pytest
from preprocess_pictures import (
    STROKES,
    WEIGHTS,
    coverage,
    paint,
    place,
)

from npcnn.digits.preprocess.framing import to_mnist


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """``to_mnist`` of each digit drawn black on white, 200 px tall, on a 280x280 canvas."""
    return {d: to_mnist(paint(place(coverage(d)))) for d in STROKES}


@pytest.fixture(scope="module")
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """300 MNIST test digits from across the set (float in [0, 1]) and their labels."""
    from npcnn.digits import data

    (_, _), (x_test, y_test) = data.load_mnist()
    return x_test[::33][:300].astype(np.float32) / 255.0, y_test[::33][:300]


@pytest.fixture(scope="module")
def model():
    if not WEIGHTS.exists():
        pytest.skip(f"the shipped model {WEIGHTS} does not exist yet")
    import npcnn

    return npcnn.load(WEIGHTS)
