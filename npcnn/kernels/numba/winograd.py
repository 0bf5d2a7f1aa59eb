"""Winograd's F(4x4, 3x3) convolution as compiled loops: the twin of ``kernels/winograd.py``.

Read ``kernels/winograd.py`` first for the maths, its NumPy version and when it is used
(``use_winograd``).  As for im2col, a task transforms a cache-sized block of 6x6 input tiles,
multiplies them right there (36 single-threaded BLAS calls, one per position ``ξ`` of the
transformed tile), and transforms the products back: the transforms and the GEMMs of a block run
back to back while the block is in the core's cache.

The transforms are written out as additions and a few multiplications by 2, 4, 5 and 8 (the
matrices of F(4x4, 3x3)), done along the rows of a tile first, then along its columns: one helper
per matrix (``_six_b_t``, ``_six_a_t``, ``_four_a``, ``_six_b``) takes the pixels of one line as
channel vectors, for the rows and for the columns alike.  Channels are innermost, so every line
runs as SIMD over the channels of one pixel.  (Written with one 4-D index per value instead, the
kernels ran as fast but took a fifth longer to compile: 50 s against 40 s for the float32 pair on
the VM of sessions 15-18.)  A tile that crosses the
image's border is copied into a small zero-padded buffer first, so the transforms themselves never
test for the border.  The backward pass recomputes the input's transform ``V`` rather than keeping
it from the forward pass (36/16 of the input's size: reading it back from memory would cost more).

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

M, A = 4, 6  # output tiles 4x4 from input tiles 6x6
# The transforms' constants as float32: a Python int times a float32 would be computed in float64
# (NumPy's promotion rules) and converted back, at twice the cost.  Exact in float32.
TWO, FOUR, FIVE, EIGHT = np.float32(2), np.float32(4), np.float32(5), np.float32(8)


@njit(**JIT)
def _dot(a, b):
    """``a @ b`` by the BLAS Numba calls, which stays single-threaded.  The small products of the
    filter transforms must not go to NumPy's BLAS: that would wake its threads, which then spin
    on the cores Numba's threads need (measured: a lenet-plus step 1.5x, the shipped model's 3x
    slower)."""
    return np.dot(a, b)


@njit(inline="always", **JIT)
def _tile(x, img, y0, x0, size, buffer):
    """Where to read the ``size x size`` tile of image ``img`` at ``(y0, x0)``: ``(array, img,
    y0, x0)``.  Inside the image that is ``x`` itself; a tile crossing the border is copied into
    ``buffer`` ``(1, size, size, C)``, zero outside the image."""
    h, w = x.shape[1], x.shape[2]
    if 0 <= y0 and y0 + size <= h and 0 <= x0 and x0 + size <= w:
        return x, img, y0, x0
    c = x.shape[3]
    for i in range(size):
        for j in range(size):
            inside = 0 <= y0 + i < h and 0 <= x0 + j < w
            for ch in range(c):
                buffer[0, i, j, ch] = x[img, y0 + i, x0 + j, ch] if inside else 0
    return buffer, 0, 0, 0


@njit(inline="always", **JIT)
def _input_transform(d, img, y0, x0, r, v, t):
    """``v[:, t] = B^T d B`` for the 6x6 tile ``d[img, y0:y0+6, x0:x0+6]``; ``r`` is scratch
    ``(6, 6, C)``.

    B^T turns six values into: 4 d0 - 5 d2 + d4, (d4 - 4 d2) +- (d3 - 4 d1),
    (d4 - d2) +- 2 (d3 - d1), 4 d1 - 5 d3 + d5."""
    for j in range(6):  # r = B^T d: along the rows of the tile
        _six_b_t(
            d[img, y0, x0 + j], d[img, y0 + 1, x0 + j], d[img, y0 + 2, x0 + j],
            d[img, y0 + 3, x0 + j], d[img, y0 + 4, x0 + j], d[img, y0 + 5, x0 + j],
            r[0, j], r[1, j], r[2, j], r[3, j], r[4, j], r[5, j],
        )  # fmt: skip
    for i in range(6):  # V = r B: along the columns
        _six_b_t(
            r[i, 0], r[i, 1], r[i, 2], r[i, 3], r[i, 4], r[i, 5],
            v[6 * i, t], v[6 * i + 1, t], v[6 * i + 2, t],
            v[6 * i + 3, t], v[6 * i + 4, t], v[6 * i + 5, t],
        )  # fmt: skip


@njit(inline="always", **JIT)
def _six_b_t(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5):
    """``(o0..o5) = B^T (d0..d5)``, channel by channel (each argument one pixel's channels)."""
    for ch in range(d0.shape[0]):
        a0, a1, a2, a3, a4, a5 = d0[ch], d1[ch], d2[ch], d3[ch], d4[ch], d5[ch]
        s, t4 = a4 - FOUR * a2, a3 - FOUR * a1
        q, t2 = a4 - a2, TWO * (a3 - a1)
        o0[ch] = FOUR * a0 - FIVE * a2 + a4
        o1[ch] = s + t4
        o2[ch] = s - t4
        o3[ch] = q + t2
        o4[ch] = q - t2
        o5[ch] = FOUR * a1 - FIVE * a3 + a5


@njit(inline="always", **JIT)
def _output_transform(products, t, r, out):
    """``out = A^T M A``, the 4x4 outputs ``(4, 4, F)`` of tile ``t`` (without the bias, which
    ``_store_tile`` adds); ``r`` is scratch ``(4, 6, F)``.

    A^T turns six values into: m0 + (m1 + m2) + (m3 + m4), (m1 - m2) + 2 (m3 - m4),
    (m1 + m2) + 4 (m3 + m4), (m1 - m2) + 8 (m3 - m4) + m5."""
    for j in range(6):  # r = A^T M
        _six_a_t(
            products[j, t], products[6 + j, t], products[12 + j, t],
            products[18 + j, t], products[24 + j, t], products[30 + j, t],
            r[0, j], r[1, j], r[2, j], r[3, j],
        )  # fmt: skip
    for i in range(4):  # Y = r A
        _six_a_t(
            r[i, 0], r[i, 1], r[i, 2], r[i, 3], r[i, 4], r[i, 5],
            out[i, 0], out[i, 1], out[i, 2], out[i, 3],
        )  # fmt: skip


@njit(inline="always", **JIT)
def _six_a_t(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3):
    """``(o0..o3) = A^T (m0..m5)``, channel by channel."""
    for ch in range(m0.shape[0]):
        s12, d12 = m1[ch] + m2[ch], m1[ch] - m2[ch]
        s34, d34 = m3[ch] + m4[ch], m3[ch] - m4[ch]
        o0[ch] = m0[ch] + s12 + s34
        o1[ch] = d12 + TWO * d34
        o2[ch] = s12 + FOUR * s34
        o3[ch] = d12 + EIGHT * d34 + m5[ch]


@njit(inline="always", **JIT)
def _store_tile(tile, bias, y, img, y0, x0):
    """``y[img, y0 + i, x0 + j] = tile[i, j] + bias`` where that lies inside ``y``."""
    h, w, c = y.shape[1], y.shape[2], y.shape[3]
    for i in range(min(M, h - y0)):
        for j in range(min(M, w - x0)):
            for ch in range(c):
                y[img, y0 + i, x0 + j, ch] = tile[i, j, ch] + bias[ch]


@njit(inline="always", **JIT)
def _grad_transform(g, img, y0, x0, r, z, t):
    """``z[:, t] = A dY A^T`` for the 4x4 output-gradient tile ``g[img, y0:y0+4, x0:x0+4]``;
    ``r`` is scratch ``(6, 4, F)``.

    A turns four values into six: g0, (g0 + g2) +- (g1 + g3), (g0 + 4 g2) +- 2 (g1 + 4 g3), g3."""
    for j in range(4):  # r = A dY
        _four_a(
            g[img, y0, x0 + j], g[img, y0 + 1, x0 + j], g[img, y0 + 2, x0 + j],
            g[img, y0 + 3, x0 + j], r[0, j], r[1, j], r[2, j], r[3, j], r[4, j], r[5, j],
        )  # fmt: skip
    for i in range(6):  # Z = r A^T
        _four_a(
            r[i, 0], r[i, 1], r[i, 2], r[i, 3], z[6 * i, t], z[6 * i + 1, t],
            z[6 * i + 2, t], z[6 * i + 3, t], z[6 * i + 4, t], z[6 * i + 5, t],
        )  # fmt: skip


@njit(inline="always", **JIT)
def _four_a(g0, g1, g2, g3, o0, o1, o2, o3, o4, o5):
    """``(o0..o5) = A (g0..g3)``, channel by channel."""
    for ch in range(g0.shape[0]):
        a0, a1, a2, a3 = g0[ch], g1[ch], g2[ch], g3[ch]
        even, odd = a0 + a2, a1 + a3
        even4, odd4 = a0 + FOUR * a2, TWO * (a1 + FOUR * a3)
        o0[ch] = a0
        o1[ch] = even + odd
        o2[ch] = even - odd
        o3[ch] = even4 + odd4
        o4[ch] = even4 - odd4
        o5[ch] = a3


@njit(inline="always", **JIT)
def _input_grad_transform(grad_v, t, r, dd):
    """``dd = B dV B^T``, the input gradient ``(6, 6, C)`` of tile ``t``; ``r`` is scratch
    ``(6, 6, C)``.

    B turns six values into: 4 v0, 4 (v2 - v1) + 2 (v4 - v3) + 4 v5,
    -5 v0 - 4 (v1 + v2) - (v3 + v4), (v1 - v2) + 2 (v3 - v4) - 5 v5, v0 + v1 + v2 + v3 + v4, v5."""
    for q in range(6):  # r = B dV
        _six_b(
            grad_v[q, t], grad_v[6 + q, t], grad_v[12 + q, t],
            grad_v[18 + q, t], grad_v[24 + q, t], grad_v[30 + q, t],
            r[0, q], r[1, q], r[2, q], r[3, q], r[4, q], r[5, q],
        )  # fmt: skip
    for i in range(6):  # dd = r B^T
        _six_b(
            r[i, 0], r[i, 1], r[i, 2], r[i, 3], r[i, 4], r[i, 5],
            dd[i, 0], dd[i, 1], dd[i, 2], dd[i, 3], dd[i, 4], dd[i, 5],
        )  # fmt: skip


@njit(inline="always", **JIT)
def _six_b(v0, v1, v2, v3, v4, v5, o0, o1, o2, o3, o4, o5):
    """``(o0..o5) = B (v0..v5)``, channel by channel."""
    for ch in range(v0.shape[0]):
        a0, a1, a2, a3, a4, a5 = v0[ch], v1[ch], v2[ch], v3[ch], v4[ch], v5[ch]
        o0[ch] = FOUR * a0
        o1[ch] = FOUR * (a2 - a1) + TWO * (a4 - a3) + FOUR * a5
        o2[ch] = -(FIVE * a0) - FOUR * (a1 + a2) - (a3 + a4)
        o3[ch] = (a1 - a2) + TWO * (a3 - a4) - FIVE * a5
        o4[ch] = a0 + a1 + a2 + a3 + a4
        o5[ch] = a5


@njit(inline="always", **JIT)
def _add_tile(tile, grad_x, img, y0, x0):
    """``grad_x[img, y0 + i, x0 + j] += tile[i, j]`` where that lies inside the image."""
    h, w, c = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
    for i in range(max(0, -y0), min(A, h - y0)):
        for j in range(max(0, -x0), min(A, w - x0)):
            for ch in range(c):
                grad_x[img, y0 + i, x0 + j, ch] += tile[i, j, ch]


@njit(**JIT)
def _forward_task(x, u, bias, pad, tiles_h, tiles_w, first, last, y):
    """Rows of tiles ``first..last`` of the batch: transform, multiply, transform back."""
    c, f = x.shape[3], u.shape[2]
    count = (last - first) * tiles_w
    v = np.empty((A * A, count, c), dtype=x.dtype)
    products = np.empty((A * A, count, f), dtype=x.dtype)
    tile, scratch = np.empty((1, A, A, c), dtype=x.dtype), np.empty((A, A, c), dtype=x.dtype)
    out, scratch_out = np.empty((M, M, f), dtype=x.dtype), np.empty((M, A, f), dtype=x.dtype)
    for r in range(first, last):
        img, th = r // tiles_h, r % tiles_h
        for tw in range(tiles_w):
            src, i, y0, x0 = _tile(x, img, M * th - pad, M * tw - pad, A, tile)
            _input_transform(src, i, y0, x0, scratch, v, (r - first) * tiles_w + tw)
    for xi in range(A * A):
        np.dot(v[xi], u[xi], products[xi])
    for r in range(first, last):
        img, th = r // tiles_h, r % tiles_h
        for tw in range(tiles_w):
            t = (r - first) * tiles_w + tw
            _output_transform(products, t, scratch_out, out)
            _store_tile(out, bias, y, img, M * th, M * tw)


@njit(parallel=True, **JIT)
def _winograd_forward(x, u, bias, pad, tiles_h, tiles_w, rows_per_task, y):
    total = x.shape[0] * tiles_h  # rows of tiles in the whole batch
    for task in prange((total + rows_per_task - 1) // rows_per_task):
        first, last = task * rows_per_task, min(total, task * rows_per_task + rows_per_task)
        _forward_task(x, u, bias, pad, tiles_h, tiles_w, first, last, y)
    return y


@njit(**JIT)
def _backward_task(x, grad_y, u_t, pad, tiles_h, tiles_w, first, last, sums_u, sums_b, grad_x):
    """Images ``first..last``: their parts of dU and db added into ``sums_u`` and ``sums_b`` (this
    thread's rows), and their dx."""
    c, f = x.shape[3], grad_y.shape[3]
    per_image = tiles_h * tiles_w
    count = (last - first) * per_image
    v = np.empty((A * A, count, c), dtype=x.dtype)
    z = np.empty((A * A, count, f), dtype=x.dtype)
    tile, scratch = np.empty((1, A, A, c), dtype=x.dtype), np.empty((A, A, c), dtype=x.dtype)
    grad = np.empty((1, M, M, f), dtype=x.dtype)
    scratch_grad = np.empty((A, M, f), dtype=x.dtype)
    for img in range(first, last):
        for th in range(tiles_h):
            for tw in range(tiles_w):
                t = (img - first) * per_image + th * tiles_w + tw
                src, i, y0, x0 = _tile(x, img, M * th - pad, M * tw - pad, A, tile)
                _input_transform(src, i, y0, x0, scratch, v, t)
                src, i, y0, x0 = _tile(grad_y, img, M * th, M * tw, M, grad)
                _grad_transform(src, i, y0, x0, scratch_grad, z, t)
    tile_sums = z[A + 1]  # Z[1, 1] = the sum of the tile's 16 output gradients
    for t in range(count):  # db: the sum of dY
        for ch in range(f):
            sums_b[ch] += tile_sums[t, ch]
    part = np.empty((c, f), dtype=x.dtype)
    for xi in range(A * A):
        np.dot(v[xi].T, z[xi], part)  # dU = V^T Z
        for k in range(c):
            for ch in range(f):
                sums_u[xi, k, ch] += part[k, ch]
    if grad_x.shape[0] > 0:  # dV = Z U^T, then dx = B dV B^T, overlapping tiles summed
        grad_v = v  # V is no longer needed: reuse its memory
        for xi in range(A * A):
            np.dot(z[xi], u_t[xi], grad_v[xi])
        grad_x[first:last] = 0
        for img in range(first, last):
            for th in range(tiles_h):
                for tw in range(tiles_w):
                    t = (img - first) * per_image + th * tiles_w + tw
                    _input_grad_transform(grad_v, t, scratch, tile[0])
                    _add_tile(tile[0], grad_x, img, M * th - pad, M * tw - pad)


@njit(parallel=True, **JIT)
def _winograd_backward(x, grad_y, u_t, pad, tiles_h, tiles_w, step, sums_u, sums_b, grad_x):
    n = x.shape[0]
    sums_u[:] = 0
    sums_b[:] = 0
    for task in prange((n + step - 1) // step):
        first, last = task * step, min(n, task * step + step)
        thread = get_thread_id()
        args = (x, grad_y, u_t, pad, tiles_h, tiles_w, first, last)
        _backward_task(*args, sums_u[thread], sums_b[thread], grad_x)
    return sums_u


def winograd_conv2d_forward(x: np.ndarray, w_ext: np.ndarray, pad: int) -> np.ndarray:
    """``conv2d_forward(x, w_ext, 3, 1, pad)`` by Winograd's F(4x4, 3x3) (see ``kernels.winograd``)."""
    n, h, w, c = x.shape
    f = w_ext.shape[0]
    oh, ow = window_output_size(h, 3, 1, pad), window_output_size(w, 3, 1, pad)
    tiles_h, tiles_w = tile_grid(oh, ow, M)
    pin_numba_blas_to_one_thread()
    u = filter_transform(w_ext, M, _dot)
    bias = np.ascontiguousarray(w_ext[:, -1])
    rows_per_task = items_per_task(n * tiles_h, tiles_w * A * A * (c + f) * x.itemsize)
    y = np.empty((n, oh, ow, f), dtype=x.dtype)
    x = np.ascontiguousarray(x)
    work = n * tiles_h * tiles_w * A * A * (c + f)
    run(_winograd_forward, work, x, u, bias, pad, tiles_h, tiles_w, rows_per_task, y)
    return y


def winograd_conv2d_backward(
    x: np.ndarray, grad_y: np.ndarray, w_ext: np.ndarray, pad: int, input_grad: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """``([dW_mat | db], dx or None)`` of ``winograd_conv2d_forward`` (see ``kernels.winograd``)."""
    n, h, w, c = x.shape
    f = w_ext.shape[0]
    tiles_h, tiles_w = tile_grid(grad_y.shape[1], grad_y.shape[2], M)
    pin_numba_blas_to_one_thread()
    u_t = np.ascontiguousarray(filter_transform(w_ext, M, _dot).transpose(0, 2, 1))
    step = items_per_task(n, tiles_h * tiles_w * A * A * (c + f) * x.itemsize)
    threads = config.NUMBA_NUM_THREADS
    sums_u = np.empty((threads, A * A, c, f), dtype=x.dtype)
    sums_b = np.empty((threads, f), dtype=x.dtype)
    grad_x = np.empty(x.shape if input_grad else (0, h, w, c), dtype=x.dtype)
    x, grad_y = np.ascontiguousarray(x), np.ascontiguousarray(grad_y)
    work = n * tiles_h * tiles_w * A * A * (c + f)
    args = (x, grad_y, u_t, pad, tiles_h, tiles_w, step, sums_u, sums_b, grad_x)
    run(_winograd_backward, work, *args)
    grad_ext = np.empty((f, 9 * c + 1), dtype=x.dtype)
    grad_ext[:, :-1] = filter_gradient(sums_u.sum(axis=0), M, _dot)
    grad_ext[:, -1] = sums_b.sum(axis=0)
    return grad_ext, (grad_x if input_grad else None)
