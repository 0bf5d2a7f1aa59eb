"""The hot loops of a CNN, written in plain NumPy: the readable reference.

Every kernel here (the names in ``kernels.KERNEL_NAMES``) has a twin of the same name and
signature in the Numba backend, ``numba/``; property tests check that the two agree.  Their
docstrings here are the kernels' documentation.  ``pad_images`` and ``patches_view`` are the
pieces ``im2col`` is built from, not kernels.

Nothing here loops in Python over pixels: the only Python loops run over the few offsets inside a
kernel or pooling window (9 for a 3x3 kernel), and over chunks of a few images in the convolution
and the pooling (so that each chunk's column matrix, or the images a pooling pass reads again,
stay in the CPU cache; ``winograd.py`` steps through the batch the same way).

Layout: the kernels work on **channels-last** images, ``(N, H, W, C)`` ("NHWC"), C-contiguous.
The layers show them to the user as ``(N, C, H, W)`` views (``x.transpose(0, 3, 1, 2)``, no copy).
Channels last puts the ``C`` values of one pixel side by side in memory, so that

- ``im2col`` copies whole runs of ``kw * C`` numbers at a time,
- a convolution's output, ``cols @ W`` of shape ``(N*OH*OW, F)``, already *is* an NHWC image,
- BatchNorm sees a ``(N*H*W, C)`` table whose columns are the channels, for free.

``im2col`` turns every kh x kw patch of the input into one row of a matrix, so that a convolution
becomes a single matrix product (see ``layers.Conv2D``)::

    cols[(n, oh, ow), (i, j, c)] = x_padded[n, oh * stride + i, ow * stride + j, c]

    rows:    N * OH * OW   one per output pixel
    columns: kh * kw * C   one per input value the kernel sees there (channel fastest)
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..shapes import window_output_size
from . import winograd


def pad_images(x: np.ndarray, pad: int) -> np.ndarray:
    """Zero-pad the two spatial axes of an NHWC batch (no copy when ``pad == 0``)."""
    if pad == 0:
        return x
    return np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def patches_view(x_padded: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """A read-only strided view of every patch: shape ``(N, OH, OW, kh, kw, C)``, no copy."""
    n, h, w, c = x_padded.shape
    oh, ow = window_output_size(h, kh, stride), window_output_size(w, kw, stride)
    sn, sh, sw, sc = x_padded.strides
    return as_strided(
        x_padded,
        shape=(n, oh, ow, kh, kw, c),
        strides=(sn, sh * stride, sw * stride, sh, sw, sc),
        writeable=False,
    )


def im2col(
    x: np.ndarray, kh: int, kw: int, stride: int, pad: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Unfold patches into rows: ``(N, H, W, C) -> (N*OH*OW, kh*kw*C)``.

    With ``out`` (C-contiguous, at least ``kh*kw*C`` columns) the rows are written into its first
    ``kh*kw*C`` columns and any further columns are left as they are; ``out`` is returned.
    """
    patches = patches_view(pad_images(x, pad), kh, kw, stride)  # (N, OH, OW, kh, kw, C) view
    n, oh, ow = patches.shape[:3]
    if out is None:
        return patches.reshape(n * oh * ow, kh * kw * x.shape[3])  # the one copy
    target = out[:, : kh * kw * x.shape[3]].reshape(patches.shape)  # a view into out
    assert np.shares_memory(target, out)
    target[...] = patches
    return out


