"""Winograd's minimal filtering: a 3x3 convolution with 2.25x or 4x fewer multiplications.

A 3x3 convolution (stride 1) computes every output pixel from 9 input pixels: im2col + GEMM spends
``9 * C * F`` multiply-adds per output pixel.  Winograd's algorithm (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", 2015) computes an ``m x m`` tile of outputs at once
from the ``a x a`` input tile under it (``a = m + 2``)::

    Y = A^T [ U ⊙ V ] A        U = G g G^T      (the 3x3 filter g, transformed to a x a)
                               V = B^T d B      (the a x a input tile d, transformed)

``⊙`` is an element-wise product: ``a*a`` multiplications for ``m*m`` outputs instead of
``9*m*m``.  Summed over the input channels, each of the ``a*a`` positions ``ξ`` of the
transformed tile becomes one matrix product over every tile of the batch at once::

    M[ξ] = V[ξ] @ U[ξ]          (tiles, C) @ (C, F) -> (tiles, F)

so the GEMMs do ``a*a / (m*m)`` multiply-adds per output pixel and channel pair instead of 9:
4 for F(2x2, 3x3) (tile ``m = 2``, 2.25x fewer) and 2.25 for F(4x4, 3x3) (``m = 4``, 4x fewer).
The transforms themselves only add and scale, channel by channel (cheap: no ``C x F`` term).

Training needs the gradients of that same computation, which are again products in the
transformed domain (``Z`` is the output gradient of a tile, transformed)::

    Z = A dY A^T                        (a x a, per tile and output channel)
    dU[ξ] = V[ξ]^T @ Z[ξ]    ->  dg = G^T dU G        the filter gradient
    dV[ξ] = Z[ξ] @ U[ξ]^T    ->  dd = B dV B^T        the input gradient (tiles overlap: summed)

These are the exact gradients of the Winograd forward pass, which equals the convolution up to
float rounding; gradient checks in float64 confirm them like every other layer's.

**Every transform is one matrix product.**  A tile flattened row by row (``d[p*a + q]``) is
transformed on both sides at once by a Kronecker product, ``vec(B^T d B) = (B^T ⊗ B^T) vec(d)``.
So with the tiles of the whole batch side by side, ``(a*a, tiles*C)``, each transform is one
GEMM with a small ``(a*a, a*a)`` matrix, which is how the NumPy version below runs at BLAS speed
without a Python loop over tiles::

    V = (B^T ⊗ B^T) @ d      Y = (A^T ⊗ A^T) @ M      U = (G ⊗ G) @ g
    Z = (A^T ⊗ A^T)^T @ dY   dd = (B^T ⊗ B^T)^T @ dV   dg = (G ⊗ G)^T @ dU

**Rounding.**  F(2x2, 3x3)'s matrices hold only 0, +-1 and 1/2: in float32 it is as exact as
im2col.  F(4x4, 3x3)'s hold 4, 5 and 8 (and 1/6, 1/24 in G), so intermediate values are larger
than the result and float32 loses a few more bits: measured against im2col in float64 on
unit-normal images and He-initialised filters, its float32 error is about 1e-6 of the output's
scale (im2col's own float32 error: about 1e-7; ``tests/core/test_winograd.py`` bounds it at 2e-5
for the outputs and both gradients).  That is far below what training notices (float16 training
works), and a convolution of 1,000 channels would still be within 1e-4.

This module holds the transform matrices, the rule saying when Winograd is used, and the plain
NumPy convolution: the NumPy backend's Winograd and the readable reference of the Numba kernels
in ``numba/winograd.py``.  Images are channels-last ``(N, H, W, C)``, as everywhere in
``kernels``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ConfigError
from ..shapes import window_output_size

# F(2x2, 3x3): input tiles 4x4, output tiles 2x2.  Only 0, +-1 and 1/2: exact in float32.
F2_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
F2_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
F2_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)

# F(4x4, 3x3): input tiles 6x6, output tiles 4x4 (interpolation points 0, +-1, +-2).
F4_BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=np.float64,
)
F4_G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=np.float64,
)
F4_AT = np.array(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    dtype=np.float64,
)

MATRICES = {2: (F2_BT, F2_G, F2_AT), 4: (F4_BT, F4_G, F4_AT)}
# The position ξ = (1, 1) of the a x a transformed tile, flattened: where a bias goes (A^T e_1 = 1).
BIAS_POSITION = {m: (m + 2) + 1 for m in MATRICES}

# When Winograd beats im2col (measured with ``python benchmarks/winograd_crossover.py``, on both
# backends): 3x3, stride 1, enough channels to make its many small matrix products worth their
# transforms, and enough images to keep the cores busy with them.  Predicting one image (the app)
# stays with im2col.  Training-sized batches use F(4x4, 3x3), the one with fewer multiplications.
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_IMAGES = 32
WINOGRAD_TILE = 4
# The NumPy version works on the batch a few images at a time, about this many tiles per step, so
# that each step's transformed tiles stay in the CPU cache while the next operations read them
# (measured, ``benchmarks/README.md``: lenet-plus's 28x28 32-channel layer, 16 images a step).
CHUNK_TILES = 600


def use_winograd(n: int, c: int, f: int, k: int, stride: int) -> bool:
    """Whether a convolution of ``n`` images, ``c`` -> ``f`` channels, a ``k x k`` kernel and
    ``stride`` runs as Winograd's F(``WINOGRAD_TILE`` x ``WINOGRAD_TILE``, 3x3)."""
    return (
        k == 3 and stride == 1 and n >= WINOGRAD_MIN_IMAGES and min(c, f) >= WINOGRAD_MIN_CHANNELS
    )


