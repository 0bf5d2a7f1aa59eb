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


def _images_per_task(n: int, bytes_per_item: int) -> int:
    """Items (images, or output rows) per task: a column matrix of about ``TASK_BYTES``, and
    at least two tasks per thread, so that a thread slowed down by another program does not
    hold the others up for long."""
    step = max(1, TASK_BYTES // max(bytes_per_item, 1))
    return max(1, min(step, -(-n // (2 * get_num_threads()))))


def conv2d_forward(x: np.ndarray, w_ext: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """``[im2col(x) | 1] @ w_ext.T`` as an ``(N, OH, OW, F)`` image (see ``numpy_ref``).

    A task is a run of output rows (of one image or several), so even one image's convolution
    is shared by the threads.
    """
    n, h, w, c = x.shape
    oh, ow = _out(h, k, stride, pad), _out(w, k, stride, pad)
    f, k1 = w_ext.shape
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
    """``([dW_mat | db], dx or None)`` of ``conv2d_forward`` (see ``numpy_ref``)."""
    n, h, w, c = x.shape
    oh, ow = _out(h, k, stride, pad), _out(w, k, stride, pad)
    f, k1 = w_ext.shape
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