def col2im(
    cols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kh: int,
    kw: int,
    stride: int,
    pad: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The adjoint of ``im2col``: add every row's values back to the pixels they came from.

    Returns an ``(N, H, W, C)`` image (written to ``out`` if given).  A pixel that sat in several
    patches receives the sum of their values.  We loop over the ``kh * kw`` kernel offsets; each
    step adds one strided slab of the padded image at once.
    """
    n, h, w, c = x_shape
    oh, ow = window_output_size(h, kh, stride, pad), window_output_size(w, kw, stride, pad)
    cols6 = cols.reshape(n, oh, ow, kh, kw, c)
    if pad == 0 and out is not None:
        x_padded = out
        x_padded[...] = 0
    else:
        x_padded = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride * oh, stride)
            columns = slice(j, j + stride * ow, stride)
            x_padded[:, rows, columns, :] += cols6[:, :, :, i, j, :]
    image = x_padded[:, pad : pad + h, pad : pad + w, :]
    if out is None:
        return image if pad == 0 else np.ascontiguousarray(image)
    if out is not x_padded:
        out[...] = image
    return out


def offset_rows(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """im2col of a one-channel image, transposed, with a row of ones: ``(k*k + 1, N*OH*OW)``.

    Row ``i*k + j`` holds the input at kernel offset ``(i, j)`` of every output pixel: the whole
    image shifted by ``(i, j)``, one copy at memory speed; the last row is the bias input 1.
    im2col's own rows would hold ``k*k`` single numbers each, copied one at a time (measured on a
    first layer, 128 images of 28x28: 1.9 ms against 0.3 ms).  A matrix product reads the
    transpose for free, so ``rows.T @ w_ext.T`` is the convolution and ``rows @ dY`` its
    ``[dW | db]`` transposed.
    """
    x_padded = pad_images(x, pad)[..., 0]  # (N, H', W')
    n = x.shape[0]
    oh = window_output_size(x_padded.shape[1], k, stride)
    ow = window_output_size(x_padded.shape[2], k, stride)
    rows = np.empty((k * k + 1, n * oh * ow), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            shifted = x_padded[:, i : i + stride * oh : stride, j : j + stride * ow : stride]
            rows[i * k + j].reshape(n, oh, ow)[...] = shifted
    rows[-1] = 1
    return rows


CHUNK_BYTES = 4 << 20  # column matrix per step: a few MiB stay in the CPU cache
POOL_CHUNK_BYTES = 512 << 10  # pooling's input per step: its several passes stay in the cache


def _chunks(n: int, bytes_per_image: int, budget: int = CHUNK_BYTES) -> list[slice]:
    """Consecutive slices of a batch of ``n`` images, about ``budget`` bytes each."""
    step = max(1, budget // max(bytes_per_image, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def _count(images: slice) -> int:
    return images.stop - images.start


def _column_buffer(chunks: list[slice], per_image: int, k1: int, dtype: np.dtype) -> np.ndarray:
    """A reused column matrix for the largest chunk, its last column (the bias input) set to 1."""
    cols = np.empty((max(map(_count, chunks)) * per_image, k1), dtype=dtype)
    cols[:, -1] = 1
    return cols


def conv2d_forward(
    x: np.ndarray,
    w_ext: np.ndarray,
    k: int,
    stride: int,
    pad: int,
    saved: dict[str, list[np.ndarray]] | None = None,
) -> np.ndarray:
    """A convolution of an ``(N, H, W, C)`` image as ``[cols | 1] @ w_ext.T``: ``(N, OH, OW, F)``.

    ``w_ext = [W_mat | b]`` is ``(F, k*k*C + 1)``: the filters in im2col's column order, then the
    bias, the weight of a constant input 1 (see ``layers.Conv2D``).  By im2col + GEMM
    (``im2col_conv2d_forward``), or, for the 3x3 stride-1 convolutions of training-sized batches,
    by Winograd's algorithm: the same result with 4x fewer multiplications (``winograd.py``, which
    also says when: ``use_winograd``).

    ``saved``, when given (training), is a dict the forward pass may fill with what the backward
    pass of the same input can reuse; pass it on to ``conv2d_backward``.  Here Winograd keeps its
    transformed input ``V`` (a function of ``x`` only), which backward would otherwise compute
    again.  The Numba backend keeps nothing: its fused loops recompute ``V`` tile by tile, in the
    cache, faster than reading it back from memory.
    """
    n, _, _, c = x.shape
    if winograd.use_winograd(n, c, w_ext.shape[0], k, stride):
        return winograd.conv3x3_forward(x, w_ext, pad, winograd.WINOGRAD_TILE, saved)
    return im2col_conv2d_forward(x, w_ext, k, stride, pad)


def im2col_conv2d_forward(
    x: np.ndarray, w_ext: np.ndarray, k: int, stride: int, pad: int
) -> np.ndarray:
    """``conv2d_forward`` by im2col + GEMM, a few images at a time, so that their column matrix
    stays in the CPU cache instead of going through memory (for a one-channel input, the column
    matrix transposed: ``offset_rows``)."""
    n, h, w, c = x.shape
    oh, ow = window_output_size(h, k, stride, pad), window_output_size(w, k, stride, pad)
    f, k1 = w_ext.shape
    y = np.empty((n, oh * ow, f), dtype=x.dtype)
    chunks = _chunks(n, oh * ow * k1 * x.itemsize)
    if c == 1:  # one channel (a first layer): the transposed column matrix
        for images in chunks:
            rows = offset_rows(x[images], k, stride, pad)  # (k*k + 1, rows of this chunk)
            np.matmul(rows.T, w_ext.T, out=y[images].reshape(-1, f))
        return y.reshape(n, oh, ow, f)
    cols = _column_buffer(chunks, oh * ow, k1, x.dtype)
    for images in chunks:
        part = im2col(x[images], k, k, stride, pad, out=cols[: _count(images) * oh * ow])
        np.matmul(part, w_ext.T, out=y[images].reshape(-1, f))
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
    """The gradients of ``conv2d_forward`` from ``grad_y`` ``(N, OH, OW, F)``::

        [dW_mat | db] = dY.T @ [cols | 1]        (F, k*k*C + 1), summed over the chunks
        dx            = col2im(dY @ W_mat)       (N, H, W, C), skipped unless ``input_grad``

    by the algorithm of the forward pass (``im2col_conv2d_backward`` or Winograd's).  ``saved``:
    what the forward pass of this ``x`` kept (see ``conv2d_forward``), or ``None``.
    """
    n, _, _, c = x.shape
    if winograd.use_winograd(n, c, w_ext.shape[0], k, stride):
        return winograd.conv3x3_backward(
            x, grad_y, w_ext, pad, winograd.WINOGRAD_TILE, input_grad, saved
        )
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
    """``conv2d_backward`` by im2col + GEMM.  The columns are rebuilt chunk by chunk rather than
    kept from the forward pass."""
    n, h, w, c = x.shape
    f, k1 = w_ext.shape
    grad_y = grad_y.reshape(n, -1, f)  # (N, OH*OW, F)
    per_image = grad_y.shape[1]
    grad_ext = np.zeros((f, k1), dtype=x.dtype)
    grad_x = np.empty_like(x) if input_grad else None
    chunks = _chunks(n, per_image * k1 * x.itemsize)
    cols = _column_buffer(chunks, per_image, k1, x.dtype) if c != 1 else None
    for images in chunks:
        g = grad_y[images].reshape(-1, f)  # (rows of this chunk, F)
        if cols is None:  # one channel: the transposed column matrix, as in the forward pass
            grad_ext += (offset_rows(x[images], k, stride, pad) @ g).T
        else:
            part = im2col(x[images], k, k, stride, pad, out=cols[: _count(images) * per_image])
            grad_ext += g.T @ part
        if grad_x is not None:
            dcols = g @ w_ext[:, :-1]  # (rows, k*k*C)
            col2im(dcols, grad_x[images].shape, k, k, stride, pad, out=grad_x[images])
    return grad_ext, grad_x


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A fully connected layer: ``x @ w + b``, ``(N, in) -> (N, out)``."""
    return x @ w + b


def dense_backward(
    x: np.ndarray, grad_y: np.ndarray, w: np.ndarray, input_grad: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(dW, db, dx)`` of ``dense_forward``: ``x.T @ dY``, ``dY`` summed over the batch and
    ``dY @ w.T`` (``None`` unless ``input_grad``)."""
    return x.T @ grad_y, grad_y.sum(axis=0), (grad_y @ w.T if input_grad else None)


def _window_slab(x: np.ndarray, i: int, j: int, stride: int, oh: int, ow: int) -> np.ndarray:
    """The input value at offset ``(i, j)`` of every pooling window: an ``(N, OH, OW, C)`` view."""
    return x[:, i : i + stride * oh : stride, j : j + stride * ow : stride, :]


def maxpool_forward(x: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Max over each ``size x size`` window of an ``(N, H, W, C)`` image.

    Returns the pooled output ``(N, OH, OW, C)`` and, for the backward pass, the position of the
    maximum inside its window as a flat index ``i * size + j`` (uint8, first maximum on ties).
    We visit the ``size * size`` offsets of the window in turn, keeping the best value so far,
    a few images at a time (``POOL_CHUNK_BYTES``): the passes after the first then find those
    images in the CPU cache instead of reading them from memory again.
    """
    n, h, w, c = x.shape
    oh, ow = window_output_size(h, size, stride), window_output_size(w, size, stride)
    out = np.empty((n, oh, ow, c), dtype=x.dtype)
    argmax = np.zeros(out.shape, dtype=np.uint8)
    step = np.empty_like(argmax)
    for images in _chunks(n, x[0].nbytes, POOL_CHUNK_BYTES):
        best, position, change = out[images], argmax[images], step[images]  # views to fill
        np.copyto(best, _window_slab(x[images], 0, 0, stride, oh, ow))
        for k in range(1, size * size):
            candidate = _window_slab(x[images], k // size, k % size, stride, oh, ow)
            better = candidate > best  # strictly: the first maximum wins ties
            np.maximum(best, candidate, out=best)
            # position <- k where better: position + better * (k - position), exact in uint8
            # arithmetic (and several times faster than np.where or a masked copy)
            np.subtract(np.uint8(k), position, out=change)
            change *= better
            position += change
    return out, argmax


def maxpool_values(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """``maxpool_forward``'s output alone: the window maxima without where they were.

    Prediction needs nothing more (only a pass backward reads the positions), and keeping the
    running maximum alone is a single ``np.maximum`` per window offset, a few images at a time
    as above.
    """
    n, h, w, c = x.shape
    oh, ow = window_output_size(h, size, stride), window_output_size(w, size, stride)
    out = np.empty((n, oh, ow, c), dtype=x.dtype)
    for images in _chunks(n, x[0].nbytes, POOL_CHUNK_BYTES):
        best = out[images]  # a view to fill
        np.copyto(best, _window_slab(x[images], 0, 0, stride, oh, ow))
        for k in range(1, size * size):
            np.maximum(best, _window_slab(x[images], k // size, k % size, stride, oh, ow), out=best)
    return out


def maxpool_backward(
    grad_out: np.ndarray,
    argmax: np.ndarray,
    x_shape: tuple[int, int, int, int],
    size: int,
    stride: int,
) -> np.ndarray:
    """Route each output gradient to the one input that was the maximum of its window (NHWC),
    a few images at a time like ``maxpool_forward``."""
    _, oh, ow, _ = grad_out.shape
    if stride == size:  # the windows tile the image: each of its pixels is written once below,
        grad_x = np.empty(x_shape, dtype=grad_out.dtype)
        grad_x[:, oh * size :] = 0  # except the rows and columns no window reaches
        grad_x[:, :, ow * size :] = 0
    else:
        grad_x = np.zeros(x_shape, dtype=grad_out.dtype)
    for images in _chunks(x_shape[0], grad_x[0].nbytes, POOL_CHUNK_BYTES):
        for k in range(size * size):
            slab = _window_slab(grad_x[images], k // size, k % size, stride, oh, ow)  # a view
            if stride >= size:  # windows do not overlap: each input gets at most one gradient
                np.multiply(grad_out[images], argmax[images] == k, out=slab)
            else:
                slab += grad_out[images] * (argmax[images] == k)
    return grad_x


def relu_forward(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``, a new array."""
    return np.maximum(x, 0)


def relu_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``grad_out`` where the ReLU's output ``y`` is positive, 0 elsewhere (same shapes)."""
    return grad_out * (y > 0)


def _column_sums(table: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """``sum(table, axis=0)``, or ``sum(table * other, axis=0)``, without a temporary array.

    ``np.einsum`` adds the rows in one pass, several times faster than ``table.sum(axis=0)`` on a
    tall table of few columns (measured: 0.5 against 1.7 ms for 73,728 x 32); both add the rows
    one after another in the table's dtype.
    """
    if other is None:
        return np.einsum("ij->j", table)
    return np.einsum("ij,ij->j", table, other)


def column_mean_var(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (biased) variance of each column of a ``(samples, C)`` table."""
    n = table.shape[0]
    mean = _column_sums(table) / n
    centred = table - mean
    return mean, _column_sums(centred, centred) / n


def batchnorm_forward(
    table: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """``y = gamma * x_hat + beta`` with ``x_hat = (x - mean) * inv_std``, column by column:
    ``y = x * scale + shift`` with ``scale = gamma * inv_std``, ``shift = beta - mean * scale``."""
    scale = gamma * inv_std
    y = table * scale
    y += beta - mean * scale
    return y


def batchnorm_backward(
    grad: np.ndarray,
    table: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    gamma: np.ndarray,
    training: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dgamma, dbeta)`` of BatchNorm on a ``(samples, C)`` table (see ``layers.BatchNorm``).

    With ``g = grad * gamma`` and ``x_hat = (x - mean) * inv_std`` (from the input ``table``)::

        dgamma = sum(grad * x_hat)      dbeta = sum(grad)             (over the rows)
        dx     = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))     (training)
        dx     = inv_std * g                                          (eval: fixed statistics)

    computed as ``dx = a * grad - b * (x - mean) - c`` with the constants of each column folded:
    ``a = gamma * inv_std``, ``b = a * inv_std * dgamma / n``, ``c = a * dbeta / n``.
    """
    n = grad.shape[0]
    centred = table - mean
    dgamma = _column_sums(grad, centred) * inv_std
    dbeta = _column_sums(grad)
    a = gamma * inv_std
    grad_x = grad * a
    if not training:
        return grad_x, dgamma, dbeta
    grad_x -= centred * (a * inv_std * dgamma / n)
    grad_x -= a * dbeta / n
    return grad_x, dgamma, dbeta


def sample_bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Read each image at real-valued points, bilinearly, with zeros outside the image.

    ``images`` (N, H, W); ``rows`` and ``cols`` (N, P, Q): ``out[n, i, j]`` is image ``n`` at
    (``rows[n, i, j]``, ``cols[n, i, j]``).  With r0 = floor(r), a = r - r0 (and likewise c0, b):

        out = (1-a)(1-b) I[r0, c0] + (1-a) b I[r0, c0+1] + a (1-b) I[r0+1, c0] + a b I[r0+1, c0+1]

    where I is 0 beyond the edges - as ``scipy.ndimage.map_coordinates(order=1,
    mode="grid-constant")`` reads one image, but for the whole batch in four vectorised gathers
    (no Python loop over images).  At whole-number points it returns the pixels exactly.  The
    data augmentation's resampling (``npcnn.digits.augment``); the weights a and b are float32.
    """
    n, height, width = images.shape
    # A frame of two zeros round each image: a point up to one pixel outside blends the edge
    # with zeros, and one further out is moved (clipped) to where it reads only zeros.
    padded = np.zeros((n, height + 4, width + 4), dtype=images.dtype)
    padded[:, 2:-2, 2:-2] = images
    rows, cols = rows.astype(np.float32), cols.astype(np.float32)
    r0 = np.clip(np.floor(rows), -2, height)
    c0 = np.clip(np.floor(cols), -2, width)
    a, b = rows - r0, cols - c0  # in [0, 1) inside the frame; clipped points read zeros anyway
    stride = width + 4
    first = (np.arange(n) * (height + 4) * stride).reshape(n, 1, 1)
    top_left = first + (r0.astype(np.intp) + 2) * stride + (c0.astype(np.intp) + 2)
    flat = padded.reshape(-1)
    upper = flat[top_left] + b * (flat[top_left + 1] - flat[top_left])
    lower = flat[top_left + stride] + b * (flat[top_left + stride + 1] - flat[top_left + stride])
    return (upper + a * (lower - upper)).astype(images.dtype, copy=False)


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
    """One Adam step in place (see ``optimizers.Adam``)::

    m <- b1 m + (1 - b1) g      v <- b2 v + (1 - b2) g^2      w <- w (1 - decay) - step m / (sqrt v + eps)
    """
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * (g * g)
    if decay:
        w -= decay * w
    w -= step_size * m / (np.sqrt(v) + eps_hat)
