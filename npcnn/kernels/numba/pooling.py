"""Max pooling: each window's maximum and where it was (two branch-free passes the compiler
vectorises over the channels); the way back sends each gradient to that one input (and, for
side-by-side windows, writes every pixel once).  Prediction keeps the maxima alone."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...shapes import window_output_size
from ._parallel import JIT, run


@njit(**JIT)
def _window_maximum(x, b, y, z, size, stride, best):
    """Fill ``best`` (the channels of output pixel ``(b, y, z)``) with its window's maxima."""
    first = x[b, y * stride, z * stride]
    for ch in range(best.size):
        best[ch] = first[ch]
    for k in range(1, size * size):
        pixel = x[b, y * stride + k // size, z * stride + k % size]
        for ch in range(best.size):
            best[ch] = max(best[ch], pixel[ch])
    return best


@njit(parallel=True, **JIT)
def _maxpool_forward(x, size, stride, out, argmax):
    """Two branch-free passes per window, so that the compiler vectorises the channel loops:
    first the maximum, then its position, the smallest offset ``k`` whose value equals it
    (``k + size * size`` for the others puts them past every real offset; first maximum on
    ties, as the NumPy reference)."""
    n, oh, ow, c = out.shape
    window = size * size
    for t in prange(n * oh):
        b, y = t // oh, t % oh
        position = np.empty(c, np.int32)
        for z in range(ow):
            best = _window_maximum(x, b, y, z, size, stride, out[b, y, z])
            for ch in range(c):
                position[ch] = window
            for k in range(window):
                pixel = x[b, y * stride + k // size, z * stride + k % size]
                for ch in range(c):
                    elsewhere = np.int32(window) * np.int32(pixel[ch] != best[ch])
                    position[ch] = min(position[ch], np.int32(k) + elsewhere)
            where = argmax[b, y, z]
            for ch in range(c):
                where[ch] = position[ch]
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
            _window_maximum(x, b, y, z, size, stride, out[b, y, z])
    return out


def maxpool_values(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """The window maxima of ``(N, H, W, C)`` alone (no positions): about half the time of
    ``maxpool_forward``'s two passes."""
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
