"""The kernels of ``numpy_ref.py`` as explicit loops compiled by Numba: the fast backend.

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

One module per job:

- ``_parallel``: the compile options, and how a parallel loop starts (threads, task sizes);
- ``conv``: im2col, col2im, and the convolution by im2col + GEMM (or by Winograd, below);
- ``winograd``: Winograd's F(4x4, 3x3) 3x3 convolution (``kernels/winograd.py`` says when);
- ``dense``, ``pooling`` (max pooling), ``elementwise`` (ReLU), ``normalisation`` (BatchNorm),
  ``optimizers`` (Adam), ``sampling`` (bilinear sampling, for the data augmentation).

This package offers exactly the kernels of ``kernels.KERNEL_NAMES``, each with the signature and
the result (up to float rounding) of its twin in ``numpy_ref`` (which documents it).  Importing it
fails without Numba; npcnn then uses the NumPy backend alone.
"""

from __future__ import annotations

from .conv import col2im, conv2d_backward, conv2d_forward, im2col
from .dense import dense_backward, dense_forward
from .elementwise import relu_backward, relu_forward
from .normalisation import batchnorm_backward, batchnorm_forward, column_mean_var
from .optimizers import adam_update
from .pooling import maxpool_backward, maxpool_forward, maxpool_values
from .sampling import sample_bilinear

__all__ = [
    "adam_update",
    "batchnorm_backward",
    "batchnorm_forward",
    "col2im",
    "column_mean_var",
    "conv2d_backward",
    "conv2d_forward",
    "dense_backward",
    "dense_forward",
    "im2col",
    "maxpool_backward",
    "maxpool_forward",
    "maxpool_values",
    "relu_backward",
    "relu_forward",
    "sample_bilinear",
]
