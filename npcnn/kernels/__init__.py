"""Choose the implementation of the hot kernels: plain NumPy or Numba.

The environment variable ``NPCNN_BACKEND`` picks at import time:

- ``auto`` (default): Numba if it can be imported, otherwise NumPy;
- ``numpy``: the readable reference in ``numpy_ref.py``;
- ``numba``: the compiled loops in ``numba_jit.py`` (an error if Numba is missing).

``set_backend(name)`` switches at run time (tests use it to run both).  This choice is the only
global state npcnn keeps.
"""

from __future__ import annotations

import ctypes
import os
import sys
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


# The dispatchers below hand each call to the active backend.  Images are channels-last
# (N, H, W, C) here; see numpy_ref.py for the layout and the maths of each kernel.


def im2col(
    x: np.ndarray, kh: int, kw: int, stride: int, pad: int, out: np.ndarray | None = None
) -> np.ndarray:
    """``(N, H, W, C) -> (N*OH*OW, kh*kw*C)``: every patch as one row (see ``numpy_ref``).

    ``out``: a C-contiguous buffer for the result; columns past ``kh*kw*C`` are left untouched.
    """
    return _active.im2col(x, kh, kw, stride, pad, out)


def col2im(
    cols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kh: int,
    kw: int,
    stride: int,
    pad: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The adjoint of ``im2col``: rows back to an ``(N, H, W, C)`` image, overlaps summed."""
    return _active.col2im(cols, x_shape, kh, kw, stride, pad, out)


def conv2d_forward(x: np.ndarray, w_ext: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """A convolution: ``(N, H, W, C)`` and ``w_ext = [W_mat | b]`` ``(F, k*k*C + 1)`` ->
    ``(N, OH, OW, F)``, computed as ``[im2col(x) | 1] @ w_ext.T``."""
    return _active.conv2d_forward(x, w_ext, k, stride, pad)


def conv2d_backward(
    x: np.ndarray,
    grad_y: np.ndarray,
    w_ext: np.ndarray,
    k: int,
    stride: int,
    pad: int,
    input_grad: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``([dW_mat | db], dx)`` of ``conv2d_forward`` for ``grad_y`` ``(N, OH, OW, F)``; ``dx`` is
    ``None`` unless ``input_grad``."""
    return _active.conv2d_backward(x, grad_y, w_ext, k, stride, pad, input_grad)


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ w + b``: ``(N, in)`` and ``w`` ``(in, out)`` -> ``(N, out)``."""
    return _active.dense_forward(x, w, b)


def dense_backward(
    x: np.ndarray, grad_y: np.ndarray, w: np.ndarray, input_grad: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(dW, db, dx)`` of ``dense_forward``; ``dx`` is ``None`` unless ``input_grad``."""
    return _active.dense_backward(x, grad_y, w, input_grad)


def maxpool_forward(x: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool an ``(N, H, W, C)`` image; also the arg-max inside each window (uint8)."""
    return _active.maxpool_forward(x, size, stride)


def maxpool_backward(
    grad_out: np.ndarray,
    argmax: np.ndarray,
    x_shape: tuple[int, int, int, int],
    size: int,
    stride: int,
) -> np.ndarray:
    """Send each output gradient back to its window's maximum (``(N, H, W, C)``)."""
    return _active.maxpool_backward(grad_out, argmax, x_shape, size, stride)


def relu_forward(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` as a new array."""
    return _active.relu_forward(x)


def relu_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``grad_out`` where the ReLU output ``y`` is positive, else 0."""
    return _active.relu_backward(grad_out, y)


def column_mean_var(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance of each column of a ``(samples, C)`` table."""
    return _active.column_mean_var(table)


def batchnorm_forward(
    table: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """``gamma * (x - mean) * inv_std + beta`` for each column of a ``(samples, C)`` table."""
    return _active.batchnorm_forward(table, mean, inv_std, gamma, beta)


def batchnorm_backward(
    grad: np.ndarray,
    table: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    gamma: np.ndarray,
    training: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dgamma, dbeta)`` of BatchNorm on a ``(samples, C)`` table."""
    return _active.batchnorm_backward(grad, table, mean, inv_std, gamma, training)


def adam_update(
    w: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    beta1: float,
    beta2: float,
    step_size: float,
    eps_hat: float,
    decay: float,
) -> None:
    """One Adam step on one parameter array, in place (see ``optimizers.Adam``)."""
    _active.adam_update(w, g, m, v, beta1, beta2, step_size, eps_hat, decay)


def keep_freed_memory_for_reuse() -> bool:
    """Ask glibc's ``malloc`` to keep big freed blocks for reuse instead of returning them.

    Training allocates and frees arrays of tens of MB every step.  By default glibc hands such
    blocks back to the kernel and the next allocation faults every page in again, zero-filled:
    we measured 10% of a lenet-plus training step spent doing that.  Keeping blocks of up to
    32 MiB in the heap (and trimming it only past 512 MiB of free space) ends that; the peak
    memory does not change.  Nothing is done off Linux/glibc, or when the ``MALLOC_*``
    environment variables already choose.  Returns whether the setting was applied.

    It changes the whole process, so npcnn does it only where a process trains: ``Sequential.fit``.
    """
    if sys.platform != "linux" or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(
            libc.mallopt(m_trim_threshold, 512 << 20)
        )
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False


set_backend(os.environ.get("NPCNN_BACKEND", "auto"))
