"""The same kernels as ``numpy_ref.py``, as explicit loops compiled by Numba.

Why this is faster than the NumPy reference: NumPy needs a padded copy of the input, a strided copy
into the column matrix, one full pass over the image per kernel offset in ``col2im``, and a
temporary array for every step of an expression such as BatchNorm's.  Here each value is read once
and written once, straight into its final place, with the work split across the cores (``prange``
over images or image rows).  Images are channels-last ``(N, H, W, C)``, so the innermost loops run
over the channels of one pixel, which sit side by side in memory: the compiler turns them into SIMD
instructions.

One pool of threads does everything.  A convolution or a dense layer is one parallel loop whose
tasks each build a cache-sized piece of the column matrix and multiply it right there, calling
BLAS single-threaded (``np.dot`` inside Numba).  Letting BLAS start threads of its own instead made
its idle threads and Numba's fight over the two cores: up to 10x slower.

Kernels are compiled once and cached on disk (``cache=True``), so only the very first import on a
machine pays the compile time (about 15 s for everything the shipped model uses).

Each public function has exactly the signature and result (up to float rounding) of its NumPy twin.
"""

from __future__ import annotations

import os

# Numba runs parallel loops on OpenMP threads.  After a loop they wait for more work: spinning for
# a while, then sleeping.  Sleeping costs ~40 us per loop to wake up again (we measured it on a
# 2-core virtual machine), which is a third of the time of one image's forward pass; spinning
# forever (OMP_WAIT_POLICY=ACTIVE) burns a core while idle and starves any other thread, above all
# BLAS's own threads (training ran 10x slower).  So: spin for about a millisecond, enough to bridge
# the gaps between the layers of a step.  npcnn's numba backend does its matrix products inside
# these threads (BLAS single-threaded there), so no second pool of threads competes with them.
# OpenMP reads this when it loads (at Numba's first parallel loop); a setting already in the
# environment wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "100000")

import numpy as np  # noqa: E402
from numba import config, get_num_threads, get_thread_id, njit, prange, set_num_threads  # noqa: E402

from . import winograd  # noqa: E402

_JIT = dict(cache=True, nogil=True, fastmath=False)
PARALLEL_MIN = 1 << 16  # values written: below this a kernel runs on the calling thread alone


def _run(kernel, work: int, *args):
    """Call a parallel ``kernel``; a small one on one thread only.

    Waking the other threads costs microseconds on an idle machine, but on a busy one a parallel
    loop waits for every thread to be scheduled: we measured 8 ms (90th percentile) for a loop of
    1,000 values.  One image's layers are that small.
    """
    if work >= PARALLEL_MIN:
        return kernel(*args)
    previous = get_num_threads()
    set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        set_num_threads(previous)


# ----------------------------------------------------------------------------- convolution
@njit(**_JIT)
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


@njit(**_JIT)
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


@njit(parallel=True, **_JIT)
def _im2col(x, kh, kw, stride, pad, oh, ow, cols):
    for t in prange(x.shape[0] * oh):  # one output row of one image per task
        _im2col_row(x, kh, kw, stride, pad, oh, ow, cols, t, t * ow)
    return cols


