"""Fixtures of the app's tests: the model, the app around it, and a test client.

The model is ``$NPCNN_TEST_WEIGHTS`` or the shipped ``weights/mnist_cnn.npz``.  Without either, the
API tests run on a tiny random model saved to and loaded from a temporary file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # app_helpers.py

from app_helpers import TRAINED  # noqa: E402

import npcnn  # noqa: E402
from npcnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU  # noqa: E402


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained model if there is one, else a tiny random one written to a temporary file."""
    if TRAINED.is_file():
        return TRAINED
    model = npcnn.Sequential(
        [Conv2D(1, 4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(4 * 13 * 13, 10)],
        input_shape=(1, 28, 28),
        seed=3,
    )
    path = tmp_path_factory.mktemp("model") / "tiny.npz"
    npcnn.save(
        model, path, metadata={"architecture_name": "tiny-test", "metrics": {"test_accuracy": 0.1}}
    )
    return path


@pytest.fixture(scope="module")
def flask_app(weights_path: Path):
    import app as app_module

    return app_module.create_app(weights_path)


@pytest.fixture(scope="module")
def model(flask_app):
    return flask_app.extensions["npcnn"].model


@pytest.fixture()
def client(flask_app):
    return flask_app.test_client()
