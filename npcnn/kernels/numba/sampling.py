"""Bilinear sampling of a batch of images at real-valued points, one loop over the points.

It runs on the calling thread alone (no parallel loop): its caller is the thread that prepares
augmented batches beside the training's own threads, and a parallel loop there would make the
two fight over the same cores.  The arithmetic is the reference's (``numpy_ref``), in the same
order, so the results agree to the last bit."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._parallel import JIT


@njit(**JIT)
def _sample_bilinear(images, rows, cols, zero, out):
    n, h, w = images.shape
    _, p, q = rows.shape
    for k in range(n):
        for i in range(p):
            for j in range(q):
                r, c = np.float32(rows[k, i, j]), np.float32(cols[k, i, j])
                r0 = min(max(np.floor(r), np.float32(-2)), np.float32(h))  # as the reference clips
                c0 = min(max(np.floor(c), np.float32(-2)), np.float32(w))
                a, b = r - r0, c - c0
                top, left = int(r0), int(c0)
                top_left = top_right = bottom_left = bottom_right = zero  # outside: zeros
                if 0 <= top < h:
                    if 0 <= left < w:
                        top_left = images[k, top, left]
                    if 0 <= left + 1 < w:
                        top_right = images[k, top, left + 1]
                if 0 <= top + 1 < h:
                    if 0 <= left < w:
                        bottom_left = images[k, top + 1, left]
                    if 0 <= left + 1 < w:
                        bottom_right = images[k, top + 1, left + 1]
                upper = top_left + b * (top_right - top_left)
                lower = bottom_left + b * (bottom_right - bottom_left)
                out[k, i, j] = upper + a * (lower - upper)
    return out


def sample_bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Each image of ``images`` (N, H, W) read at (``rows``, ``cols``) (N, P, Q), bilinearly, with
    zeros outside (see ``numpy_ref``)."""
    images = np.ascontiguousarray(images)
    out = np.empty(rows.shape, dtype=images.dtype)
    rows, cols = np.ascontiguousarray(rows), np.ascontiguousarray(cols)
    return _sample_bilinear(images, rows, cols, images.dtype.type(0), out)
