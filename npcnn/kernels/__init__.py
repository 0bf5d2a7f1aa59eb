"""Choose the implementation of the hot kernels: plain NumPy or Numba.

The environment variable ``NPCNN_BACKEND`` picks at import time:

- ``auto`` (default): Numba if it can be imported, otherwise NumPy;
- ``numpy``: the readable reference in ``numpy_ref.py``;
- ``numba``: the compiled loops in ``numba_jit.py`` (an error if Numba is missing).

``set_backend(name)`` switches at run time (tests use it to run both).  This choice is the only
global state npcnn keeps.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

from . import numpy_ref

try:
    from . import numba_jit
except ImportError:  # Numba is optional: everything works without it, only slower.
    numba_jit = None

BACKENDS = ("auto", "numpy", "numba")
_active: ModuleType = numpy_ref


def available_backends() -> list[str]:
    """The concrete backends that can be used on this machine."""
    return ["numpy"] + (["numba"] if numba_jit is not None else [])


def set_backend(name: str) -> str:
    """Use ``name`` (``auto``, ``numpy`` or ``numba``) from now on; returns the concrete choice."""
    global _active
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown NPCNN_BACKEND {name!r}: choose one of {', '.join(BACKENDS)}")
    if name == "numba" and numba_jit is None:
        raise ImportError("NPCNN_BACKEND=numba, but Numba is not installed (pip install numba)")
    if name == "auto":
        name = "numba" if numba_jit is not None else "numpy"
    _active = numba_jit if name == "numba" else numpy_ref
    return name


def get_backend() -> str:
    """The concrete backend in use: ``"numpy"`` or ``"numba"``."""
    return "numba" if _active is numba_jit and numba_jit is not None else "numpy"


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """``(N, C, H, W) -> (N*OH*OW, C*kh*kw)``: every patch as one row (see ``numpy_ref``)."""
    return _active.im2col(x, kh, kw, stride, pad)


def col2im(
    cols: np.ndarray, x_shape: tuple[int, int, int, int], kh: int, kw: int, stride: int, pad: int
) -> np.ndarray:
    """The adjoint of ``im2col``: rows back to an ``(N, C, H, W)`` image, overlaps summed."""
    return _active.col2im(cols, x_shape, kh, kw, stride, pad)


def maxpool_forward(x: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool ``x``; also the arg-max inside each window, for the backward pass."""
    return _active.maxpool_forward(x, size, stride)


def maxpool_backward(
    grad_out: np.ndarray,
    argmax: np.ndarray,
    x_shape: tuple[int, int, int, int],
    size: int,
    stride: int,
) -> np.ndarray:
    """Send each output gradient back to its window's maximum."""
    return _active.maxpool_backward(grad_out, argmax, x_shape, size, stride)


set_backend(os.environ.get("NPCNN_BACKEND", "auto"))
