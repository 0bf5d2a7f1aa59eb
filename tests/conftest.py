"""Shared fixtures: run kernel and layer tests on every available backend."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import npcnn
from npcnn import kernels

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # digit_strokes.py
SHIPPED_WEIGHTS = ROOT / "weights" / "mnist_cnn.npz"

# The `backend` fixture is set once per test and is the same for all of hypothesis's examples.
_quiet = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
# Test workers run side by side (pytest -n 2): one maths thread each, or they fight for the cores.
npcnn.set_threads(1)

settings.register_profile(
    "ci", deadline=None, derandomize=True, print_blob=True, suppress_health_check=_quiet
)
settings.register_profile("dev", deadline=None, suppress_health_check=_quiet)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def one_maths_thread():
    """Every test ends with the suite's one maths thread: a test that sets another count, or runs
    a command line that takes every core (``train_model.main``), must not leave the later tests in
    its worker fighting the other worker for the cores, or computing on a different thread count."""
    yield
    if npcnn.settings.thread_limit() != 1:
        npcnn.set_threads(1)


@pytest.fixture(params=kernels.available_backends())
def backend(request: pytest.FixtureRequest):
    """Runs the test once per backend (numpy, and numba where installed)."""
    previous = kernels.get_backend()
    kernels.set_backend(request.param)
    yield request.param
    kernels.set_backend(previous)


@pytest.fixture(scope="session")
def shipped_model() -> npcnn.Sequential:
    """The committed, trained model."""
    return npcnn.load(SHIPPED_WEIGHTS)


@pytest.fixture(scope="session")
def refusing_model() -> npcnn.Sequential:
    """A tiny 11-output model whose last bias makes class 10 ("not a digit") win, and 4 the
    closest digit, whatever the picture: for testing how a refusal is shown."""
    from npcnn.layers import Dense, Flatten

    model = npcnn.Sequential([Flatten(), Dense(784, 11)], input_shape=(1, 28, 28), seed=5)
    dense = model.layers[-1]
    dense.params["W"][...] = 0.0
    dense.params["b"][...] = 0.0
    dense.params["b"][10] = 6.0
    dense.params["b"][4] = 3.0
    return model


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
