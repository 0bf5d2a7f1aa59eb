"""What share of a training epoch does augmentation cost, and how much of it does the background
thread hide?

    python benchmarks/augment_share.py [--arch shipped] [--batches 60] [--rounds 3] [--threads 1]

Alternates, in one process so that machine drift cancels:
1. the median time to augment one batch of 128 and the median time of one training step
   (forward + backward + Adam) on it: augmentation's share if it ran in line with training;
2. ``fit`` over the same images with augmentation (prepared in the background thread) and
   without: the time augmentation really adds to an epoch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import npcnn
from npcnn.batching import as_float_images
from npcnn.digits import architectures
from npcnn.digits.augment import AugmentConfig, augment_batch
from npcnn.digits.data import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="shipped")
    parser.add_argument("--batches", type=int, default=60, help="batches per fit() timing")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the fit timings")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    npcnn.set_threads(args.threads)
    (x, y), _ = load_mnist()
    count = 128 * args.batches
    x = as_float_images(x[:count, None])
    y = y[:count].astype(np.int64)
    config = AugmentConfig()
    model = architectures.build(args.arch)
    optimizer = npcnn.Adam()
    rng = np.random.default_rng(0)

    aug_ms, step_ms = [], []
    for i in range(40):
        batch = x[(i % args.batches) * 128 :][:128]
        labels = y[(i % args.batches) * 128 :][:128]
        t0 = time.perf_counter()
        augmented = augment_batch(batch, rng, config)
        t1 = time.perf_counter()
        model.train_step(augmented, labels, optimizer)
        t2 = time.perf_counter()
        if i >= 5:  # warm-up
            aug_ms.append(1e3 * (t1 - t0))
            step_ms.append(1e3 * (t2 - t1))
    aug, step = statistics.median(aug_ms), statistics.median(step_ms)
    print(f"{args.arch}, batch 128, {npcnn.get_backend()} backend, {args.threads} maths thread(s)")
    print(f"  augment one batch   {aug:7.2f} ms (median)")
    print(f"  train step          {step:7.2f} ms (median)")
    print(f"  augmentation's share if run in line: {100 * aug / (aug + step):.1f}% of epoch time")

    def augment(b: np.ndarray, r: np.random.Generator) -> np.ndarray:
        return augment_batch(b, r, config)

    with_aug, without = [], []
    for _ in range(args.rounds):
        for augmenting, times in ((True, with_aug), (False, without)):
            t0 = time.perf_counter()
            model.fit(
                x,
                y,
                epochs=1,
                batch_size=128,
                optimizer=optimizer,
                verbose=False,
                augment=augment if augmenting else None,
            )
            times.append(time.perf_counter() - t0)
    a, n = statistics.median(with_aug), statistics.median(without)
    print(
        f"  fit, {count} images: {a:.2f} s with augmentation (background thread), "
        f"{n:.2f} s without (medians of {args.rounds})"
    )
    print(f"  time augmentation adds to an epoch: {100 * (a - n) / a:.1f}%")


if __name__ == "__main__":
    main()
