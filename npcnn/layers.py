"""The layers of a CNN, each with a forward pass and the backward pass that differentiates it.

Every layer follows one small protocol:

- ``build(input_shape, rng, dtype) -> output_shape`` creates the parameters (shapes exclude the batch);
- ``forward(x, training) -> y`` computes the output and remembers what ``backward`` needs;
- ``backward(grad_y, input_grad=True) -> grad_x`` takes dL/dy and returns dL/dx, storing
  dL/dparam in ``grads``; with ``input_grad=False`` it may skip dL/dx and return ``None`` (the
  first layer of a model in training: nothing needs the gradient of the input);
- ``params`` / ``grads`` map a name to an array; ``buffers`` holds non-trained state (BatchNorm's
  running statistics); ``config()`` gives the constructor arguments, so a model can be saved as JSON.

Layers infer their input sizes in ``build``: ``Conv2D(32, 3)`` learns its input channels and
``Dense(10)`` its input features from the layer before (the explicit forms ``Conv2D(1, 32, 3)``
and ``Dense(1600, 10)`` also work, and are checked against what arrives).

Images are NCHW: ``(batch, channels, height, width)`` -- logically.  In memory the layers keep them
*channels last* (NHWC): a layer's output is an ``(N, H, W, C)`` array seen through the free view
``.transpose(0, 3, 1, 2)``, which is what the kernels read and write fastest (see
``kernels/numpy_ref.py``).  Any layout is accepted as input; ``channels_last`` copies only when it
must.  ``npcnn.gradcheck`` checks every backward pass here against finite differences.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import kernels
from .errors import ConfigError, ShapeError
from .shapes import window_output_size

Shape = tuple[int, ...]


class Layer:
    """Base class: a layer without parameters that passes its input through unchanged."""

    # Two facts ``Sequential.execution_order`` uses to run a ReLU after the max pooling that
    # follows it (same result, a quarter of the work): see ``model.relu_then_max_pool``.
    elementwise_non_decreasing: bool = False  # y_i = f(x_i) with f non-decreasing (ReLU)
    takes_window_maximum: bool = False  # each output is the maximum of a window (MaxPool2D)

    def __init__(self) -> None:
        self.name: str = type(self).__name__.lower()
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def build(
        self, input_shape: Shape, rng: np.random.Generator, dtype: type = np.float32
    ) -> Shape:
        """Create parameters for inputs of ``input_shape`` (no batch axis); return the output shape."""
        return input_shape

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (saved as JSON with the model)."""
        return {}

    def parameter_count(self) -> int:
        return sum(p.size for p in self.params.values())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def channels_last(x: np.ndarray) -> np.ndarray:
    """``(N, C, H, W) -> (N, H, W, C)``, C-contiguous: free when ``x`` is already stored that way."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def channels_first(x: np.ndarray) -> np.ndarray:
    """``(N, H, W, C) -> (N, C, H, W)``: a view, no copy."""
    return x.transpose(0, 3, 1, 2)


def image_shape(layer: Layer, input_shape: Shape) -> tuple[int, int, int]:
    """``(channels, height, width)`` of an image input, or ``ShapeError`` naming ``layer``."""
    if len(input_shape) != 3:
        raise ShapeError(
            f"{layer.name}: expects (channels, height, width) inputs, got {input_shape}"
        )
    c, h, w = input_shape
    return c, h, w


def _he_normal(rng: np.random.Generator, shape: Shape, fan_in: int, dtype: type) -> np.ndarray:
    """He initialisation for ReLU networks: N(0, 2 / fan_in)."""
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


class Conv2D(Layer):
    """2-D convolution as matrix products (im2col + GEMM).

    ``cols = im2col(x)`` has one row per output pixel and one column per input value its kernel
    window sees, ``(N*OH*OW, k*k*C)`` (kernel row, kernel column, channel), plus a last column of
    ones: the bias is then just the weight of a constant input 1, so one matrix product applies
    both.  With the filters flattened the same way and the bias appended, ``W_ext = [W_mat | b]``
    of shape ``(F, k*k*C + 1)``::

        forward:   Y = cols @ W_ext.T                   (N*OH*OW, F) = (N, OH, OW, F) channels last
        backward:  dW_ext = dY.T @ cols                 (F, k*k*C + 1): dW and, last column, db
                   dcols  = dY @ W_mat                  (N*OH*OW, k*k*C), then col2im -> dx

    The kernels (``kernels.conv2d_forward`` / ``conv2d_backward``) work a few images at a time,
    so that each piece of the column matrix stays in the CPU cache instead of making a round trip
    through memory, and backward rebuilds the columns rather than keeping them from forward
    (cheaper than reading them back from memory, and much less memory).  Both backends compute
    the 3x3, stride-1 convolutions of training-sized batches by Winograd's algorithm instead, with
    4x fewer multiplications and the same result up to rounding (see ``kernels/winograd.py``);
    in training, the NumPy backend's Winograd keeps its transformed input from forward for
    backward (the kernels' ``saved`` dict).

    ``padding`` is ``"valid"`` (none), ``"same"`` (output size = ceil(input / stride); odd kernels)
    or a number of zero pixels on every side.
    """

    def __init__(
        self,
        *sizes: int,
        stride: int = 1,
        padding: str | int = "valid",
        in_channels: int | None = None,
        out_channels: int | None = None,
        kernel_size: int | None = None,
    ) -> None:
        """``Conv2D(filters, kernel)``, or ``Conv2D(in_channels, filters, kernel)`` to state the
        input channels too (they are checked in ``build``).  Keywords work as well."""
        super().__init__()
        if len(sizes) == 3:
            in_channels, out_channels, kernel_size = sizes
        elif len(sizes) == 2 and kernel_size is None:
            out_channels, kernel_size = sizes
        elif len(sizes) == 2:  # Conv2D(in_channels, filters, kernel_size=k)
            in_channels, out_channels = sizes
        elif len(sizes) == 1:
            (out_channels,) = sizes
        elif sizes:
            raise ConfigError(f"Conv2D takes at most 3 sizes (in, out, kernel), not {sizes}")
        if out_channels is None:
            raise ConfigError("Conv2D needs its number of filters: Conv2D(32, 3)")
        kernel_size = 3 if kernel_size is None else kernel_size
        if padding == "same" and kernel_size % 2 == 0:
            raise ConfigError("padding='same' needs an odd kernel_size")
        if not (padding in ("valid", "same") or (isinstance(padding, int) and padding >= 0)):
            raise ConfigError(f"padding must be 'valid', 'same' or an int >= 0, not {padding!r}")
        self.in_channels = in_channels  # None until build() sees the input
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.pad = {"valid": 0, "same": (kernel_size - 1) // 2}.get(padding, padding)

    def build(
        self, input_shape: Shape, rng: np.random.Generator, dtype: type = np.float32
    ) -> Shape:
        c, h, w = image_shape(self, input_shape)
        if self.in_channels is not None and c != self.in_channels:
            raise ShapeError(f"{self.name}: expects {self.in_channels} input channels, got {c}")
        self.in_channels = c
        k, f = self.kernel_size, self.out_channels
        try:
            oh = window_output_size(h, k, self.stride, self.pad)
            ow = window_output_size(w, k, self.stride, self.pad)
        except ShapeError:
            raise ShapeError(
                f"{self.name}: a {k}x{k} kernel does not fit a {h}x{w} input"
            ) from None
        self.params["W"] = _he_normal(rng, (f, c, k, k), fan_in=c * k * k, dtype=dtype)
        self.params["b"] = np.zeros(f, dtype=dtype)
        return (f, oh, ow)

    def _extended_weights(self) -> np.ndarray:
        """``[W_mat | b]``: the filters as ``(F, k*k*C)`` rows in im2col's column order, then
        the bias as a last column (a small copy)."""
        w = self.params["W"]
        w_ext = np.empty((self.out_channels, w[0].size + 1), dtype=w.dtype)
        w_ext[:, :-1] = w.transpose(0, 2, 3, 1).reshape(self.out_channels, -1)
        w_ext[:, -1] = self.params["b"]
        return w_ext

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = channels_last(x)  # (N, H, W, C)
        k, s, p = self.kernel_size, self.stride, self.pad
        self._saved = {} if training else None  # what backward may reuse (see the kernel)
        y = kernels.conv2d_forward(x, self._extended_weights(), k, s, p, self._saved)
        self._x = x  # y: (N, OH, OW, F)
        return channels_first(y)  # (N, F, OH, OW), channels last in memory

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """dL/dx (``None`` when ``input_grad`` is false: the first layer needs no dL/dx)."""
        k, s, p, f = self.kernel_size, self.stride, self.pad, self.out_channels
        grad_y = channels_last(grad_out)  # (N, OH, OW, F)
        w_ext = self._extended_weights()
        grad_ext, grad_x = kernels.conv2d_backward(
            self._x, grad_y, w_ext, k, s, p, input_grad, self._saved
        )
        dw = grad_ext[:, :-1].reshape(f, k, k, -1).transpose(0, 3, 1, 2)  # (F, C, k, k)
        self.grads["W"] = np.ascontiguousarray(dw)
        self.grads["b"] = grad_ext[:, -1].copy()
        return None if grad_x is None else channels_first(grad_x)

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
        }


class MaxPool2D(Layer):
    """Max pooling: each output is the largest input of its ``size x size`` window.

    The derivative of ``max`` is 1 for the winning input and 0 for the others, so ``backward``
    routes each output gradient to the arg-max of its window only (recorded in ``forward`` when
    training; a prediction computes the maxima alone, and a ``backward`` after it finds them).
    Rows or columns left over when the window does not tile the input get no gradient.
    """

    takes_window_maximum = True

    def __init__(self, size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.size = size
        self.stride = stride or size

    def build(
        self, input_shape: Shape, rng: np.random.Generator, dtype: type = np.float32
    ) -> Shape:
        c, h, w = image_shape(self, input_shape)
        if h < self.size or w < self.size:
            raise ShapeError(f"{self.name}: a {self.size}x{self.size} window exceeds {h}x{w}")
        size, stride = self.size, self.stride
        return (c, window_output_size(h, size, stride), window_output_size(w, size, stride))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = channels_last(x)  # (N, H, W, C)
        if training:  # the maxima and where they were, for backward
            out, argmax = kernels.maxpool_forward(x, self.size, self.stride)  # (N, OH, OW, C)
            self._cache = (x.shape, argmax, None)
        else:  # prediction: the maxima alone (several times faster); x kept for ``inspect``
            out = kernels.maxpool_values(x, self.size, self.stride)
            self._cache = (x.shape, None, x)
        return channels_first(out)

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray:
        x_shape, argmax, x = self._cache
        if argmax is None:  # forward ran for a prediction: find where the maxima were now
            argmax = kernels.maxpool_forward(x, self.size, self.stride)[1]
        grad = channels_last(grad_out)
        return channels_first(
            kernels.maxpool_backward(grad, argmax, x_shape, self.size, self.stride)
        )

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "stride": self.stride}


class Dense(Layer):
    """Fully connected: ``y = x @ W + b`` with ``W`` of shape ``(in_features, out_features)``.

    backward: ``dW = x.T @ dy``, ``db = sum(dy over the batch)``, ``dx = dy @ W.T``.
    """

    def __init__(
        self, *sizes: int, in_features: int | None = None, out_features: int | None = None
    ) -> None:
        """``Dense(outputs)``, or ``Dense(inputs, outputs)`` to state the input size too."""
        super().__init__()
        if len(sizes) == 2:
            in_features, out_features = sizes
        elif len(sizes) == 1:
            (out_features,) = sizes
        elif sizes:
            raise ConfigError(f"Dense takes at most 2 sizes (in, out), not {sizes}")
        if out_features is None:
            raise ConfigError("Dense needs its number of outputs: Dense(10)")
        self.in_features = in_features  # None until build() sees the input
        self.out_features = out_features

    def build(
        self, input_shape: Shape, rng: np.random.Generator, dtype: type = np.float32
    ) -> Shape:
        if len(input_shape) != 1 or input_shape[0] != (self.in_features or input_shape[0]):
            expected = "(features,)" if self.in_features is None else f"({self.in_features},)"
            hint = " (put a Flatten() before it)" if len(input_shape) > 1 else ""
            raise ShapeError(f"{self.name}: expects {expected} inputs, got {input_shape}{hint}")
        self.in_features = input_shape[0]
        shape = (self.in_features, self.out_features)
        self.params["W"] = _he_normal(rng, shape, fan_in=self.in_features, dtype=dtype)
        self.params["b"] = np.zeros(self.out_features, dtype=dtype)
        return (self.out_features,)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._x = x
        return kernels.dense_forward(x, self.params["W"], self.params["b"])

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """dL/dx (``None`` when ``input_grad`` is false: the first layer needs no dL/dx)."""
        dw, db, grad_x = kernels.dense_backward(self._x, grad_out, self.params["W"], input_grad)
        self.grads["W"], self.grads["b"] = dw, db
        return grad_x

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features}


class ReLU(Layer):
    """``y = max(x, 0)``; its derivative is 1 where ``x > 0`` and 0 elsewhere."""

    elementwise_non_decreasing = True

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._y = kernels.relu_forward(x)  # same memory layout as x
        return self._y

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray:
        return kernels.relu_backward(grad_out, self._y)


class Flatten(Layer):
    """``(N, C, H, W) -> (N, C*H*W)``; backward reshapes the gradient back."""

    def build(
        self, input_shape: Shape, rng: np.random.Generator, dtype: type = np.float32
    ) -> Shape:
        return (math.prod(input_shape),)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray:
        return grad_out.reshape(self._shape)


class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability ``rate`` and scale the
    survivors by ``1 / (1 - rate)`` so the expected output equals the input; in eval mode it is the
    identity.  The mask comes from ``self.rng`` (the model's generator, set in ``build``)."""

    def __init__(self, rate: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), not {rate}")
        self.rate = rate
        self.rng = np.random.default_rng(0)

    def build(
        self, input_shape: Shape, rng: np.random.Generator, dtype: type = np.float32
    ) -> Shape:
        self.rng = rng
        return input_shape

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.rate
        self._mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.rate)
        return x * self._mask

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray:
        return grad_out if self._mask is None else grad_out * self._mask

    def config(self) -> dict[str, Any]:
        return {"rate": self.rate}