@njit(parallel=True, **_JIT)
def _col2im(cols, kh, kw, stride, pad, oh, ow, out):
    for b in prange(out.shape[0]):  # images are independent; patches of one image overlap
        _col2im_image(cols, kh, kw, stride, pad, oh, ow, out, b)
    return out


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def im2col(
    x: np.ndarray, kh: int, kw: int, stride: int, pad: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Unfold patches into rows: ``(N, H, W, C) -> (N*OH*OW, kh*kw*C)``; ``out`` as in NumPy's twin."""
    n, h, w, c = x.shape
    oh, ow = _out(h, kh, stride, pad), _out(w, kw, stride, pad)
    if out is None:
        out = np.empty((n * oh * ow, kh * kw * c), dtype=x.dtype)
    x = np.ascontiguousarray(x)
    return _run(_im2col, out.size, x, kh, kw, stride, pad, oh, ow, out)


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
    oh, ow = _out(h, kh, stride, pad), _out(w, kw, stride, pad)
    if out is None:
        out = np.empty(x_shape, dtype=cols.dtype)
    cols = np.ascontiguousarray(cols)
    return _run(_col2im, cols.size, cols, kh, kw, stride, pad, oh, ow, out)


# A whole convolution in one parallel loop: each task takes a few images, unfolds them into a
# column matrix small enough for the core's own cache, and multiplies it there (one BLAS call on
# that thread).  So there is one parallel loop per layer instead of one per kernel, and a single
# pool of threads: BLAS itself runs single-threaded inside them.
TASK_BYTES = 1 << 20  # column matrix per task: about the size of a core's L2 cache


@njit(parallel=True, **_JIT)
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


@njit(parallel=True, **_JIT)
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


def _images_per_task(n: int, bytes_per_item: int) -> int:
    """Items (images, or output rows) per task: a column matrix of about ``TASK_BYTES``, and
    at least two tasks per thread, so that a thread slowed down by another program does not
    hold the others up for long."""
    step = max(1, TASK_BYTES // max(bytes_per_item, 1))
    return max(1, min(step, -(-n // (2 * get_num_threads()))))


def conv2d_forward(x: np.ndarray, w_ext: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """``[im2col(x) | 1] @ w_ext.T`` as an ``(N, OH, OW, F)`` image (see ``numpy_ref``): by
    Winograd's algorithm where that is faster (``use_winograd``), otherwise by im2col + GEMM."""
    n, _, _, c = x.shape
    if use_winograd(n, c, w_ext.shape[0], k, stride):
        return conv3x3_forward(x, w_ext, pad)
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
    oh, ow = _out(h, k, stride, pad), _out(w, k, stride, pad)
    y = np.empty((n * oh * ow, f), dtype=x.dtype)
    rows_per_task = _images_per_task(n * oh, ow * k1 * x.itemsize)
    _single_threaded_blas()
    w_ext_t = np.ascontiguousarray(w_ext.T)
    x = np.ascontiguousarray(x)
    _run(_conv_forward, y.size * k1 // 16, x, w_ext_t, k, stride, pad, oh, ow, rows_per_task, y)
    return y.reshape(n, oh, ow, f)


def conv2d_backward(
    x: np.ndarray,
    grad_y: np.ndarray,
    w_ext: np.ndarray,
    k: int,
    stride: int,
    pad: int,
    input_grad: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``([dW_mat | db], dx or None)`` of ``conv2d_forward`` (see ``numpy_ref``), by the same
    algorithm as the forward pass."""
    n, _, _, c = x.shape
    if use_winograd(n, c, w_ext.shape[0], k, stride):
        return conv3x3_backward(x, grad_y, w_ext, pad, input_grad)
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
    oh, ow = _out(h, k, stride, pad), _out(w, k, stride, pad)
    step = _images_per_task(n, oh * ow * k1 * x.itemsize)
    sums = np.empty((config.NUMBA_NUM_THREADS, k1, f), dtype=x.dtype)  # [dW | db].T per thread
    grad_x = np.empty(x.shape if input_grad else (0, h, w, c), dtype=x.dtype)
    w_mat = np.ascontiguousarray(w_ext[:, :-1])
    grad_y = np.ascontiguousarray(grad_y).reshape(-1, f)
    _single_threaded_blas()
    x = np.ascontiguousarray(x)
    work = grad_y.size + grad_x.size
    _run(_conv_backward, work, x, grad_y, w_mat, k, stride, pad, oh, ow, step, sums, grad_x)
    return sums.sum(axis=0).T, (grad_x if input_grad else None)


def _scipy_blas_controllers() -> list:
    """threadpoolctl's handles on the BLAS that Numba's ``np.dot`` calls (SciPy's)."""
    try:
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return []
    package = os.path.dirname(scipy.__file__)
    places = (package, package.rstrip(os.sep) + ".libs")
    return [
        lib
        for lib in ThreadpoolController().lib_controllers
        if lib.user_api == "blas" and lib.filepath.startswith(places)
    ]


_SCIPY_BLAS: list | None = None


def _single_threaded_blas() -> None:
    """BLAS called inside our threads must not start threads of its own (``set_threads`` sets
    every BLAS to its count; this one we keep at 1)."""
    global _SCIPY_BLAS
    if _SCIPY_BLAS is None:
        _SCIPY_BLAS = _scipy_blas_controllers()
    for lib in _SCIPY_BLAS:
        if lib.num_threads != 1:
            lib.set_num_threads(1)


# ----------------------------------------------------------------------------- Winograd 3x3
# The loops of ``winograd.py``, for F(2x2, 3x3) (read that module first for the maths).  As for
# im2col, a task transforms a cache-sized run of 4x4 tiles, multiplies them right there (16
# single-threaded BLAS calls, one per position of the transformed tile), and transforms the
# products back.  The transforms are written out: B^T and A^T hold only 0 and +-1, so each is a
# handful of additions, done rows first, then columns.  Channels are innermost, so every line
# runs as SIMD over the channels of one pixel.  A tile that crosses the image's border is copied
# into a small zero-padded buffer first, so the transforms themselves never test for the border.


@njit(inline="always", **_JIT)
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


@njit(inline="always", **_JIT)
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


@njit(inline="always", **_JIT)
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


@njit(inline="always", **_JIT)
def _store_tile(tile, size, y, img, y0, x0):
    """``y[img, y0 + i, x0 + j] = tile[i, j]`` where that lies inside ``y``."""
    h, w, c = y.shape[1], y.shape[2], y.shape[3]
    for i in range(min(size, h - y0)):
        for j in range(min(size, w - x0)):
            for ch in range(c):
                y[img, y0 + i, x0 + j, ch] = tile[i, j, ch]


@njit(inline="always", **_JIT)
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


@njit(inline="always", **_JIT)
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


@njit(inline="always", **_JIT)
def _add_tile(tile, grad_x, img, y0, x0):
    """``grad_x[img, y0 + i, x0 + j] += tile[i, j]`` where that lies inside the image."""
    h, w, c = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
    for i in range(max(0, -y0), min(4, h - y0)):
        for j in range(max(0, -x0), min(4, w - x0)):
            for ch in range(c):
                grad_x[img, y0 + i, x0 + j, ch] += tile[i, j, ch]


@njit(parallel=True, **_JIT)
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


@njit(parallel=True, **_JIT)
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


def conv3x3_forward(x: np.ndarray, w_ext: np.ndarray, pad: int) -> np.ndarray:
    """A 3x3, stride-1 convolution by Winograd's F(2x2, 3x3) (see ``winograd``)."""
    n, h, w, c = x.shape
    f = w_ext.shape[0]
    oh, ow = h + 2 * pad - 2, w + 2 * pad - 2
    tiles_h, tiles_w = winograd.tile_grid(oh, ow, 2)
    u = winograd.filter_transform(w_ext, 2)
    bias = np.ascontiguousarray(w_ext[:, -1])
    rows_per_task = _images_per_task(n * tiles_h, tiles_w * 16 * (c + f) * x.itemsize)
    y = np.empty((n, oh, ow, f), dtype=x.dtype)
    _single_threaded_blas()
    x = np.ascontiguousarray(x)
    work = n * tiles_h * tiles_w * 16 * (c + f)
    _run(_winograd_forward, work, x, u, bias, pad, tiles_h, tiles_w, rows_per_task, y)
    return y


def conv3x3_backward(
    x: np.ndarray, grad_y: np.ndarray, w_ext: np.ndarray, pad: int, input_grad: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """``([dW_mat | db], dx or None)`` of ``conv3x3_forward`` (see ``winograd``)."""
    n, h, w, c = x.shape
    f = w_ext.shape[0]
    tiles_h, tiles_w = winograd.tile_grid(grad_y.shape[1], grad_y.shape[2], 2)
    u_t = np.ascontiguousarray(winograd.filter_transform(w_ext, 2).transpose(0, 2, 1))
    step = _images_per_task(n, tiles_h * tiles_w * 16 * (c + f) * x.itemsize)
    threads = config.NUMBA_NUM_THREADS
    sums_u = np.empty((threads, 16, c, f), dtype=x.dtype)
    sums_b = np.empty((threads, f), dtype=x.dtype)
    grad_x = np.empty(x.shape if input_grad else (0, h, w, c), dtype=x.dtype)
    _single_threaded_blas()
    x, grad_y = np.ascontiguousarray(x), np.ascontiguousarray(grad_y)
    work = n * tiles_h * tiles_w * 16 * (c + f)
    args = (x, grad_y, u_t, pad, tiles_h, tiles_w, step, sums_u, sums_b, grad_x)
    _run(_winograd_backward, work, *args)
    grad_ext = np.empty((f, 9 * c + 1), dtype=x.dtype)
    grad_ext[:, :-1] = winograd.filter_gradient(sums_u.sum(axis=0), 2)
    grad_ext[:, -1] = sums_b.sum(axis=0)
    return grad_ext, (grad_x if input_grad else None)


# ----------------------------------------------------------------------------- dense
@njit(parallel=True, **_JIT)
def _dense_forward(x, w, b, step, y):
    n = x.shape[0]
    for task in prange((n + step - 1) // step):
        first, last = task * step, min(n, task * step + step)
        np.dot(x[first:last], w, y[first:last])
        y[first:last] += b
    return y


@njit(parallel=True, **_JIT)
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
    return max(1, -(-n // get_num_threads()))


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ w + b``, the rows split across the threads (BLAS single-threaded inside each)."""
    x = np.ascontiguousarray(x)
    y = np.empty((x.shape[0], w.shape[1]), dtype=x.dtype)
    _single_threaded_blas()
    step = _rows_per_task(len(x))
    return _run(_dense_forward, x.size * w.shape[1] // 64, x, w, b, step, y)


def dense_backward(
    x: np.ndarray, grad_y: np.ndarray, w: np.ndarray, input_grad: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(dW, db, dx)`` of ``dense_forward``: ``x.T @ dY``, ``sum(dY)``, ``dY @ w.T``."""
    x, grad_y = np.ascontiguousarray(x), np.ascontiguousarray(grad_y)
    n = len(x)
    sums = np.empty((config.NUMBA_NUM_THREADS, *w.shape), dtype=x.dtype)
    grad_x = np.empty(x.shape if input_grad else (0, x.shape[1]), dtype=x.dtype)
    _single_threaded_blas()
    w_t = np.ascontiguousarray(w.T)
    work = x.size * w.shape[1] // 32
    _run(_dense_backward, work, x, grad_y, w_t, _rows_per_task(n), sums, grad_x)
    return sums.sum(axis=0), grad_y.sum(axis=0), (grad_x if input_grad else None)


# ----------------------------------------------------------------------------- max pooling
@njit(parallel=True, **_JIT)
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


@njit(parallel=True, **_JIT)
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
    shape = (n, _out(h, size, stride, 0), _out(w, size, stride, 0), c)
    out, argmax = np.empty(shape, dtype=x.dtype), np.empty(shape, dtype=np.uint8)
    return _run(_maxpool_forward, x.size, np.ascontiguousarray(x), size, stride, out, argmax)


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
    return _run(_maxpool_backward, grad_x.size, g, a, size, stride, g.dtype.type(0), grad_x)


# ----------------------------------------------------------------------------- element-wise
@njit(parallel=True, **_JIT)
def _relu_forward(x, zero, y):
    for i in prange(x.size):
        y[i] = max(x[i], zero)
    return y


@njit(parallel=True, **_JIT)
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
    _run(_relu_forward, x.size, _flat(x), x.dtype.type(0), y.ravel(order="K"))
    return y


def relu_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``grad_out`` where the ReLU's output ``y`` is positive, 0 elsewhere."""
    grad_x = np.empty_like(y)  # dense, in y's memory order
    y, grad_out = _like(y, grad_x), _like(grad_out, grad_x)
    zero = y.dtype.type(0)
    _run(_relu_backward, y.size, _flat(grad_out), _flat(y), zero, grad_x.ravel(order="K"))
    return grad_x


# ----------------------------------------------------------------------------- batch norm
@njit(parallel=True, **_JIT)
def _column_sums(table, parts):
    """Per-thread partial sums of each column and of its squares: ``parts`` (T, 2, C) float64."""
    rows, c = table.shape
    threads = parts.shape[0]
    step = (rows + threads - 1) // threads
    for t in prange(threads):
        parts[t] = 0
        for r in range(t * step, min(rows, (t + 1) * step)):
            for ch in range(c):
                v = table[r, ch]
                parts[t, 0, ch] += v
                parts[t, 1, ch] += v * v
    return parts


def column_mean_var(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (biased) variance of each column of a ``(samples, C)`` table (float64 sums)."""
    rows, c = table.shape
    parts = np.empty((get_num_threads(), 2, c), dtype=np.float64)
    sums = _run(_column_sums, table.size, np.ascontiguousarray(table), parts).sum(axis=0)
    mean = sums[0] / rows
    var = np.maximum(sums[1] / rows - mean * mean, 0.0)
    return mean.astype(table.dtype), var.astype(table.dtype)


@njit(parallel=True, **_JIT)
def _batchnorm_forward(table, mean, inv_std, gamma, beta, y):
    rows, c = table.shape
    scale = gamma * inv_std
    shift = beta - mean * scale
    for r in prange(rows):
        for ch in range(c):
            y[r, ch] = table[r, ch] * scale[ch] + shift[ch]
    return y


def batchnorm_forward(
    table: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """``gamma * (x - mean) * inv_std + beta``, column by column, in one pass."""
    table = np.ascontiguousarray(table)
    y = np.empty_like(table)
    return _run(_batchnorm_forward, y.size, table, mean, inv_std, gamma, beta, y)


@njit(parallel=True, **_JIT)
def _batchnorm_grad_sums(grad, table, mean, inv_std, parts):
    rows, c = grad.shape
    threads = parts.shape[0]
    step = (rows + threads - 1) // threads
    for t in prange(threads):
        parts[t] = 0
        for r in range(t * step, min(rows, (t + 1) * step)):
            for ch in range(c):
                g = grad[r, ch]
                parts[t, 0, ch] += g * ((table[r, ch] - mean[ch]) * inv_std[ch])
                parts[t, 1, ch] += g
    return parts


@njit(parallel=True, **_JIT)
def _batchnorm_grad_input(grad, table, mean, a, b, c0, grad_x):
    """``grad_x = a * grad - b * (x - mean) - c0`` per column (a, b, c0 fold all constants)."""
    rows, c = grad.shape
    for r in prange(rows):
        for ch in range(c):
            grad_x[r, ch] = a[ch] * grad[r, ch] - b[ch] * (table[r, ch] - mean[ch]) - c0[ch]
    return grad_x


def batchnorm_backward(
    grad: np.ndarray,
    table: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    gamma: np.ndarray,
    training: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dgamma, dbeta)`` of BatchNorm on a ``(samples, C)`` table (see ``layers.BatchNorm``)."""
    grad, table = np.ascontiguousarray(grad), np.ascontiguousarray(table)
    rows, c = grad.shape
    parts = np.empty((get_num_threads(), 2, c), dtype=np.float64)
    sums = _run(_batchnorm_grad_sums, grad.size, grad, table, mean, inv_std, parts).sum(axis=0)
    dtype = grad.dtype
    dgamma, dbeta = sums[0].astype(dtype), sums[1].astype(dtype)
    gi = (gamma * inv_std).astype(np.float64)
    a = gi
    if training:  # dx = gamma inv_std (g - mean(g) - x_hat mean(g x_hat))
        b = gi * sums[0] / rows * inv_std
        c0 = gi * sums[1] / rows
    else:  # fixed statistics: a per-channel scale
        b = c0 = np.zeros(c)
    consts = [v.astype(dtype) for v in (a, b, c0)]
    grad_x = np.empty_like(grad)
    _run(_batchnorm_grad_input, grad.size, grad, table, mean, *consts, grad_x)
    return grad_x, dgamma, dbeta


# ----------------------------------------------------------------------------- optimiser
@njit(parallel=True, **_JIT)
def _adam_update(w, g, m, v, b1, one_minus_b1, b2, one_minus_b2, step_size, eps_hat, keep):
    for i in prange(w.size):
        mi = b1 * m[i] + one_minus_b1 * g[i]
        vi = b2 * v[i] + one_minus_b2 * (g[i] * g[i])
        m[i] = mi
        v[i] = vi
        w[i] = w[i] * keep - step_size * mi / (np.sqrt(vi) + eps_hat)


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
    """One Adam step in place, in one pass over memory (see ``numpy_ref.adam_update``)."""
    t = w.dtype.type
    constants = (beta1, 1 - beta1, beta2, 1 - beta2, step_size, eps_hat, 1 - decay)
    flat_g = np.ascontiguousarray(g).reshape(-1)
    flat = (w.reshape(-1), flat_g, m.reshape(-1), v.reshape(-1))
    _run(_adam_update, w.size, *flat, *map(t, constants))
