"""Convolution by im2col: the column matrix, its adjoint, and a whole layer in one parallel loop.

``im2col`` and ``col2im`` are the loops of their twins in ``numpy_ref`` (read those first): each
value is read once and written once, straight into its final place; a bounds check writes the
padding's zeros instead of a padded copy; ``col2im`` adds all ``kh * kw`` offsets of one image
while that image is in the cache.

``conv2d_forward`` and ``conv2d_backward`` choose the algorithm: Winograd's F(4x4, 3x3) where it
measured faster (``kernels.winograd.use_winograd``), otherwise im2col + GEMM (``im2col_conv2d_forward``,
``im2col_conv2d_backward``; ``benchmarks/winograd_crossover.py`` times the two).
"""

from __future__ import annotations

import numpy as np
from numba import config, get_thread_id, njit, prange

from ...settings import pin_numba_blas_to_one_thread
from ...shapes import window_output_size
from ..winograd import use_winograd
from ._parallel import JIT, items_per_task, run
from .winograd import winograd_conv2d_backward, winograd_conv2d_forward


@njit(**JIT)
def _im2col_row(x, kh, kw, stride, pad, oh, ow, cols, t, first_row):
    """Columns of output row ``t`` (image ``t // oh``, row ``t % oh``): the ``ow`` rows of
    ``cols`` from ``first_row`` on."""
    _, h, w, c = x.shape
    b, y = t // oh, t % oh
    y0 = y * stride - pad
    for z in range(ow):
        row = first_row + z
        x0 = z * stride - pad
        if y0 >= 0 and y0 + kh <= h and x0 >= 0 and x0 + kw <= w:  # inside: no checks
            if c == 1:  # a grey input image: one value per kernel offset
                for i in range(kh):
                    for j in range(kw):
                        cols[row, i * kw + j] = x[b, y0 + i, x0 + j, 0]
            else:
                for i in range(kh):
                    for j in range(kw):
                        base = (i * kw + j) * c
                        for ch in range(c):
                            cols[row, base + ch] = x[b, y0 + i, x0 + j, ch]
        else:  # the window overlaps the padding: zeros there
            for i in range(kh):
                for j in range(kw):
                    yy, xx = y0 + i, x0 + j
                    base = (i * kw + j) * c
                    if 0 <= yy < h and 0 <= xx < w:
                        for ch in range(c):
                            cols[row, base + ch] = x[b, yy, xx, ch]
                    else:
                        for ch in range(c):
                            cols[row, base + ch] = 0


@njit(**JIT)
def _col2im_image(cols, kh, kw, stride, pad, oh, ow, out, b):
    """Add image ``b``'s rows of ``cols`` back into ``out[b]`` (cleared first)."""
    _, h, w, c = out.shape
    out[b] = 0
    for y in range(oh):
        for z in range(ow):
            row = (b * oh + y) * ow + z
            for i in range(kh):
                yy = y * stride + i - pad
                if yy < 0 or yy >= h:
                    continue
                for j in range(kw):
                    xx = z * stride + j - pad
                    if 0 <= xx < w:
                        base = (i * kw + j) * c
                        for ch in range(c):
                            out[b, yy, xx, ch] += cols[row, base + ch]


@njit(parallel=True, **JIT)
def _im2col(x, kh, kw, stride, pad, oh, ow, cols):
    for t in prange(x.shape[0] * oh):  # one output row of one image per task
        _im2col_row(x, kh, kw, stride, pad, oh, ow, cols, t, t * ow)
    return cols


@njit(parallel=True, **JIT)
def _col2im(cols, kh, kw, stride, pad, oh, ow, out):
    for b in prange(out.shape[0]):  # images are independent; patches of one image overlap
        _col2im_image(cols, kh, kw, stride, pad, oh, ow, out, b)
    return out


