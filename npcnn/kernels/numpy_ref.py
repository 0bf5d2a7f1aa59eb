"""The hot loops of a CNN, written in plain NumPy: the readable reference.

Every function here has a twin of the same name and signature in ``numba_jit.py``; a property test
checks that the two agree.  Nothing here loops in Python over images or pixels: the only Python loops
run over the few offsets inside a kernel or pooling window (9 for a 3x3 kernel).

Layout: images are NCHW, ``(N, C, H, W)``.  ``im2col`` turns every kh x kw patch of the input into one
row of a matrix, so that a convolution becomes a single matrix product (see ``layers.Conv2D``)::

    cols[(n, oh, ow), (c, i, j)] = x_padded[n, c, oh * stride + i, ow * stride + j]

    rows:    N * OH * OW   one per output pixel
    columns: C * kh * kw   one per input value the kernel sees there
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def conv_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length along one axis: floor((size + 2 * pad - kernel) / stride) + 1."""
    return (size + 2 * pad - kernel) // stride + 1


def pad_images(x: np.ndarray, pad: int) -> np.ndarray:
    """Zero-pad the two spatial axes of an NCHW batch (no copy when ``pad == 0``)."""
    if pad == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def patches_view(x_padded: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """A read-only strided view of every patch: shape ``(N, OH, OW, C, kh, kw)``, no copy."""
    n, c, h, w = x_padded.shape
    oh = (h - kh) // stride + 1
    ow = (w - kw) // stride + 1
    sn, sc, sh, sw = x_padded.strides
    return as_strided(
        x_padded,
        shape=(n, oh, ow, c, kh, kw),
        strides=(sn, sh * stride, sw * stride, sc, sh, sw),
        writeable=False,
    )


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """Unfold patches into rows: ``(N, C, H, W) -> (N*OH*OW, C*kh*kw)``."""
    n, c, _, _ = x.shape
    patches = patches_view(pad_images(x, pad), kh, kw, stride)  # (N, OH, OW, C, kh, kw) view
    _, oh, ow = patches.shape[:3]
    return patches.reshape(n * oh * ow, c * kh * kw)  # the one copy


def col2im(
    cols: np.ndarray, x_shape: tuple[int, int, int, int], kh: int, kw: int, stride: int, pad: int
) -> np.ndarray:
    """The adjoint of ``im2col``: add every row's values back to the pixels they came from.

    A pixel that sat in several patches receives the sum of their gradients.  We loop over the
    ``kh * kw`` kernel offsets; each step adds one strided slab of the padded image at once.
    """
    n, c, h, w = x_shape
    oh = conv_output_size(h, kh, stride, pad)
    ow = conv_output_size(w, kw, stride, pad)
    cols6 = cols.reshape(n, oh, ow, c, kh, kw)
    x_padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride * oh, stride)
            columns = slice(j, j + stride * ow, stride)
            x_padded[:, :, rows, columns] += cols6[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    if pad == 0:
        return x_padded
    return x_padded[:, :, pad:-pad, pad:-pad]


def maxpool_forward(x: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Max over each ``size x size`` window.

    Returns the pooled output ``(N, C, OH, OW)`` and, for the backward pass, the position of the
    maximum inside its window as a flat index ``i * size + j`` (uint8, first maximum on ties).
    """
    windows = patches_view(x, size, size, stride)  # (N, OH, OW, C, size, size)
    n, oh, ow, c = windows.shape[:4]
    flat = windows.reshape(n, oh, ow, c, size * size)
    argmax = flat.argmax(axis=-1)  # (N, OH, OW, C)
    out = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    return out.transpose(0, 3, 1, 2), argmax.transpose(0, 3, 1, 2).astype(np.uint8)


def maxpool_backward(
    grad_out: np.ndarray,
    argmax: np.ndarray,
    x_shape: tuple[int, int, int, int],
    size: int,
    stride: int,
) -> np.ndarray:
    """Route each output gradient to the one input that was the maximum of its window."""
    n, c, h, w = x_shape
    _, _, oh, ow = grad_out.shape
    grad_x = np.zeros(x_shape, dtype=grad_out.dtype)
    for i in range(size):
        for j in range(size):
            chosen = argmax == i * size + j  # (N, C, OH, OW): where this offset won
            rows = slice(i, i + stride * oh, stride)
            columns = slice(j, j + stride * ow, stride)
            grad_x[:, :, rows, columns] += np.where(chosen, grad_out, 0)
    return grad_x
