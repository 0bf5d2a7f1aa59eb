"""Output sizes of sliding windows: the one formula convolution and pooling share.

A window of ``kernel`` pixels slides over ``size`` pixels plus ``pad`` zeros on each side, moving
``stride`` pixels at a time; it fits ``floor((size + 2*pad - kernel) / stride) + 1`` times::

    size 28, kernel 3, stride 1, pad 0  ->  26        (a "valid" 3x3 convolution)
    size 28, kernel 3, stride 1, pad 1  ->  28        ("same")
    size 26, kernel 2, stride 2, pad 0  ->  13        (2x2 max pooling)
"""

from __future__ import annotations

from .errors import ShapeError


def window_output_size(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
    """How many positions a ``kernel``-wide window takes along ``size`` (+ ``pad`` each side)."""
    out = (size + 2 * pad - kernel) // stride + 1
    if out < 1:
        raise ShapeError(f"a window of {kernel} does not fit {size} pixels padded by {pad}")
    return out
