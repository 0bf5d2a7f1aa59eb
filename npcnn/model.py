"""``Sequential``: a stack of layers, run forward to predict and backward to learn.

Training one batch is three lines of calculus (``npcnn.training.train_step``)::

    logits = model.forward(x, training=True)        # each layer, first to last
    loss = loss_fn(logits, y)                       # softmax cross-entropy
    model.backward(loss_fn.backward())              # each layer's backward, last to first
    optimizer.step(params, grads)                   # e.g. Adam

``model.fit`` / ``evaluate`` / ``train_step`` are the Keras-style doors to ``npcnn.training``,
which adds batching, shuffling, augmentation, a progress bar, validation and callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import training
from .batching import as_float_images
from .errors import ShapeError
from .layers import Layer, Shape
from .losses import softmax


@dataclass
class Inspection:
    """What ``Sequential.inspect`` saw for a batch of ``N`` examples."""

    logits: np.ndarray  # (N, classes): the scores before softmax
    activations: list[tuple[str, np.ndarray]]  # each layer's name and output, in listed order
    class_index: np.ndarray  # (N,): the class whose score was differentiated
    input_gradient: np.ndarray  # like the input: d logit[class_index] / d x


def relu_then_max_pool(first: Layer, second: Layer) -> bool:
    """Whether ``second(first(x))`` may run as ``first(second(x))``: an element-wise,
    non-decreasing function (ReLU) followed by max pooling.  ``max(f(a), f(b)) = f(max(a, b))``
    for any non-decreasing ``f``, so the order gives exactly the same output, and where the two
    orders route a gradient differently the ReLU's derivative is 0 (all inputs were <= 0)."""
    return first.elementwise_non_decreasing and second.takes_window_maximum


