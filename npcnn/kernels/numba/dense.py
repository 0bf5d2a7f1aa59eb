"""Fully connected layers: ``x @ w + b`` and its gradients, the rows of the batch split across
the threads, BLAS single-threaded inside each (one pool of threads, as for the convolution)."""

from __future__ import annotations

import numpy as np
from numba import config, get_thread_id, njit, prange

from ...settings import pin_numba_blas_to_one_thread
from ._parallel import JIT, run, thread_count


@njit(parallel=True, **JIT)
def _dense_forward(x, w, b, step, y):
    n = x.shape[0]
    for task in prange((n + step - 1) // step):
        first, last = task * step, min(n, task * step + step)
        np.dot(x[first:last], w, y[first:last])
        y[first:last] += b
    return y


@njit(parallel=True, **JIT)
def _dense_backward(x, g, w_t, step, sums, grad_x):
    n = x.shape[0]
    sums[:] = 0
    for task in prange((n + step - 1) // step):
        first, last = task * step, min(n, task * step + step)
        part = np.empty(sums.shape[1:], dtype=x.dtype)
        np.dot(x[first:last].T, g[first:last], part)  # (in, rows) @ (rows, out)
        sums[get_thread_id()] += part
        if grad_x.shape[0] > 0:
            np.dot(g[first:last], w_t, grad_x[first:last])
    return sums


def _rows_per_task(n: int) -> int:
    return max(1, -(-n // thread_count()))


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ w + b``, the rows split across the threads (BLAS single-threaded inside each)."""
    x = np.ascontiguousarray(x)
    y = np.empty((x.shape[0], w.shape[1]), dtype=x.dtype)
    pin_numba_blas_to_one_thread()
    step = _rows_per_task(len(x))
    return run(_dense_forward, x.size * w.shape[1] // 64, x, w, b, step, y)


def dense_backward(
    x: np.ndarray, grad_y: np.ndarray, w: np.ndarray, input_grad: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(dW, db, dx)`` of ``dense_forward``: ``x.T @ dY``, ``sum(dY)``, ``dY @ w.T``."""
    x, grad_y = np.ascontiguousarray(x), np.ascontiguousarray(grad_y)
    n = len(x)
    sums = np.empty((config.NUMBA_NUM_THREADS, *w.shape), dtype=x.dtype)
    grad_x = np.empty(x.shape if input_grad else (0, x.shape[1]), dtype=x.dtype)
    pin_numba_blas_to_one_thread()
    w_t = np.ascontiguousarray(w.T)
    work = x.size * w.shape[1] // 32
    run(_dense_backward, work, x, grad_y, w_t, _rows_per_task(n), sums, grad_x)
    return sums.sum(axis=0), grad_y.sum(axis=0), (grad_x if input_grad else None)
