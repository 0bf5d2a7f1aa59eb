"""ReLU, forward and backward: one parallel pass over memory, keeping the input's memory layout
(the layers pass channels-last views around)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import JIT, PARALLEL_MIN, run


@njit(parallel=True, **JIT)
def _relu_forward(x, zero, y):
    for i in prange(x.size):
        y[i] = max(x[i], zero)
    return y


@njit(parallel=True, **JIT)
def _relu_backward(grad_out, y, zero, grad_x):
    for i in prange(y.size):
        grad_x[i] = grad_out[i] if y[i] > zero else zero
    return grad_x


def _flat(a: np.ndarray) -> np.ndarray:
    """A 1-D view of a dense array in memory order (a copy only if ``a`` is not dense)."""
    flat = a.ravel(order="K")
    return flat if np.shares_memory(flat, a) else np.ascontiguousarray(flat)


def _like(a: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``a``'s values in ``template``'s memory layout (no copy when they already match)."""
    if a.strides == template.strides:
        return a
    out = np.empty_like(template)
    out[...] = a
    return out


def relu_forward(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``, a new array with the memory layout of ``x``."""
    if x.size < PARALLEL_MIN:  # one image: NumPy's loop is quicker than calling ours
        return np.maximum(x, 0)
    y = np.empty_like(x)
    run(_relu_forward, x.size, _flat(x), x.dtype.type(0), y.ravel(order="K"))
    return y


def relu_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``grad_out`` where the ReLU's output ``y`` is positive, 0 elsewhere."""
    grad_x = np.empty_like(y)  # dense, in y's memory order
    y, grad_out = _like(y, grad_x), _like(grad_out, grad_x)
    zero = y.dtype.type(0)
    run(_relu_backward, y.size, _flat(grad_out), _flat(y), zero, grad_x.ravel(order="K"))
    return grad_x
