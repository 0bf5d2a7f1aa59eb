"""Winograd's F(2x2, 3x3) convolution as compiled loops: the twin of ``kernels/winograd.py``.

Read ``kernels/winograd.py`` first for the maths and its NumPy version.  As for im2col, a task
transforms a cache-sized run of 4x4 tiles, multiplies them right there (16 single-threaded BLAS
calls, one per position of the transformed tile), and transforms the products back.  The
transforms are written out: B^T and A^T hold only 0 and +-1, so each is a handful of additions,
done rows first, then columns.  Channels are innermost, so every line runs as SIMD over the
channels of one pixel.  A tile that crosses the image's border is copied into a small zero-padded
buffer first, so the transforms themselves never test for the border.

``conv.conv2d_forward`` and ``conv.conv2d_backward`` call ``winograd_conv2d_forward`` and
``winograd_conv2d_backward`` where ``use_winograd`` says so.
"""

from __future__ import annotations

import numpy as np
from numba import config, get_thread_id, njit, prange

from ...settings import pin_numba_blas_to_one_thread
from ...shapes import window_output_size
from ..winograd import filter_gradient, filter_transform, tile_grid
from ._parallel import JIT, items_per_task, run

# When Winograd beats im2col (measured with ``python benchmarks/winograd_crossover.py``): only for
# enough channels to make its 16 small matrix products worth their transforms, and for enough
# images to keep both cores busy with them.  Predicting one image stays with im2col.
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_IMAGES = 32


def use_winograd(n: int, c: int, f: int, k: int, stride: int) -> bool:
    """Whether a convolution of ``n`` images, ``c`` -> ``f`` channels, runs as Winograd F(2x2, 3x3)."""
    return (
        k == 3 and stride == 1 and n >= WINOGRAD_MIN_IMAGES and min(c, f) >= WINOGRAD_MIN_CHANNELS
    )


