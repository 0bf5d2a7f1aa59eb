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

This module holds the transform matrices, the filter transforms (tiny, shared by both backends)
and the plain NumPy convolution: the readable reference of the Numba kernels in
``numba/winograd.py``.
Images are channels-last ``(N, H, W, C)``, as everywhere in ``kernels``.
"""

from __future__ import annotations

import numpy as np

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


def matrices(m: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B^T, G, A^T)`` of F(m x m, 3x3) in ``dtype``: shapes ``(a, a)``, ``(a, 3)``, ``(m, a)``."""
    if m not in MATRICES:
        raise ConfigError(f"Winograd tiles of {m} outputs are not implemented; use 2 or 4")
    return tuple(matrix.astype(dtype) for matrix in MATRICES[m])


def tile_grid(out_h: int, out_w: int, m: int) -> tuple[int, int]:
    """How many ``m x m`` output tiles cover an ``out_h x out_w`` output (the last may overhang)."""
    return -(-out_h // m), -(-out_w // m)


def filter_transform(w_ext: np.ndarray, m: int) -> np.ndarray:
    """``U = G g G^T`` of every 3x3 filter: ``w_ext`` ``(F, 9*C + 1)`` -> ``(a*a, C, F)``.

    ``w_ext`` is ``[W_mat | b]`` in im2col's column order ``(i, j, c)`` (see ``layers.Conv2D``).
    """
    f, k1 = w_ext.shape
    c = (k1 - 1) // 9
    _, g_matrix, _ = matrices(m, w_ext.dtype)
    a = g_matrix.shape[0]
    filters = w_ext[:, :-1].reshape(f, 3, 3, c)
    u = np.einsum("ai,bj,fijc->abcf", g_matrix, g_matrix, filters, optimize=True)
    return np.ascontiguousarray(u.reshape(a * a, c, f))


def filter_gradient(grad_u: np.ndarray, m: int) -> np.ndarray:
    """The adjoint of ``filter_transform``: ``dU`` ``(a*a, C, F)`` -> ``dW_mat`` ``(F, 9*C)``,
    ``dg = G^T dU G`` for every filter."""
    _, g_matrix, _ = matrices(m, grad_u.dtype)
    a, c, f = g_matrix.shape[0], grad_u.shape[1], grad_u.shape[2]
    dw = np.einsum(
        "ai,bj,abcf->fijc", g_matrix, g_matrix, grad_u.reshape(a, a, c, f), optimize=True
    )
    return dw.reshape(f, 9 * c)


def _input_tiles(x: np.ndarray, pad: int, m: int, tiles_h: int, tiles_w: int) -> np.ndarray:
    """Every ``a x a`` input tile, zero beyond the image: ``(N, TH, TW, C, a, a)`` (a copy)."""
    n, h, w, c = x.shape
    a = m + 2
    rows, cols = tiles_h * m + 2, tiles_w * m + 2  # the padded input the tiles cover
    padded = np.zeros((n, rows, cols, c), dtype=x.dtype)
    padded[:, pad : pad + h, pad : pad + w] = x  # rows >= OH + 2 = h + 2 * pad: it fits
    tiles = np.empty((n, tiles_h, tiles_w, c, a, a), dtype=x.dtype)
    for i in range(a):
        for j in range(a):
            tiles[..., i, j] = padded[:, i : i + tiles_h * m : m, j : j + tiles_w * m : m]
    return tiles


def transformed_input(x: np.ndarray, pad: int, m: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``V = B^T d B`` of every input tile, as ``(a*a, tiles, C)``; and the tile grid."""
    n, h, w, c = x.shape
    oh, ow = window_output_size(h, 3, 1, pad), window_output_size(w, 3, 1, pad)
    tiles_h, tiles_w = tile_grid(oh, ow, m)
    bt, _, _ = matrices(m, x.dtype)
    a = bt.shape[0]
    v = bt @ _input_tiles(x, pad, m, tiles_h, tiles_w) @ bt.T  # (N, TH, TW, C, a, a)
    v = v.reshape(n * tiles_h * tiles_w, c, a * a).transpose(2, 0, 1)
    return np.ascontiguousarray(v), (n, tiles_h, tiles_w)


def conv3x3_forward(x: np.ndarray, w_ext: np.ndarray, pad: int, m: int = 2) -> np.ndarray:
    """A 3x3, stride-1 convolution by F(m x m, 3x3): the same result as
    ``numpy_ref.conv2d_forward(x, w_ext, 3, 1, pad)``, ``(N, OH, OW, F)``."""
    n, h, w, _ = x.shape
    oh, ow = window_output_size(h, 3, 1, pad), window_output_size(w, 3, 1, pad)
    f = w_ext.shape[0]
    _, _, at = matrices(m, x.dtype)
    a = at.shape[1]
    v, (n, tiles_h, tiles_w) = transformed_input(x, pad, m)
    products = np.matmul(v, filter_transform(w_ext, m))  # (a*a, tiles, F)
    products = products.transpose(1, 2, 0).reshape(-1, f, a, a)
    y = at @ products @ at.T  # (tiles, F, m, m)
    y = y.reshape(n, tiles_h, tiles_w, f, m, m).transpose(0, 1, 4, 2, 5, 3)
    y = y.reshape(n, tiles_h * m, tiles_w * m, f)[:, :oh, :ow]
    return y + w_ext[:, -1]


def conv3x3_backward(
    x: np.ndarray,
    grad_y: np.ndarray,
    w_ext: np.ndarray,
    pad: int,
    m: int = 2,
    input_grad: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``([dW_mat | db], dx or None)`` of ``conv3x3_forward``, as ``numpy_ref.conv2d_backward``."""
    n, h, w, c = x.shape
    _, oh, ow, f = grad_y.shape
    bt, _, at = matrices(m, x.dtype)
    a = bt.shape[0]
    v, (n, tiles_h, tiles_w) = transformed_input(x, pad, m)
    # Z = A dY A^T for every output tile (zero where a tile overhangs the output)
    grad_tiles = np.zeros((n, tiles_h * m, tiles_w * m, f), dtype=x.dtype)
    grad_tiles[:, :oh, :ow] = grad_y
    grad_tiles = grad_tiles.reshape(n, tiles_h, m, tiles_w, m, f).transpose(0, 1, 3, 5, 2, 4)
    z = at.T @ grad_tiles @ at  # (N, TH, TW, F, a, a)
    z = np.ascontiguousarray(z.reshape(-1, f, a * a).transpose(2, 0, 1))  # (a*a, tiles, F)
    grad_u = np.matmul(v.transpose(0, 2, 1), z)  # (a*a, C, F)
    grad_ext = np.empty((f, 9 * c + 1), dtype=x.dtype)
    grad_ext[:, :-1] = filter_gradient(grad_u, m)
    grad_ext[:, -1] = grad_y.sum(axis=(0, 1, 2))
    if not input_grad:
        return grad_ext, None
    u = filter_transform(w_ext, m)
    grad_v = np.matmul(z, u.transpose(0, 2, 1))  # (a*a, tiles, C)
    grad_v = grad_v.transpose(1, 2, 0).reshape(n, tiles_h, tiles_w, c, a, a)
    grad_d = bt.T @ grad_v @ bt  # dd = B dV B^T, (N, TH, TW, C, a, a)
    padded = np.zeros((n, tiles_h * m + 2, tiles_w * m + 2, c), dtype=x.dtype)
    for i in range(a):  # neighbouring tiles overlap by two rows and columns: sum them
        for j in range(a):
            padded[:, i : i + tiles_h * m : m, j : j + tiles_w * m : m] += grad_d[..., i, j]
    return grad_ext, np.ascontiguousarray(padded[:, pad : pad + h, pad : pad + w])
