"""Mini-batches for training: shuffling, optional augmentation, and prefetching in a thread.

All random numbers for an epoch (the order of the examples and one seed per batch for the
augmentation) are drawn up front, in the caller's thread.  The batches themselves may then be
prepared in a background thread, and the result does not depend on thread timing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from . import settings
from .errors import ConfigError

Batch = tuple[np.ndarray, np.ndarray]


def as_float_images(images: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Pixels as floats in [0, 1]: uint8 values 0..255 are divided by 255, floats only cast.

    The one place npcnn turns stored images (uint8, as MNIST ships them) into network input.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(dtype) / np.dtype(dtype).type(255)
    return images.astype(dtype, copy=False)


def shuffled_batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    shuffle: bool = True,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> Iterator[Batch]:
    """One epoch of ``(x_batch, y_batch)``; the last batch may be smaller."""
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
    starts = range(0, len(x), batch_size)
    seeds = rng.integers(0, 2**63 - 1, size=len(starts)) if augment is not None else None

    def generate() -> Iterator[Batch]:
        for k, start in enumerate(starts):
            index = order[start : start + batch_size]
            xb, yb = x[index], y[index]
            if augment is not None:
                xb = augment(xb, np.random.default_rng(seeds[k]))
            yield xb, yb

    return generate()


def prefetch(items: Iterable[Batch], depth: int = 2) -> Iterator[Batch]:
    """Iterate over ``items`` while a background thread prepares the next ``depth`` of them.

    NumPy and SciPy release the GIL in their inner loops, so preparing batches (augmentation)
    overlaps with the training step; the thread runs at a lower priority than the maths
    (``settings.yield_to_the_maths_threads``).  Exceptions in the producer are re-raised here.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def hand_over(item: object) -> bool:
        """Queue ``item`` unless told to stop; True if it was delivered."""
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        settings.yield_to_the_maths_threads()  # see there: batches are made in the maths' pauses
        try:
            for item in items:
                if not hand_over(item):
                    return
            hand_over(done)
        except BaseException as error:  # handed to the consumer
            hand_over(error)

    worker = threading.Thread(target=produce, daemon=True, name="npcnn-prefetch")
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # also when the consumer leaves early: stop the worker and wait for it
        stop.set()
        worker.join(timeout=5.0)