@njit(inline="always", **JIT)
def _tile(x, img, y0, x0, size, buffer):
    """Where to read the ``size x size`` tile of image ``img`` at ``(y0, x0)``: ``(array, img,
    y0, x0)``.  Inside the image that is ``x`` itself; a tile crossing the border is copied into
    ``buffer`` ``(1, size, size, C)``, zero outside the image."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    if 0 <= y0 and y0 + size <= h and 0 <= x0 and x0 + size <= w:
        return x, img, y0, x0
    for i in range(size):
        for j in range(size):
            inside = 0 <= y0 + i < h and 0 <= x0 + j < w
            for ch in range(c):
                buffer[0, i, j, ch] = x[img, y0 + i, x0 + j, ch] if inside else 0
    return buffer, 0, 0, 0


@njit(inline="always", **JIT)
def _input_transform(d, img, y0, x0, r, v, t):
    """``v[:, t] = B^T d B`` for the 4x4 tile ``d[img, y0:y0+4, x0:x0+4]``; ``r`` is scratch.

    B^T turns four values into: d0 - d2, d1 + d2, d2 - d1, d1 - d3."""
    c = d.shape[3]
    for j in range(4):  # r = B^T d: along the rows of the tile
        d0, d1, d2, d3 = (
            d[img, y0, x0 + j],
            d[img, y0 + 1, x0 + j],
            d[img, y0 + 2, x0 + j],
            d[img, y0 + 3, x0 + j],
        )
        for ch in range(c):
            r[0, j, ch] = d0[ch] - d2[ch]
            r[1, j, ch] = d1[ch] + d2[ch]
            r[2, j, ch] = d2[ch] - d1[ch]
            r[3, j, ch] = d1[ch] - d3[ch]
    for i in range(4):  # V = r B: along the columns
        for ch in range(c):
            v[4 * i + 0, t, ch] = r[i, 0, ch] - r[i, 2, ch]
            v[4 * i + 1, t, ch] = r[i, 1, ch] + r[i, 2, ch]
            v[4 * i + 2, t, ch] = r[i, 2, ch] - r[i, 1, ch]
            v[4 * i + 3, t, ch] = r[i, 1, ch] - r[i, 3, ch]


@njit(inline="always", **JIT)
def _output_transform(products, t, bias, r, out):
    """``out = A^T M A + bias``, the 2x2 outputs ``(2, 2, F)`` of tile ``t``; ``r`` is scratch
    ``(2, 4, F)``.

    A^T turns four values into: m0 + m1 + m2, m1 - m2 - m3."""
    f = products.shape[2]
    for j in range(4):  # r = A^T M
        for ch in range(f):
            m1, m2 = products[4 + j, t, ch], products[8 + j, t, ch]
            r[0, j, ch] = products[j, t, ch] + m1 + m2
            r[1, j, ch] = m1 - m2 - products[12 + j, t, ch]
    for i in range(2):  # Y = r A + bias
        for ch in range(f):
            m1, m2 = r[i, 1, ch], r[i, 2, ch]
            out[i, 0, ch] = r[i, 0, ch] + m1 + m2 + bias[ch]
            out[i, 1, ch] = m1 - m2 - r[i, 3, ch] + bias[ch]


@njit(inline="always", **JIT)
def _store_tile(tile, size, y, img, y0, x0):
    """``y[img, y0 + i, x0 + j] = tile[i, j]`` where that lies inside ``y``."""
    h, w, c = y.shape[1], y.shape[2], y.shape[3]
    for i in range(min(size, h - y0)):
        for j in range(min(size, w - x0)):
            for ch in range(c):
                y[img, y0 + i, x0 + j, ch] = tile[i, j, ch]


@njit(inline="always", **JIT)
def _grad_transform(g, img, y0, x0, r, z, t):
    """``z[:, t] = A dY A^T`` for the 2x2 output-gradient tile ``g[img, y0:y0+2, x0:x0+2]``.

    A turns two values into four: g0, g0 + g1, g0 - g1, -g1."""
    f = g.shape[3]
    for j in range(2):  # r = A dY
        top, bottom = g[img, y0, x0 + j], g[img, y0 + 1, x0 + j]
        for ch in range(f):
            g0, g1 = top[ch], bottom[ch]
            r[0, j, ch] = g0
            r[1, j, ch] = g0 + g1
            r[2, j, ch] = g0 - g1
            r[3, j, ch] = -g1
    for i in range(4):  # Z = r A^T
        for ch in range(f):
            g0, g1 = r[i, 0, ch], r[i, 1, ch]
            z[4 * i + 0, t, ch] = g0
            z[4 * i + 1, t, ch] = g0 + g1
            z[4 * i + 2, t, ch] = g0 - g1
            z[4 * i + 3, t, ch] = -g1


@njit(inline="always", **JIT)
def _input_grad_transform(grad_v, t, r, dd):
    """``dd = B dV B^T``, the input gradient ``(4, 4, C)`` of tile ``t``; ``r`` is scratch
    ``(4, 4, C)``.

    B turns four values into: v0, v1 - v2 + v3, v2 + v1 - v0, -v3."""
    c = grad_v.shape[2]
    for q in range(4):  # r = B dV
        for ch in range(c):
            v0, v1 = grad_v[q, t, ch], grad_v[4 + q, t, ch]
            v2, v3 = grad_v[8 + q, t, ch], grad_v[12 + q, t, ch]
            r[0, q, ch] = v0
            r[1, q, ch] = v1 - v2 + v3
            r[2, q, ch] = v2 + v1 - v0
            r[3, q, ch] = -v3
    for i in range(4):  # dd = r B^T
        for ch in range(c):
            v0, v1, v2, v3 = r[i, 0, ch], r[i, 1, ch], r[i, 2, ch], r[i, 3, ch]
            dd[i, 0, ch] = v0
            dd[i, 1, ch] = v1 - v2 + v3
            dd[i, 2, ch] = v2 + v1 - v0
            dd[i, 3, ch] = -v3


@njit(inline="always", **JIT)
def _add_tile(tile, grad_x, img, y0, x0):
    """``grad_x[img, y0 + i, x0 + j] += tile[i, j]`` where that lies inside the image."""
    h, w, c = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
    for i in range(max(0, -y0), min(4, h - y0)):
        for j in range(max(0, -x0), min(4, w - x0)):
            for ch in range(c):
                grad_x[img, y0 + i, x0 + j, ch] += tile[i, j, ch]


@njit(parallel=True, **JIT)
def _winograd_forward(x, u, bias, pad, tiles_h, tiles_w, rows_per_task, y):
    total = x.shape[0] * tiles_h  # rows of tiles in the whole batch
    c, f = x.shape[3], u.shape[2]
    for task in prange((total + rows_per_task - 1) // rows_per_task):
        first, last = task * rows_per_task, min(total, task * rows_per_task + rows_per_task)
        count = (last - first) * tiles_w
        v = np.empty((16, count, c), dtype=x.dtype)
        products = np.empty((16, count, f), dtype=x.dtype)
        tile, scratch = np.empty((1, 4, 4, c), dtype=x.dtype), np.empty((4, 4, c), dtype=x.dtype)
        out, scratch_out = np.empty((2, 2, f), dtype=x.dtype), np.empty((2, 4, f), dtype=x.dtype)
        for r in range(first, last):
            img, th = r // tiles_h, r % tiles_h
            for tw in range(tiles_w):
                src, i, y0, x0 = _tile(x, img, 2 * th - pad, 2 * tw - pad, 4, tile)
                _input_transform(src, i, y0, x0, scratch, v, (r - first) * tiles_w + tw)
        for xi in range(16):
            np.dot(v[xi], u[xi], products[xi])
        for r in range(first, last):
            img, th = r // tiles_h, r % tiles_h
            for tw in range(tiles_w):
                t = (r - first) * tiles_w + tw
                _output_transform(products, t, bias, scratch_out, out)
                _store_tile(out, 2, y, img, 2 * th, 2 * tw)
    return y


@njit(parallel=True, **JIT)
def _winograd_backward(x, grad_y, u_t, pad, tiles_h, tiles_w, step, sums_u, sums_b, grad_x):
    n, h, w, c = x.shape
    f = grad_y.shape[3]
    per_image = tiles_h * tiles_w
    sums_u[:] = 0
    sums_b[:] = 0
    for task in prange((n + step - 1) // step):
        first, last = task * step, min(n, task * step + step)
        count = (last - first) * per_image
        v = np.empty((16, count, c), dtype=x.dtype)
        z = np.empty((16, count, f), dtype=x.dtype)
        tile, scratch = np.empty((1, 4, 4, c), dtype=x.dtype), np.empty((4, 4, c), dtype=x.dtype)
        grad, scratch_grad = (
            np.empty((1, 2, 2, f), dtype=x.dtype),
            np.empty((4, 2, f), dtype=x.dtype),
        )
        thread = get_thread_id()
        for img in range(first, last):
            for th in range(tiles_h):
                for tw in range(tiles_w):
                    t = (img - first) * per_image + th * tiles_w + tw
                    src, i, y0, x0 = _tile(x, img, 2 * th - pad, 2 * tw - pad, 4, tile)
                    _input_transform(src, i, y0, x0, scratch, v, t)
                    src, i, y0, x0 = _tile(grad_y, img, 2 * th, 2 * tw, 2, grad)
                    _grad_transform(src, i, y0, x0, scratch_grad, z, t)
        tile_sums = z[5]  # Z[1, 1] = g00 + g01 + g10 + g11: the sum of each tile's dY
        for t in range(count):  # db: the sum of dY
            for ch in range(f):
                sums_b[thread, ch] += tile_sums[t, ch]
        part = np.empty((c, f), dtype=x.dtype)
        for xi in range(16):
            np.dot(v[xi].T, z[xi], part)  # dU = V^T Z
            sums_u[thread, xi] += part
        if grad_x.shape[0] > 0:  # dV = Z U^T, then dx = B dV B^T, overlapping tiles summed
            grad_v = v  # V is no longer needed: reuse its memory
            for xi in range(16):
                np.dot(z[xi], u_t[xi], grad_v[xi])
            grad_x[first:last] = 0
            for img in range(first, last):
                for th in range(tiles_h):
                    for tw in range(tiles_w):
                        t = (img - first) * per_image + th * tiles_w + tw
                        _input_grad_transform(grad_v, t, scratch, tile[0])
                        _add_tile(tile[0], grad_x, img, 2 * th - pad, 2 * tw - pad)
    return sums_u


def winograd_conv2d_forward(x: np.ndarray, w_ext: np.ndarray, pad: int) -> np.ndarray:
    """``conv2d_forward(x, w_ext, 3, 1, pad)`` by Winograd's F(2x2, 3x3) (see ``kernels.winograd``)."""
    n, h, w, c = x.shape
    f = w_ext.shape[0]
    oh, ow = window_output_size(h, 3, 1, pad), window_output_size(w, 3, 1, pad)
    tiles_h, tiles_w = tile_grid(oh, ow, 2)
    u = filter_transform(w_ext, 2)
    bias = np.ascontiguousarray(w_ext[:, -1])
    rows_per_task = items_per_task(n * tiles_h, tiles_w * 16 * (c + f) * x.itemsize)
    y = np.empty((n, oh, ow, f), dtype=x.dtype)
    pin_numba_blas_to_one_thread()
    x = np.ascontiguousarray(x)
    work = n * tiles_h * tiles_w * 16 * (c + f)
    run(_winograd_forward, work, x, u, bias, pad, tiles_h, tiles_w, rows_per_task, y)
    return y