def matrices(m: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B^T, G, A^T)`` of F(m x m, 3x3) in ``dtype``: shapes ``(a, a)``, ``(a, 3)``, ``(m, a)``."""
    if m not in MATRICES:
        raise ConfigError(f"Winograd tiles of {m} outputs are not implemented; use 2 or 4")
    return tuple(matrix.astype(dtype) for matrix in MATRICES[m])


@cache
def kronecker_matrices(m: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B^T ⊗ B^T, G ⊗ G, A^T ⊗ A^T)``: each transforms a flattened tile on both sides at once.
    Shapes ``(a*a, a*a)``, ``(a*a, 9)``, ``(m*m, a*a)``."""
    kronecker = tuple(np.kron(matrix, matrix).astype(dtype) for matrix in matrices(m, np.float64))
    for matrix in kronecker:
        matrix.flags.writeable = False  # shared by every call
    return kronecker


def tile_grid(out_h: int, out_w: int, m: int) -> tuple[int, int]:
    """How many ``m x m`` output tiles cover an ``out_h x out_w`` output (the last may overhang)."""
    return -(-out_h // m), -(-out_w // m)


def filter_transform(w_ext: np.ndarray, m: int, matmul=np.matmul) -> np.ndarray:
    """``U = G g G^T`` of every 3x3 filter: ``w_ext`` ``(F, 9*C + 1)`` -> ``(a*a, C, F)``.

    ``w_ext`` is ``[W_mat | b]`` in im2col's column order ``(i, j, c)`` (see ``layers.Conv2D``).
    ``matmul`` multiplies the two matrices (the Numba backend passes one that keeps NumPy's BLAS
    threads asleep, see ``numba/winograd.py``).
    """
    f, k1 = w_ext.shape
    c = (k1 - 1) // 9
    _, kg, _ = kronecker_matrices(m, w_ext.dtype)
    filters = w_ext[:, :-1].reshape(f, 9, c).transpose(1, 2, 0)  # (9, C, F): g[(i, j)] per pair
    return matmul(kg, np.ascontiguousarray(filters).reshape(9, c * f)).reshape(-1, c, f)


def filter_gradient(grad_u: np.ndarray, m: int, matmul=np.matmul) -> np.ndarray:
    """The adjoint of ``filter_transform``: ``dU`` ``(a*a, C, F)`` -> ``dW_mat`` ``(F, 9*C)``,
    ``dg = G^T dU G`` for every filter."""
    aa, c, f = grad_u.shape
    _, kg, _ = kronecker_matrices(m, grad_u.dtype)
    dw = matmul(kg.T, np.ascontiguousarray(grad_u).reshape(aa, c * f))  # (9, C*F)
    return np.ascontiguousarray(dw.reshape(9, c, f).transpose(2, 0, 1)).reshape(f, 9 * c)


def _tiles(image: np.ndarray, m: int, tiles_h: int, tiles_w: int, a: int) -> np.ndarray:
    """The ``a x a`` tiles of a padded ``(N, H', W', C)`` image, ``m`` apart, flattened row by
    row: ``(a*a, N*TH*TW, C)`` (one copy)."""
    windows = sliding_window_view(image, (a, a), axis=(1, 2))  # (N, H'-a+1, W'-a+1, C, a, a)
    windows = windows[:, : tiles_h * m : m, : tiles_w * m : m]  # (N, TH, TW, C, a, a): a view
    c = image.shape[3]
    return windows.transpose(4, 5, 0, 1, 2, 3).reshape(a * a, -1, c)


def _padded(x: np.ndarray, pad: int, rows: int, cols: int) -> np.ndarray:
    """``x`` ``(N, H, W, C)`` at offset ``(pad, pad)`` of a zero ``(N, rows, cols, C)`` image
    (``rows`` and ``cols`` cover every tile: the last tiles may reach past the padding)."""
    n, h, w, c = x.shape
    padded = np.empty((n, rows, cols, c), dtype=x.dtype)
    padded[:, :pad] = 0  # zeros round x only: the rest is x
    padded[:, pad + h :] = 0
    padded[:, pad : pad + h, :pad] = 0
    padded[:, pad : pad + h, pad + w :] = 0
    padded[:, pad : pad + h, pad : pad + w] = x
    return padded


def transformed_input(x: np.ndarray, pad: int, m: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``V = B^T d B`` of every input tile, as ``(a*a, tiles, C)``; and the tile grid."""
    n, h, w, c = x.shape
    oh, ow = window_output_size(h, 3, 1, pad), window_output_size(w, 3, 1, pad)
    tiles_h, tiles_w = tile_grid(oh, ow, m)
    kb, _, _ = kronecker_matrices(m, x.dtype)
    a = m + 2
    d = _tiles(_padded(x, pad, tiles_h * m + 2, tiles_w * m + 2), m, tiles_h, tiles_w, a)
    v = kb @ d.reshape(a * a, -1)  # (a*a, tiles*C): all tiles at once
    return v.reshape(a * a, -1, c), (n, tiles_h, tiles_w)


def _from_tiles(tiles: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Output tiles ``(m, m, N, TH, TW, F)`` put together into ``(N, TH*m, TW*m, F)``: tile
    ``(t, s)``'s pixel ``(p, q)`` is pixel ``(t*m + p, s*m + q)`` (one transposing copy, into
    ``out`` when given: a C-contiguous array of that shape)."""
    m, _, n, tiles_h, tiles_w, f = tiles.shape
    if out is None:
        out = np.empty((n, tiles_h * m, tiles_w * m, f), dtype=tiles.dtype)
    blocks = out.reshape(n, tiles_h, m, tiles_w, m, f)  # a view of out
    blocks[...] = tiles.transpose(2, 3, 0, 4, 1, 5)
    return out


def _to_tiles(image: np.ndarray, m: int, tiles_h: int, tiles_w: int) -> np.ndarray:
    """The adjoint of ``_from_tiles``: ``(N, OH, OW, F)`` -> ``(m*m, N*TH*TW*F)``, the ``m x m``
    output tiles position by position, zeros where a tile overhangs the image."""
    n, oh, ow, f = image.shape
    if (oh, ow) != (tiles_h * m, tiles_w * m):
        full = np.zeros((n, tiles_h * m, tiles_w * m, f), dtype=image.dtype)
        full[:, :oh, :ow] = image
        image = full
    blocks = image.reshape(n, tiles_h, m, tiles_w, m, f).transpose(2, 4, 0, 1, 3, 5)
    return blocks.reshape(m * m, -1)  # the one copy


def _sum_overlapping_tiles(grad_d: np.ndarray, m: int) -> np.ndarray:
    """The adjoint of cutting overlapping tiles: ``(a, a, N, TH, TW, C)`` tile gradients ->
    the padded image's gradient ``(N, (TH+1)*m, (TW+1)*m, C)``.

    Tile ``(t, s)`` covers rows ``t*m .. t*m + a - 1``: its first ``m`` rows are its own and its
    last two (``i >= m``) are the first two of the tile below, ``(t+1, s)``; likewise for columns.
    So the 6x6 = 36 tile positions fall in four groups, each added to the image in one operation:
    ``i, j < m`` (no overlap: a copy), ``i >= m``, ``j >= m``, and both.  (The image has one
    tile row and column more than needed, for the last tiles' overlap.)
    """
    a, _, n, tiles_h, tiles_w, c = grad_d.shape
    image = np.empty((n, (tiles_h + 1) * m, (tiles_w + 1) * m, c), dtype=grad_d.dtype)
    blocks = image.reshape(n, tiles_h + 1, m, tiles_w + 1, m, c)  # a view of image
    blocks[:, tiles_h] = 0  # the extra tile row and column: only overlaps reach them
    blocks[:, :, :, tiles_w] = 0
    blocks[:, :tiles_h, :, :tiles_w] = grad_d[:m, :m].transpose(2, 3, 0, 4, 1, 5)
    blocks[:, 1:, : a - m, :tiles_w] += grad_d[m:, :m].transpose(2, 3, 0, 4, 1, 5)
    blocks[:, :tiles_h, :, 1:, : a - m] += grad_d[:m, m:].transpose(2, 3, 0, 4, 1, 5)
    blocks[:, 1:, : a - m, 1:, : a - m] += grad_d[m:, m:].transpose(2, 3, 0, 4, 1, 5)
    return image


def image_chunks(n: int, tiles_per_image: int) -> list[slice]:
    """The NumPy version's steps: ``n`` images in consecutive slices of about ``CHUNK_TILES``
    tiles each, as even as possible (one slice when the whole batch is about that size or less).
    """
    parts = min(n, max(1, round(n * tiles_per_image / CHUNK_TILES)))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def conv3x3_forward(
    x: np.ndarray,
    w_ext: np.ndarray,
    pad: int,
    m: int = 4,
    saved: dict[str, list[np.ndarray]] | None = None,
) -> np.ndarray:
    """A 3x3, stride-1 convolution by F(m x m, 3x3): the same result as
    ``numpy_ref.conv2d_forward(x, w_ext, 3, 1, pad)``, ``(N, OH, OW, F)``, a few images at a
    time (``image_chunks``).  With ``saved``, the transformed input ``V`` of each chunk is kept
    there (``saved["winograd_input"]``, a list) for ``conv3x3_backward``."""
    n, h, w, _ = x.shape
    oh, ow = window_output_size(h, 3, 1, pad), window_output_size(w, 3, 1, pad)
    tiles_h, tiles_w = tile_grid(oh, ow, m)
    f = w_ext.shape[0]
    u = filter_transform(w_ext, m)  # (a*a, C, F)
    _, _, ka = kronecker_matrices(m, x.dtype)
    y = np.empty((n, oh, ow, f), dtype=x.dtype)
    kept: list[np.ndarray] = []
    for images in image_chunks(n, tiles_h * tiles_w):
        v, _ = transformed_input(x[images], pad, m)  # (a*a, tiles, C)
        kept.append(v)
        products = np.matmul(v, u)  # (a*a, tiles, F): one GEMM per ξ
        # The bias: A^T's column 1 is all ones (for m = 2 and 4), so a value b added to M at
        # ξ = (1, 1) adds b to every pixel of Y = A^T M A - one add on 1/(a*a) of the products.
        products[BIAS_POSITION[m]] += w_ext[:, -1]
        y_tiles = ka @ products.reshape((m + 2) ** 2, -1)  # (m*m, tiles*F): Y = A^T M A
        count = images.stop - images.start
        tiles = y_tiles.reshape(m, m, count, tiles_h, tiles_w, f)
        if (oh, ow) == (tiles_h * m, tiles_w * m):
            _from_tiles(tiles, out=y[images])
        else:  # the last tiles overhang the output: cut
            y[images] = _from_tiles(tiles)[:, :oh, :ow]
    if saved is not None:
        saved["winograd_input"] = kept
    return y


def conv3x3_backward(
    x: np.ndarray,
    grad_y: np.ndarray,
    w_ext: np.ndarray,
    pad: int,
    m: int = 4,
    input_grad: bool = True,
    saved: dict[str, list[np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``([dW_mat | db], dx or None)`` of ``conv3x3_forward``, as ``numpy_ref.conv2d_backward``,
    chunk by chunk like the forward pass; the transformed input comes from ``saved`` when the
    forward pass kept it there.  The filter and bias gradients are sums over the chunks."""
    n, h, w, c = x.shape
    f = grad_y.shape[3]
    kb, _, ka = kronecker_matrices(m, x.dtype)
    a = m + 2
    oh, ow = window_output_size(h, 3, 1, pad), window_output_size(w, 3, 1, pad)
    tiles_h, tiles_w = tile_grid(oh, ow, m)
    kept = saved.get("winograd_input") if saved else None
    u = filter_transform(w_ext, m) if input_grad else None
    grad_u = np.zeros((a * a, c, f), dtype=x.dtype)
    grad_b = np.zeros(f, dtype=x.dtype)
    grad_x = np.empty_like(x) if input_grad else None
    for index, images in enumerate(image_chunks(n, tiles_h * tiles_w)):
        v = kept[index] if kept else transformed_input(x[images], pad, m)[0]  # (a*a, tiles, C)
        # Z = A dY A^T of every output tile (zero where a tile overhangs the output)
        tiles_dy = _to_tiles(grad_y[images], m, tiles_h, tiles_w)
        z = (ka.T @ tiles_dy).reshape(a * a, -1, f)  # (a*a, tiles, F)
        if f > c:  # dU = V^T Z, (a*a, C, F); BLAS is quicker with the longer side as rows
            grad_u += np.matmul(z.transpose(0, 2, 1), v).transpose(0, 2, 1)
        else:
            grad_u += np.matmul(v.transpose(0, 2, 1), z)
        grad_b += z[BIAS_POSITION[m]].sum(axis=0)  # the adjoint of forward's bias trick
        if input_grad:
            grad_v = np.matmul(z, u.transpose(0, 2, 1))  # dV = Z U^T, (a*a, tiles, C)
            grad_d = kb.T @ grad_v.reshape(a * a, -1)  # dd = B dV B^T, (a*a, tiles*C)
            count = images.stop - images.start
            padded = _sum_overlapping_tiles(grad_d.reshape(a, a, count, tiles_h, tiles_w, c), m)
            grad_x[images] = padded[:, pad : pad + h, pad : pad + w]
    grad_ext = np.empty((f, 9 * c + 1), dtype=x.dtype)
    grad_ext[:, :-1] = filter_gradient(grad_u, m)
    grad_ext[:, -1] = grad_b
    return grad_ext, grad_x