class BatchNorm(Layer):
    """Batch normalisation of each channel over the batch (and, for images, over every pixel).

    Training, per channel with the batch mean ``mu`` and variance ``var``::

        x_hat = (x - mu) / sqrt(var + eps)          y = gamma * x_hat + beta
        dx = (1 / sqrt(var + eps)) * (g - mean(g) - x_hat * mean(g * x_hat)),   g = dy * gamma

    Running averages of ``mu`` and ``var`` (momentum ``momentum``) replace them in eval mode, where
    the layer is a fixed affine map.  For images ``(N, C, H, W)`` every pixel of a channel is one
    more sample of it, so we view them as a ``(N*H*W, C)`` table and normalise its columns exactly
    as after a Dense layer (the view is free for the channels-last memory Conv2D produces).  The
    kernels (``kernels.batchnorm_*``) keep the input, not ``x_hat``, for the backward pass and
    recompute ``x_hat`` there: one array less to write and read back.
    """

    def __init__(
        self, num_features: int | None = None, momentum: float = 0.9, eps: float = 1e-5
    ) -> None:
        """``BatchNorm()`` learns its channel count in ``build``; ``BatchNorm(32)`` checks it."""
        super().__init__()
        self.num_features = num_features  # None until build() sees the input
        self.momentum = momentum
        self.eps = eps

    def build(
        self, input_shape: Shape, rng: np.random.Generator, dtype: type = np.float32
    ) -> Shape:
        if len(input_shape) not in (1, 3):
            raise ShapeError(
                f"{self.name}: expects (features,) or (C, H, W) inputs, got {input_shape}"
            )
        if self.num_features is not None and input_shape[0] != self.num_features:
            raise ShapeError(
                f"{self.name}: expects {self.num_features} channels, got {input_shape}"
            )
        c = self.num_features = input_shape[0]
        self.params["gamma"] = np.ones(c, dtype=dtype)
        self.params["beta"] = np.zeros(c, dtype=dtype)
        self.buffers["running_mean"] = np.zeros(c, dtype=dtype)
        self.buffers["running_var"] = np.ones(c, dtype=dtype)
        return input_shape

    @staticmethod
    def _as_table(x: np.ndarray) -> np.ndarray:
        """``(N, C)`` stays; ``(N, C, H, W)`` becomes ``(N*H*W, C)``: one row per sample."""
        if x.ndim == 2:
            return np.ascontiguousarray(x)
        return channels_last(x).reshape(-1, x.shape[1])

    @staticmethod
    def _from_table(table: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The inverse of ``_as_table`` (a view, channels-last in memory)."""
        if len(shape) == 2:
            return table
        n, c, h, w = shape
        return channels_first(table.reshape(n, h, w, c))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        table = self._as_table(x)  # (samples, C)
        if training:
            mean, var = kernels.column_mean_var(table)
            count = table.shape[0]
            m = self.momentum
            self.buffers["running_mean"] *= m
            self.buffers["running_mean"] += (1 - m) * mean
            self.buffers["running_var"] *= m
            self.buffers["running_var"] += (1 - m) * var * (count / max(count - 1, 1))
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        inv_std = 1.0 / np.sqrt(var + x.dtype.type(self.eps))
        gamma, beta = self.params["gamma"], self.params["beta"]
        self._cache = (table, mean, inv_std, training, x.shape)
        return self._from_table(
            kernels.batchnorm_forward(table, mean, inv_std, gamma, beta), x.shape
        )

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray:
        table, mean, inv_std, training, shape = self._cache
        grad = self._as_table(grad_out)  # (samples, C)
        gamma = self.params["gamma"]
        grad_x, self.grads["gamma"], self.grads["beta"] = kernels.batchnorm_backward(
            grad, table, mean, inv_std, gamma, training
        )
        return self._from_table(grad_x, shape)

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Conv2D, MaxPool2D, Dense, ReLU, Flatten, Dropout, BatchNorm)
}
