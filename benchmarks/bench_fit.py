"""Training as ``train_model.py`` runs it: ``fit`` with augmentation prepared in the background
thread, on MNIST, batch 128; images per second of whole epochs.

    python benchmarks/bench_fit.py [--arch shipped] [--threads 1 2] [--images 7680] [--epochs 3]
    python benchmarks/bench_fit.py --tree /tmp/before ...     # another checkout's npcnn

``bench_train.py`` times the maths alone; this adds what a real run adds: shuffling, the
augmentation thread (about 5 ms of one core a batch) sharing the two cores with the maths
threads, and ``fit``'s own work.  Each ``--threads`` value is one line: the median epoch over
``--epochs`` epochs (after one untimed epoch), in the same process, one after the other.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="shipped")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--images", type=int, default=128 * 60, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per thread count")
    parser.add_argument(
        "--augment",
        choices=["background", "inline", "none"],
        default="background",
        help="as fit does it (a background thread), in the training thread before each step, "
        "or not at all",
    )
    parser.add_argument("--tree", help="import npcnn from this checkout instead")
    args = parser.parse_args()
    if args.tree:
        sys.path.insert(0, args.tree)
    import npcnn
    from npcnn.batching import as_float_images
    from npcnn.digits import architectures
    from npcnn.digits.augment import AugmentConfig, augment_batch
    from npcnn.digits.data import load_mnist

    (x, y), _ = load_mnist()
    x = as_float_images(x[: args.images, None])
    y = y[: args.images].astype(np.int64)
    config = AugmentConfig()

    def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return augment_batch(batch, rng, config)

    def inline_epoch(model, optimizer) -> None:
        """fit's work without its background thread: augment, then step, batch after batch."""
        order = model.rng.permutation(len(x))
        for first in range(0, len(x), 128):
            chosen = order[first : first + 128]
            model.train_step(augment(x[chosen], model.rng), y[chosen], optimizer)

    print(
        f"{args.arch}, {npcnn.get_backend()}, {args.images} images a epoch, augmentation "
        f"{args.augment} ({npcnn.__file__})"
    )
    for threads in args.threads:
        npcnn.set_threads(threads)
        model = architectures.build(args.arch, seed=0)
        optimizer = npcnn.Adam(1e-3)
        seconds = []
        for epoch in range(args.epochs + 1):
            started = time.perf_counter()
            if args.augment == "inline":
                inline_epoch(model, optimizer)
            else:
                model.fit(
                    x,
                    y,
                    epochs=1,
                    batch_size=128,
                    optimizer=optimizer,
                    verbose=False,
                    augment=augment if args.augment == "background" else None,
                )
            if epoch:  # the first epoch compiles or loads the kernels
                seconds.append(time.perf_counter() - started)
        rate = args.images / statistics.median(seconds)
        print(f"  {threads} maths thread(s): {rate:8,.0f} img/s (median of {args.epochs} epochs)")


if __name__ == "__main__":
    main()
