"""The framework's whole test suite runs once per kernel backend (numpy, and numba if installed)."""

from __future__ import annotations

import pytest

from npcnn import kernels


@pytest.fixture(autouse=True, params=kernels.available_backends())
def backend(request: pytest.FixtureRequest):
    """Every core test runs on each backend in turn (this overrides tests/conftest.py's)."""
    previous = kernels.get_backend()
    kernels.set_backend(request.param)
    yield request.param
    kernels.set_backend(previous)