def im2col(
    x: np.ndarray, kh: int, kw: int, stride: int, pad: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Unfold patches into rows: ``(N, H, W, C) -> (N*OH*OW, kh*kw*C)``; ``out`` as in NumPy's twin."""
    n, h, w, c = x.shape
    oh, ow = window_output_size(h, kh, stride, pad), window_output_size(w, kw, stride, pad)
    if out is None:
        out = np.empty((n * oh * ow, kh * kw * c), dtype=x.dtype)
    x = np.ascontiguousarray(x)
    return run(_im2col, out.size, x, kh, kw, stride, pad, oh, ow, out)


def col2im(
    cols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kh: int,
    kw: int,
    stride: int,
    pad: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The adjoint of ``im2col``: sum every row's values back into the ``(N, H, W, C)`` pixels."""
    _, h, w, _ = x_shape
    oh, ow = window_output_size(h, kh, stride, pad), window_output_size(w, kw, stride, pad)
    if out is None:
        out = np.empty(x_shape, dtype=cols.dtype)
    cols = np.ascontiguousarray(cols)
    return run(_col2im, cols.size, cols, kh, kw, stride, pad, oh, ow, out)


# A whole convolution in one parallel loop: each task takes a few images, unfolds them into a
# column matrix small enough for the core's own cache, and multiplies it there (one BLAS call on
# that thread).  So there is one parallel loop per layer instead of one per kernel, and a single
# pool of threads: BLAS itself runs single-threaded inside them.  A task's column matrix is
# about ``_parallel.TASK_BYTES``.
@njit(parallel=True, **JIT)
def _conv_forward(x, w_ext_t, k, stride, pad, oh, ow, rows_per_task, y):
    total = x.shape[0] * oh  # output rows of the whole batch
    k1 = w_ext_t.shape[0]  # k*k*C + 1
    for task in prange((total + rows_per_task - 1) // rows_per_task):
        first, last = task * rows_per_task, min(total, task * rows_per_task + rows_per_task)
        cols = np.empty(((last - first) * ow, k1), dtype=x.dtype)
        cols[:, k1 - 1] = 1  # the bias column
        for t in range(first, last):
            _im2col_row(x, k, k, stride, pad, oh, ow, cols, t, (t - first) * ow)
        np.dot(cols, w_ext_t, y[first * ow : last * ow])
    return y


# A one-channel convolution (a first layer) has column rows of only k*k + 1 numbers, which the
# loops above copy one at a time.  Here each task builds its part of the column matrix transposed,
# as ``numpy_ref.offset_rows`` does: row ``i*k + j`` is the image shifted by kernel offset
# ``(i, j)``, a contiguous run per output row (the compiler vectorises it); BLAS reads the
# transpose for free.
@njit(**JIT)
def _offset_rows_task(x, k, stride, pad, oh, ow, first, last, rows):
    """Output rows ``first..last`` of the batch into ``rows`` ``(k*k + 1, (last-first)*ow)``:
    ``numpy_ref.offset_rows`` for those rows (its last row, the ones, is set by the caller)."""
    _, h, w, _ = x.shape
    for t in range(first, last):
        b, y = t // oh, t % oh
        base = (t - first) * ow
        for i in range(k):
            yy = y * stride + i - pad
            for j in range(k):
                r = i * k + j
                if yy < 0 or yy >= h:
                    rows[r, base : base + ow] = 0
                    continue
                for z in range(ow):
                    xx = z * stride + j - pad
                    rows[r, base + z] = x[b, yy, xx, 0] if 0 <= xx < w else 0


@njit(parallel=True, **JIT)
def _conv_forward_one_channel(x, w_ext_t, k, stride, pad, oh, ow, rows_per_task, y):
    total = x.shape[0] * oh  # output rows of the whole batch
    k1 = w_ext_t.shape[0]  # k*k + 1
    for task in prange((total + rows_per_task - 1) // rows_per_task):
        first, last = task * rows_per_task, min(total, task * rows_per_task + rows_per_task)
        rows = np.empty((k1, (last - first) * ow), dtype=x.dtype)
        rows[k1 - 1] = 1  # the bias input
        _offset_rows_task(x, k, stride, pad, oh, ow, first, last, rows)
        np.dot(rows.T, w_ext_t, y[first * ow : last * ow])
    return y


@njit(parallel=True, **JIT)
def _conv_backward_one_channel(x, grad_y, k, stride, pad, oh, ow, rows_per_task, sums):
    total = x.shape[0] * oh
    k1, f = sums.shape[1], sums.shape[2]
    sums[:] = 0
    for task in prange((total + rows_per_task - 1) // rows_per_task):
        first, last = task * rows_per_task, min(total, task * rows_per_task + rows_per_task)
        rows = np.empty((k1, (last - first) * ow), dtype=x.dtype)
        rows[k1 - 1] = 1
        _offset_rows_task(x, k, stride, pad, oh, ow, first, last, rows)
        part = np.empty((k1, f), dtype=x.dtype)
        np.dot(rows, grad_y[first * ow : last * ow], part)  # [dW | db].T of these rows
        sums[get_thread_id()] += part
    return sums


@njit(parallel=True, **JIT)
def _conv_backward(x, grad_y, w_mat, k, stride, pad, oh, ow, step, sums, grad_x):
    n = x.shape[0]
    k1, f = sums.shape[1], sums.shape[2]
    per_image = oh * ow
    sums[:] = 0
    for task in prange((n + step - 1) // step):
        first, last = task * step, min(n, task * step + step)
        images = x[first:last]
        rows = (last - first) * per_image
        cols = np.empty((rows, k1), dtype=x.dtype)
        cols[:, k1 - 1] = 1
        for t in range((last - first) * oh):
            _im2col_row(images, k, k, stride, pad, oh, ow, cols, t, t * ow)
        g = grad_y[first * per_image : first * per_image + rows]  # (rows, F)
        part = np.empty((k1, f), dtype=x.dtype)
        np.dot(cols.T, g, part)  # [dW | db].T of these images (BLAS is quicker this way round)
        sums[get_thread_id()] += part
        if grad_x.shape[0] > 0:  # dx: dcols = dY @ W_mat, then col2im
            dcols = np.empty((rows, k1 - 1), dtype=x.dtype)
            np.dot(g, w_mat, dcols)
            for b in range(last - first):
                _col2im_image(dcols, k, k, stride, pad, oh, ow, grad_x[first:last], b)
    return sums


def conv2d_forward(
    x: np.ndarray,
    w_ext: np.ndarray,
    k: int,
    stride: int,
    pad: int,
    saved: dict[str, list[np.ndarray]] | None = None,
) -> np.ndarray:
    """``[im2col(x) | 1] @ w_ext.T`` as an ``(N, OH, OW, F)`` image (see ``numpy_ref``): by
    Winograd's algorithm where that is faster (``use_winograd``), otherwise by im2col + GEMM.
    ``saved`` stays empty: the backward pass recomputes what it needs, in the cache."""
    n, _, _, c = x.shape
    if use_winograd(n, c, w_ext.shape[0], k, stride):
        return winograd_conv2d_forward(x, w_ext, pad)
    return im2col_conv2d_forward(x, w_ext, k, stride, pad)


def im2col_conv2d_forward(
    x: np.ndarray, w_ext: np.ndarray, k: int, stride: int, pad: int
) -> np.ndarray:
    """``conv2d_forward`` by im2col + GEMM.

    A task is a run of output rows (of one image or several), so even one image's convolution
    is shared by the threads.
    """
    n, h, w, c = x.shape
    f, k1 = w_ext.shape
    oh, ow = window_output_size(h, k, stride, pad), window_output_size(w, k, stride, pad)
    y = np.empty((n * oh * ow, f), dtype=x.dtype)
    rows_per_task = items_per_task(n * oh, ow * k1 * x.itemsize)
    pin_numba_blas_to_one_thread()
    w_ext_t = np.ascontiguousarray(w_ext.T)
    x = np.ascontiguousarray(x)
    kernel = _conv_forward_one_channel if c == 1 else _conv_forward
    run(kernel, y.size * k1 // 16, x, w_ext_t, k, stride, pad, oh, ow, rows_per_task, y)
    return y.reshape(n, oh, ow, f)


def conv2d_backward(
    x: np.ndarray,
    grad_y: np.ndarray,
    w_ext: np.ndarray,
    k: int,
    stride: int,
    pad: int,
    input_grad: bool = True,
    saved: dict[str, list[np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``([dW_mat | db], dx or None)`` of ``conv2d_forward`` (see ``numpy_ref``), by the same
    algorithm as the forward pass (``saved`` is not used here)."""
    n, _, _, c = x.shape
    if use_winograd(n, c, w_ext.shape[0], k, stride):
        return winograd_conv2d_backward(x, grad_y, w_ext, pad, input_grad)
    return im2col_conv2d_backward(x, grad_y, w_ext, k, stride, pad, input_grad)


def im2col_conv2d_backward(
    x: np.ndarray,
    grad_y: np.ndarray,
    w_ext: np.ndarray,
    k: int,
    stride: int,
    pad: int,
    input_grad: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``conv2d_backward`` by im2col + GEMM."""
    n, h, w, c = x.shape
    f, k1 = w_ext.shape
    oh, ow = window_output_size(h, k, stride, pad), window_output_size(w, k, stride, pad)
    sums = np.empty((config.NUMBA_NUM_THREADS, k1, f), dtype=x.dtype)  # [dW | db].T per thread
    grad_y = np.ascontiguousarray(grad_y).reshape(-1, f)
    pin_numba_blas_to_one_thread()
    x = np.ascontiguousarray(x)
    step = items_per_task(n, oh * ow * k1 * x.itemsize)  # images per task
    if c == 1 and not input_grad:  # a first layer: the transposed columns, as in forward
        # The same tasks as below (``step`` whole images each, so the same thread adds the same
        # partial sums in the same order): skipping dx changes no bit of [dW | db].
        args = (x, grad_y, k, stride, pad, oh, ow, step * oh, sums)
        run(_conv_backward_one_channel, grad_y.size, *args)
        return sums.sum(axis=0).T, None
    grad_x = np.empty(x.shape if input_grad else (0, h, w, c), dtype=x.dtype)
    w_mat = np.ascontiguousarray(w_ext[:, :-1])
    work = grad_y.size + grad_x.size
    run(_conv_backward, work, x, grad_y, w_mat, k, stride, pad, oh, ow, step, sums, grad_x)
    return sums.sum(axis=0).T, (grad_x if input_grad else None)
