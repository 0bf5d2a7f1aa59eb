"""``Sequential``: a stack of layers with Keras-like ``fit`` / ``evaluate`` / ``predict`` / ``summary``.

Training one batch is three lines of calculus::

    logits = model.forward(x, training=True)        # each layer, first to last
    loss = loss_fn(logits, y)                       # softmax cross-entropy
    model.backward(loss_fn.backward())              # each layer's backward, last to first
    optimizer.step(params, grads)                   # e.g. Adam

``fit`` adds batching, shuffling, augmentation (prepared in a background thread so it overlaps
with the maths), a progress bar and validation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import kernels
from .batching import as_float_images, prefetch, shuffled_batches
from .layers import Conv2D, Dense, Layer, MaxPool2D, ReLU, Shape
from .losses import SoftmaxCrossEntropy, softmax
from .optimizers import Adam, Optimizer

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
EpochCallback = Callable[["Sequential", int, dict[str, float]], None]


@dataclass
class Inspection:
    """What ``Sequential.inspect`` saw for a batch of ``N`` examples."""

    logits: np.ndarray  # (N, classes): the scores before softmax
    activations: list[tuple[str, np.ndarray]]  # each layer's name and output, in listed order
    class_index: np.ndarray  # (N,): the class whose score was differentiated
    input_gradient: np.ndarray  # like the input: d logit[class_index] / d x


class Sequential:
    """Layers applied one after the other.

    >>> from npcnn.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense
    >>> model = Sequential([Conv2D(1, 8, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(8 * 13 * 13, 10)])
    >>> model.predict(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)
    """

    def __init__(
        self,
        layers: list[Layer],
        input_shape: Shape = (1, 28, 28),
        seed: int = 0,
        dtype: type = np.float32,
    ) -> None:
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.metadata: dict[str, Any] = {}
        self.output_shapes: list[Shape] = []
        counts: dict[str, int] = {}
        shape = self.input_shape
        for layer in self.layers:
            kind = type(layer).__name__.lower()
            layer.name = kind if kind not in counts else f"{kind}_{counts[kind]}"
            counts[kind] = counts.get(kind, 0) + 1
            shape = layer.build(shape, self.rng, self.dtype.type)
            self.output_shapes.append(shape)

    # ----------------------------------------------------------------- forward / backward
    def execution_order(self) -> list[int]:
        """The indices of the layers in the order ``forward`` runs them.

        That is the listed order, except that a ReLU directly followed by a MaxPool2D runs after
        it: ``maxpool(relu(x)) == relu(maxpool(x))`` exactly (both are monotone, and the ReLU's
        gradient is 0 wherever the order would make a difference), and the ReLU then touches only
        the pooled values, a quarter of them for 2x2 pooling.  Every layer's output as listed is
        still available from ``activations``.
        """
        order = list(range(len(self.layers)))
        i = 0
        while i < len(order) - 1:
            if isinstance(self.layers[i], ReLU) and isinstance(self.layers[i + 1], MaxPool2D):
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

    def backward(self, grad: np.ndarray) -> np.ndarray:
        """Back-propagate dL/dlogits through every layer; returns dL/dx for the input."""
        for i in reversed(self.execution_order()):
            grad = self.layers[i].backward(grad)
        return grad

    def _backward_for_training(self, grad: np.ndarray) -> None:
        """``backward`` without dL/dx of the input, which training never uses.

        A first Conv2D or Dense layer then computes only its weight gradients, skipping a
        matrix product (and for Conv2D a ``col2im``) as large as its forward pass.
        """
        first, *rest = self.execution_order()
        for i in reversed(rest):
            grad = self.layers[i].backward(grad)
        if isinstance(self.layers[first], (Conv2D, Dense)):
            self.layers[first].backward(grad, input_grad=False)
        else:
            self.layers[first].backward(grad)

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
        """``(name, array, gradient)`` for every trainable array, in a fixed order."""
        return [
            (f"{i}.{layer.name}.{key}", value, layer.grads.get(key))
            for i, layer in enumerate(self.layers)
            for key, value in layer.params.items()
        ]

    def parameter_count(self) -> int:
        return sum(layer.parameter_count() for layer in self.layers)

    # ----------------------------------------------------------------- training
    def train_step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        optimizer: Optimizer,
        loss_fn: SoftmaxCrossEntropy | None = None,
    ) -> tuple[float, int]:
        """One update on one batch; returns (loss, number of correct predictions)."""
        loss_fn = loss_fn or SoftmaxCrossEntropy()
        logits = self.forward(x, training=True)
        loss = loss_fn.forward(logits, y)
        self._backward_for_training(loss_fn.backward())
        _, params, grads = zip(*self.parameters(), strict=True)
        optimizer.step(params, grads)
        return loss, int((logits.argmax(axis=1) == y).sum())

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int = 1,
        batch_size: int = 128,
        optimizer: Optimizer | None = None,
        schedule: Callable[[int], float] | None = None,
        loss_fn: SoftmaxCrossEntropy | None = None,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        shuffle: bool = True,
        augment: Augment | None = None,
        initial_epoch: int = 0,
        on_epoch_end: EpochCallback | None = None,
        verbose: bool = True,
    ) -> list[dict[str, float]]:
        """Train for ``epochs`` passes over ``(x, y)``; returns one dict of metrics per epoch.

        ``x`` is float (N, C, H, W) (uint8 images are scaled to [0, 1]); ``y`` holds class indices.
        ``augment(batch, rng)`` transforms each training batch (run in a background thread).
        ``schedule(step)`` sets the learning rate before each update.  Randomness (shuffling,
        augmentation, dropout) comes from ``self.rng``, so a seeded model trains reproducibly,
        and ``initial_epoch`` with a restored model and optimiser resumes a run exactly.
        """
        x = self._as_input(x)
        y = np.asarray(y, dtype=np.int64)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        optimizer = optimizer or Adam()
        kernels.keep_freed_memory_for_reuse()  # training allocates big arrays every step
        loss_fn = loss_fn or SoftmaxCrossEntropy()
        history: list[dict[str, float]] = []
        for epoch in range(initial_epoch, epochs):
            started = time.perf_counter()
            batches = shuffled_batches(x, y, batch_size, self.rng, shuffle, augment)
            total_loss, correct, seen = 0.0, 0, 0
            with _progress(len(x), f"epoch {epoch + 1}/{epochs}", verbose) as bar:
                for xb, yb in prefetch(batches, depth=3):
                    if schedule is not None:
                        optimizer.lr = schedule(optimizer.t)
                    loss, hits = self.train_step(xb, yb, optimizer, loss_fn)
                    total_loss += loss * len(yb)
                    correct, seen = correct + hits, seen + len(yb)
                    rate = seen / max(time.perf_counter() - started, 1e-9)
                    bar.update(len(yb))
                    bar.set_postfix(
                        loss=f"{total_loss / seen:.4f}",
                        acc=f"{correct / seen:.4f}",
                        img_s=f"{rate:.0f}",
                        refresh=False,
                    )
            metrics = {
                "epoch": epoch + 1,
                "loss": total_loss / seen,
                "accuracy": correct / seen,
                "lr": optimizer.lr,
                "seconds": time.perf_counter() - started,
            }
            metrics["images_per_second"] = seen / metrics["seconds"]
            if validation_data is not None:
                val = self.evaluate(*validation_data)
                metrics["val_loss"], metrics["val_accuracy"] = val["loss"], val["accuracy"]
            if verbose:
                print(_describe(metrics), flush=True)
            history.append(metrics)
            if on_epoch_end is not None:
                on_epoch_end(self, epoch + 1, metrics)
        return history

    # ----------------------------------------------------------------- inference
    def _as_input(self, x: np.ndarray) -> np.ndarray:
        """Check the shape and convert to the model's float dtype (uint8 is scaled to [0, 1])."""
        x = np.asarray(x)
        if x.ndim == len(self.input_shape):  # one example without the batch axis
            x = x[None]
        if x.shape[1:] != self.input_shape:
            raise ValueError(
                f"expected inputs of shape (N, {', '.join(map(str, self.input_shape))})"
                f", got {x.shape}"
            )
        return as_float_images(x, self.dtype.type)

    def _batches(self, x: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size]

    def predict_logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits for ``x`` in eval mode, computed in batches."""
        x = self._as_input(x)
        if len(x) == 0:
            return np.zeros((0, *self.output_shapes[-1]), dtype=self.dtype)
        if len(x) <= batch_size:  # one batch: nothing to concatenate
            return self.forward(x)
        return np.concatenate([self.forward(b) for b in self._batches(x, batch_size)])

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, classes)`` (softmax of the logits), eval mode."""
        return softmax(self.predict_logits(x, batch_size))

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> dict[str, float]:
        """Mean cross-entropy loss and accuracy on ``(x, y)``, eval mode."""
        logits = self.predict_logits(x, batch_size)
        y = np.asarray(y, dtype=np.int64)
        loss = SoftmaxCrossEntropy().forward(logits, y)
        return {"loss": loss, "accuracy": float((logits.argmax(axis=1) == y).mean())}

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
        x = self._as_input(x)
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

    def activations(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Every layer's name and output for ``x``, eval mode (feature maps for conv layers)."""
        x = self._as_input(x)
        out = []
        for layer in self.layers:
            x = layer.forward(x, training=False)
            out.append((layer.name, np.ascontiguousarray(x)))
        return out

    # ----------------------------------------------------------------- description, files
    def summary(self, print_fn: Callable[[str], None] = print) -> str:
        """A table of layers, output shapes and parameter counts (like Keras); also returned."""
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

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
        """Write the architecture, weights and ``metadata`` to one ``.npz`` (see ``npcnn.io``)."""
        from .io import save_model

        save_model(self, path, metadata)

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n    {inner},\n], input_shape={self.input_shape})"


class _progress:
    """A tqdm progress bar when verbose and tqdm is installed; otherwise does nothing."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="img", leave=False, mininterval=0.5)
            except ImportError:
                pass

    def __enter__(self) -> _progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def set_postfix(self, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**kwargs)


def _describe(metrics: dict[str, float]) -> str:
    text = (
        f"epoch {metrics['epoch']}: loss {metrics['loss']:.4f} acc {metrics['accuracy']:.4f}"
        f" | {metrics['seconds']:.1f}s {metrics['images_per_second']:.0f} img/s"
        f" lr {metrics['lr']:.2e}"
    )
    if "val_accuracy" in metrics:
        text += f" | val_loss {metrics['val_loss']:.4f} val_acc {metrics['val_accuracy']:.4f}"
    return text
