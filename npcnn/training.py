"""Training: one step, the loop over epochs (``fit``), evaluation, and callbacks.

One step on a batch ``(x, y)`` is the whole of learning::

    logits = model.forward(x, training=True)          # (N, classes)
    loss = loss_fn.forward(logits, y)                 # mean softmax cross-entropy
    model.backward(loss_fn.backward(), input_grad=False)   # every layer's dL/dparam
    optimizer.step(params, grads)                     # e.g. Adam, in place

``fit`` repeats it over shuffled mini-batches for some epochs.  Augmentation of the next batches
runs in a background thread while this one trains (``batching.prefetch``); every random number is
drawn from the model's generator in a fixed order, so a seeded run is reproducible and a run
resumed from a checkpoint (``npcnn.checkpoints``) continues exactly.

A callback is any function ``callback(model, epoch, metrics)`` called after each epoch, with the
epoch's metrics (loss, accuracy, learning rate, seconds, images/s, and the validation metrics).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import settings
from .batching import prefetch, shuffled_batches
from .errors import ShapeError
from .losses import SoftmaxCrossEntropy
from .optimizers import Adam, Optimizer

if TYPE_CHECKING:
    from .model import Sequential

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Callback = Callable[["Sequential", int, dict[str, float]], None]


def train_step(
    model: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    optimizer: Optimizer,
    loss_fn: SoftmaxCrossEntropy | None = None,
) -> tuple[float, int]:
    """One update on one batch; returns (mean loss, number of correct predictions)."""
    loss_fn = loss_fn or SoftmaxCrossEntropy()
    logits = model.forward(x, training=True)
    loss = loss_fn.forward(logits, y)
    model.backward(loss_fn.backward(), input_grad=False)
    _, params, grads = zip(*model.parameters(), strict=True)
    optimizer.step(params, grads)
    return loss, int((logits.argmax(axis=1) == y).sum())


def evaluate(
    model: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 500
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy on ``(x, y)``, eval mode."""
    return score_logits(model.predict_logits(x, batch_size), y)


def score_logits(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``logits`` (N, classes) for the labels ``y``."""
    y = np.asarray(y, dtype=np.int64)
    loss = SoftmaxCrossEntropy().forward(logits, y)
    return {"loss": loss, "accuracy": float((logits.argmax(axis=1) == y).mean())}


def fit(
    model: Sequential,
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
    callbacks: Sequence[Callback] = (),
    verbose: bool = True,
) -> list[dict[str, float]]:
    """Train ``model`` for epochs ``initial_epoch + 1 .. epochs``; one dict of metrics per epoch.

    ``x`` is float (N, C, H, W) (uint8 images are scaled to [0, 1]); ``y`` holds class indices.
    ``augment(batch, rng)`` transforms each training batch (run in a background thread).
    ``schedule(step)`` sets the learning rate before each update.  Randomness (shuffling,
    augmentation, dropout) comes from ``model.rng``, so a seeded model trains reproducibly, and
    ``initial_epoch`` with a restored model and optimiser resumes a run exactly.
    """
    x = model.as_input(x)
    y = np.asarray(y, dtype=np.int64)
    if len(x) != len(y):
        raise ShapeError(f"x has {len(x)} examples but y has {len(y)}")
    optimizer = optimizer or Adam()
    loss_fn = loss_fn or SoftmaxCrossEntropy()
    settings.keep_freed_memory_for_reuse()  # training allocates big arrays every step
    history: list[dict[str, float]] = []
    for epoch in range(initial_epoch, epochs):
        metrics = _train_epoch(model, x, y, batch_size, optimizer, schedule, loss_fn, shuffle,
                               augment, f"epoch {epoch + 1}/{epochs}", verbose)  # fmt: skip
        metrics["epoch"] = epoch + 1
        if validation_data is not None:
            val = evaluate(model, *validation_data)
            metrics["val_loss"], metrics["val_accuracy"] = val["loss"], val["accuracy"]
        if verbose:
            print(describe_epoch(metrics), flush=True)
        history.append(metrics)
        for callback in callbacks:
            callback(model, epoch + 1, metrics)
    return history


def _train_epoch(
    model: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    optimizer: Optimizer,
    schedule: Callable[[int], float] | None,
    loss_fn: SoftmaxCrossEntropy,
    shuffle: bool,
    augment: Augment | None,
    title: str,
    verbose: bool,
) -> dict[str, float]:
    """One pass over the data in mini-batches, with a progress bar; the epoch's metrics."""
    started = time.perf_counter()
    batches = shuffled_batches(x, y, batch_size, model.rng, shuffle, augment)
    total_loss, correct, seen = 0.0, 0, 0
    with ProgressBar(len(x), title, verbose) as bar:
        for xb, yb in prefetch(batches, depth=3):
            if schedule is not None:
                optimizer.lr = schedule(optimizer.t)
            loss, hits = train_step(model, xb, yb, optimizer, loss_fn)
            total_loss += loss * len(yb)
            correct, seen = correct + hits, seen + len(yb)
            rate = seen / max(time.perf_counter() - started, 1e-9)
            bar.update(len(yb), loss=total_loss / seen, acc=correct / seen, img_s=rate)
    seconds = time.perf_counter() - started
    return {
        "loss": total_loss / seen,
        "accuracy": correct / seen,
        "lr": optimizer.lr,
        "seconds": seconds,
        "images_per_second": seen / seconds,
    }


class ProgressBar:
    """A tqdm progress bar when ``enabled`` and tqdm is installed; otherwise silent."""

    def __init__(self, total: int, title: str, enabled: bool) -> None:
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=title, unit="img", leave=False, mininterval=0.5)
            except ImportError:
                pass

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, count: int, **figures: Any) -> None:
        """Advance by ``count`` images and show ``figures`` (loss, accuracy, ...) beside the bar."""
        if self.bar is not None:
            self.bar.update(count)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in figures.items()}, refresh=False)


def describe_epoch(metrics: dict[str, float]) -> str:
    """One line about an epoch: its loss, accuracy, time, speed and validation figures."""
    text = (
        f"epoch {metrics['epoch']}: loss {metrics['loss']:.4f} acc {metrics['accuracy']:.4f}"
        f" | {metrics['seconds']:.1f}s {metrics['images_per_second']:.0f} img/s"
        f" lr {metrics['lr']:.2e}"
    )
    if "val_accuracy" in metrics:
        text += f" | val_loss {metrics['val_loss']:.4f} val_acc {metrics['val_accuracy']:.4f}"
    return text
