"""Max pooling: one pass over the input keeps each window's maximum and where it was; the way back
sends each gradient to that one input (and, for side-by-side windows, writes every pixel once).
Prediction keeps the maxima alone, a loop the compiler vectorises over the channels."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...shapes import window_output_size
from ._parallel import JIT, run


@njit(parallel=True, **JIT)
def _maxpool_forward(x, size, stride, out, argmax):
    n, oh, ow, c = out.shape
    for t in prange(n * oh):
        b, y = t // oh, t % oh
        for z in range(ow):
            for ch in range(c):
                out[b, y, z, ch] = x[b, y * stride, z * stride, ch]
                argmax[b, y, z, ch] = 0
            for k in range(1, size * size):
                i, j = k // size, k % size
                for ch in range(c):
                    v = x[b, y * stride + i, z * stride + j, ch]
                    if v > out[b, y, z, ch]:
                        out[b, y, z, ch] = v
                        argmax[b, y, z, ch] = k
    return out, argmax


@njit(parallel=True, **JIT)
def _maxpool_backward(grad_out, argmax, size, stride, zero, grad_x):
    n, oh, ow, c = grad_out.shape
    _, h, w, _ = grad_x.shape
    tiles = stride == size  # windows side by side: every input pixel is in at most one
    for b in prange(n):
        if tiles:  # write every pixel of every window once: the gradient or 0
            for y in range(oh):
                for z in range(ow):
                    for k in range(size * size):
                        i, j = k // size, k % size
                        for ch in range(c):
                            won = argmax[b, y, z, ch] == k
                            grad_x[b, y * size + i, z * size + j, ch] = (
                                grad_out[b, y, z, ch] if won else zero
                            )
            grad_x[b, oh * size :, :, :] = 0  # rows and columns no window covers
            grad_x[b, : oh * size, ow * size :, :] = 0
        else:  # overlapping windows (or gaps): clear, then add
            grad_x[b] = 0
            for y in range(oh):
                for z in range(ow):
                    for ch in range(c):
                        k = argmax[b, y, z, ch]
                        i, j = k // size, k % size
                        grad_x[b, y * stride + i, z * stride + j, ch] += grad_out[b, y, z, ch]
    return grad_x


def maxpool_forward(x: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Max over each window of ``(N, H, W, C)``; also the flat index ``i * size + j`` of the max."""
    n, h, w, c = x.shape
    shape = (n, window_output_size(h, size, stride), window_output_size(w, size, stride), c)
    out, argmax = np.empty(shape, dtype=x.dtype), np.empty(shape, dtype=np.uint8)
    return run(_maxpool_forward, x.size, np.ascontiguousarray(x), size, stride, out, argmax)


@njit(parallel=True, **JIT)
def _maxpool_values(x, size, stride, out):
    n, oh, ow, c = out.shape
    for t in prange(n * oh):
        b, y = t // oh, t % oh
        for z in range(ow):
            best = out[b, y, z]
            first = x[b, y * stride, z * stride]
            for ch in range(c):
                best[ch] = first[ch]
            for k in range(1, size * size):
                pixel = x[b, y * stride + k // size, z * stride + k % size]
                for ch in range(c):
                    best[ch] = max(best[ch], pixel[ch])
    return out


def maxpool_values(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """The window maxima of ``(N, H, W, C)`` alone (no positions): 4-6x faster than
    ``maxpool_forward``, whose branch per value keeps the compiler from vectorising."""
    n, h, w, c = x.shape
    shape = (n, window_output_size(h, size, stride), window_output_size(w, size, stride), c)
    out = np.empty(shape, dtype=x.dtype)
    return run(_maxpool_values, x.size, np.ascontiguousarray(x), size, stride, out)


def maxpool_backward(
    grad_out: np.ndarray,
    argmax: np.ndarray,
    x_shape: tuple[int, int, int, int],
    size: int,
    stride: int,
) -> np.ndarray:
    """Route each output gradient to the one input that was the maximum of its window (NHWC)."""
    grad_x = np.empty(x_shape, dtype=grad_out.dtype)
    g, a = np.ascontiguousarray(grad_out), np.ascontiguousarray(argmax)
    return run(_maxpool_backward, grad_x.size, g, a, size, stride, g.dtype.type(0), grad_x)
