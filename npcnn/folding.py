"""Faster prediction: each BatchNorm folded into the Conv2D or Dense layer before it.

In eval mode a BatchNorm is a fixed affine map of each channel ``c`` (``mu``, ``var``: its
running statistics)::

    y_c = gamma_c * (z_c - mu_c) / sqrt(var_c + eps) + beta_c  =  s_c * z_c + (beta_c - s_c * mu_c)

with ``s_c = gamma_c / sqrt(var_c + eps)``.  When ``z`` comes straight from a Conv2D or a Dense
layer, ``z_c = W_c . x + b_c`` is itself affine in ``x``, and the two compose into one layer::

    W'_c = s_c * W_c        b'_c = s_c * (b_c - mu_c) + beta_c

(``W_c``: filter ``c`` of a Conv2D, column ``c`` of a Dense layer's ``(in, out)`` matrix).  The
folded model computes the same outputs, to float rounding, with one pass over the activations
less per BatchNorm: for the app's number reader (four BatchNorms), about a fifteenth of its
prediction time.

The copy is for prediction only.  Training it would train a different network, one without
BatchNorm, so it has no BatchNorm layers to train.
"""

from __future__ import annotations

import copy

import numpy as np

from .errors import ConfigError
from .layers import BatchNorm, Conv2D, Dense, Layer
from .model import Sequential


def fold_batchnorm(model: Sequential) -> Sequential:
    """A copy of the built ``model`` for prediction, each BatchNorm that directly follows a
    Conv2D or a Dense layer merged into that layer (see the module's docstring); any other
    BatchNorm stays as it is.  ``model`` itself is not changed."""
    if not model.built:
        raise ConfigError("fold_batchnorm needs a built model: build it or load one first")
    folded = copy.deepcopy(model)
    layers: list[Layer] = []
    shapes = []
    for layer, shape in zip(folded.layers, folded.output_shapes, strict=True):
        if isinstance(layer, BatchNorm) and layers and isinstance(layers[-1], (Conv2D, Dense)):
            merge_batchnorm(layers[-1], layer)
            continue
        layers.append(layer)
        shapes.append(shape)
    folded.layers, folded.output_shapes = layers, shapes
    return folded


def merge_batchnorm(layer: Conv2D | Dense, norm: BatchNorm) -> None:
    """Change ``layer``'s weights and bias so that it computes ``norm(layer(x))`` in eval mode
    (in float64, then back to the layer's dtype)."""
    gamma = norm.params["gamma"].astype(np.float64)
    mean = norm.buffers["running_mean"].astype(np.float64)
    var = norm.buffers["running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + norm.eps)  # s_c
    weights, bias = layer.params["W"], layer.params["b"]
    # the output channel is axis 0 of a Conv2D's (F, C, k, k) filters, axis 1 of a Dense (in, out)
    per_channel = scale[:, None, None, None] if isinstance(layer, Conv2D) else scale[None, :]
    new_bias = scale * (bias.astype(np.float64) - mean) + norm.params["beta"].astype(np.float64)
    layer.params["W"] = (weights.astype(np.float64) * per_channel).astype(weights.dtype)
    layer.params["b"] = new_bias.astype(bias.dtype)