def winograd_conv2d_backward(
    x: np.ndarray, grad_y: np.ndarray, w_ext: np.ndarray, pad: int, input_grad: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """``([dW_mat | db], dx or None)`` of ``winograd_conv2d_forward`` (see ``kernels.winograd``)."""
    n, h, w, c = x.shape
    f = w_ext.shape[0]
    tiles_h, tiles_w = tile_grid(grad_y.shape[1], grad_y.shape[2], 2)
    u_t = np.ascontiguousarray(filter_transform(w_ext, 2).transpose(0, 2, 1))
    step = items_per_task(n, tiles_h * tiles_w * 16 * (c + f) * x.itemsize)
    threads = config.NUMBA_NUM_THREADS
    sums_u = np.empty((threads, 16, c, f), dtype=x.dtype)
    sums_b = np.empty((threads, f), dtype=x.dtype)
    grad_x = np.empty(x.shape if input_grad else (0, h, w, c), dtype=x.dtype)
    pin_numba_blas_to_one_thread()
    x, grad_y = np.ascontiguousarray(x), np.ascontiguousarray(grad_y)
    work = n * tiles_h * tiles_w * 16 * (c + f)
    args = (x, grad_y, u_t, pad, tiles_h, tiles_w, step, sums_u, sums_b, grad_x)
    run(_winograd_backward, work, *args)
    grad_ext = np.empty((f, 9 * c + 1), dtype=x.dtype)
    grad_ext[:, :-1] = filter_gradient(sums_u.sum(axis=0), 2)
    grad_ext[:, -1] = sums_b.sum(axis=0)
    return grad_ext, (grad_x if input_grad else None)