class Sequential:
    """Layers applied one after the other.

    >>> from npcnn.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense
    >>> model = Sequential([Conv2D(8, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(10)])
    >>> model.predict(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)

    The layers are built (their parameters created, their input sizes inferred) for
    ``input_shape`` (no batch axis), or, when it is not given, for the first input the model sees.
    """

    def __init__(
        self,
        layers: list[Layer],
        input_shape: Shape | None = None,
        seed: int = 0,
        dtype: type = np.float32,
    ) -> None:
        self.layers = list(layers)
        self.input_shape: Shape | None = None
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.metadata: dict[str, Any] = {}
        self.output_shapes: list[Shape] = []
        counts: dict[str, int] = {}
        for layer in self.layers:
            kind = type(layer).__name__.lower()
            layer.name = kind if kind not in counts else f"{kind}_{counts[kind]}"
            counts[kind] = counts.get(kind, 0) + 1
        if input_shape is not None:
            self.build(input_shape)

    def build(self, input_shape: Shape) -> None:
        """Create every layer's parameters for inputs of ``input_shape`` (no batch axis)."""
        if self.input_shape is not None:
            raise ShapeError(f"the model is already built for inputs of shape {self.input_shape}")
        shape = self.input_shape = tuple(int(n) for n in input_shape)
        for layer in self.layers:
            shape = layer.build(shape, self.rng, self.dtype.type)
            self.output_shapes.append(shape)

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    # ----------------------------------------------------------------- forward / backward
    def execution_order(self) -> list[int]:
        """The indices of the layers in the order ``forward`` runs them.

        That is the listed order, except that a ReLU directly followed by a MaxPool2D runs after
        it (see ``relu_then_max_pool``): the ReLU then touches only the pooled values, a quarter
        of them for 2x2 pooling.  Every layer's output as listed is still available from
        ``activations`` and ``inspect``.
        """
        order = list(range(len(self.layers)))
        i = 0
        while i < len(order) - 1:
            if relu_then_max_pool(self.layers[i], self.layers[i + 1]):
                order[i], order[i + 1] = i + 1, i
                i += 2
            else:
                i += 1
        return order

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """The logits (scores before softmax) for a batch ``x``."""
        for i in self.execution_order():
            x = self.layers[i].forward(x, training)
        return x

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Back-propagate dL/dlogits through every layer; returns dL/dx for the input.

        With ``input_grad=False`` (training: nothing uses dL/dx of the input) the first layer
        computes only its weight gradients, skipping a matrix product as large as its forward
        pass, and ``None`` is returned.
        """
        order = self.execution_order()
        for i in reversed(order):
            grad = self.layers[i].backward(grad, input_grad=input_grad or i != order[0])
        return grad

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
        """``(name, array, gradient)`` for every trainable array, in a fixed order."""
        return [
            (f"{i}.{layer.name}.{key}", value, layer.grads.get(key))
            for i, layer in enumerate(self.layers)
            for key, value in layer.params.items()
        ]

    def parameter_count(self) -> int:
        return sum(layer.parameter_count() for layer in self.layers)

    # ----------------------------------------------------------------- training (npcnn.training)
    def fit(self, x: np.ndarray, y: np.ndarray, **options: Any) -> list[dict[str, float]]:
        """Train on ``(x, y)``; one dict of metrics per epoch.  See ``npcnn.training.fit``."""
        return training.fit(self, x, y, **options)

    def train_step(self, x: np.ndarray, y: np.ndarray, optimizer: Any, loss_fn: Any = None):
        """One update on one batch; ``(loss, correct)``.  See ``npcnn.training.train_step``."""
        return training.train_step(self, x, y, optimizer, loss_fn)

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> dict[str, float]:
        """Mean loss and accuracy on ``(x, y)``, eval mode.  See ``npcnn.training.evaluate``."""
        return training.evaluate(self, x, y, batch_size)

    # ----------------------------------------------------------------- inference
    def as_input(self, x: np.ndarray) -> np.ndarray:
        """Check the shape and convert to the model's float dtype (uint8 is scaled to [0, 1]).

        An unbuilt model is built here, for the shape of ``x`` without its batch axis.
        """
        x = np.asarray(x)
        if not self.built:
            if x.ndim < 2:
                raise ShapeError(f"expected a batch of inputs (N, ...), got shape {x.shape}")
            self.build(x.shape[1:])
        if x.ndim == len(self.input_shape):  # one example without the batch axis
            x = x[None]
        if x.shape[1:] != self.input_shape:
            raise ShapeError(
                f"expected inputs of shape (N, {', '.join(map(str, self.input_shape))})"
                f", got {x.shape}"
            )
        return as_float_images(x, self.dtype.type)

    def _batches(self, x: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size]

    def predict_logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits for ``x`` in eval mode, computed in batches."""
        x = self.as_input(x)
        if len(x) == 0:
            return np.zeros((0, *self.output_shapes[-1]), dtype=self.dtype)
        if len(x) <= batch_size:  # one batch: nothing to concatenate
            return self.forward(x)
        return np.concatenate([self.forward(b) for b in self._batches(x, batch_size)])

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, classes)`` (softmax of the logits), eval mode."""
        return softmax(self.predict_logits(x, batch_size))

    def inspect(self, x: np.ndarray, class_index: int | None = None) -> Inspection:
        """Look inside the model: one forward pass and one backward pass, eval mode.

        Returns the logits, every layer's output as listed (its feature maps for a convolution),
        and the saliency ``d logit[class] / d x``: the gradient of one class's score with
        respect to each input value.  ``class_index`` picks the class; ``None`` takes each
        example's highest-scoring class.

        The layers run in their listed order here (not ``execution_order``), so that each
        output is the one the listed layer computes.  Not thread-safe (the layers keep what
        backward needs between the two passes): guard it with a lock in a server.
        """
        x = self.as_input(x)
        outputs: list[tuple[str, np.ndarray]] = []
        out = x
        for layer in self.layers:
            out = layer.forward(out, training=False)
            outputs.append((layer.name, np.ascontiguousarray(out)))
        logits = outputs[-1][1]
        if class_index is None:
            classes = logits.argmax(axis=1)
        else:
            classes = np.full(len(x), class_index, dtype=np.int64)
        grad = np.zeros_like(logits)
        grad[np.arange(len(x)), classes] = 1.0  # d logit[class] / d logits
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return Inspection(logits, outputs, classes, np.ascontiguousarray(grad))

    def input_gradient(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """d logit[class_index] / d x, eval mode: a saliency map when ``x`` is one image."""
        return self.inspect(x, class_index).input_gradient

    def logits_and_features(self, x: np.ndarray, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """The logits for a batch ``x`` (eval mode) and, from the same pass, the output of the
        layer at index ``layer`` (e.g. the last hidden layer's: what the model "sees" in each
        example, for another model to learn from).  The layer must not be a ReLU that runs
        after its MaxPool (``execution_order``): its own output is never computed."""
        order = self.execution_order()
        if order[layer] != layer:
            raise ValueError(f"layer {layer} runs fused with its neighbour; take another one")
        x = self.as_input(x)
        features = None
        for i in order:
            x = self.layers[i].forward(x, training=False)
            if i == layer:
                features = np.array(x, copy=True)
        assert features is not None
        return x, features

    def activations(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Every layer's name and output for ``x``, eval mode (feature maps for conv layers)."""
        x = self.as_input(x)
        out = []
        for layer in self.layers:
            x = layer.forward(x, training=False)
            out.append((layer.name, np.ascontiguousarray(x)))
        return out

    # ----------------------------------------------------------------- description, files
    def summary(self, print_fn: Callable[[str], None] = print) -> str:
        """A table of layers, output shapes and parameter counts (like Keras); also returned."""
        if not self.built:
            raise ShapeError("summary() needs a built model: pass input_shape, or call build()")
        rows = [("Layer (type)", "Output shape", "Params")]
        for layer, shape in zip(self.layers, self.output_shapes, strict=True):
            rows.append(
                (
                    f"{layer.name} ({type(layer).__name__})",
                    str((None, *shape)),
                    f"{layer.parameter_count():,}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        line = "-" * (sum(widths) + 6)

        def fmt(r: tuple[str, str, str]) -> str:
            return f"{r[0]:<{widths[0]}}   {r[1]:<{widths[1]}}   {r[2]:>{widths[2]}}"

        text = "\n".join(
            [line, fmt(rows[0]), line.replace("-", "=")]
            + [fmt(r) for r in rows[1:]]
            + [line, f"Total params: {self.parameter_count():,}", line]
        )
        print_fn(text)
        return text

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n    {inner},\n], input_shape={self.input_shape})"
