"""How fast is the augmentation?  Images per second, single-threaded, for the default config and for
each change on its own (applied to every image), plus the background batch generator.

    python benchmarks/bench_augment.py [--images 2048] [--repeats 5] [--json]

Uses real MNIST digits when the cache or another source has them, random blobs otherwise.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from npcnn.batching import as_float_images
from npcnn.digits.augment import AugmentConfig, augment_batch, augmented_batches
from npcnn.digits.errors import DataError

NOTHING = dict(
    rotation_p=0.0,
    zoom_p=0.0,
    shift_p=0.0,
    shear_p=0.0,
    elastic_p=0.0,
    thickness_p=0.0,
)

CONFIGS: dict[str, AugmentConfig] = {
    "default": AugmentConfig(),
    "none": AugmentConfig.none(),
    "rotation": AugmentConfig(**{**NOTHING, "rotation_p": 1.0}),
    "zoom": AugmentConfig(**{**NOTHING, "zoom_p": 1.0}),
    "shift": AugmentConfig(**{**NOTHING, "shift_p": 1.0}),
    "shear": AugmentConfig(**{**NOTHING, "shear_p": 1.0}),
    "affine (all four)": AugmentConfig(
        **{**NOTHING, "rotation_p": 1.0, "zoom_p": 1.0, "shift_p": 1.0, "shear_p": 1.0}
    ),
    "elastic": AugmentConfig(**{**NOTHING, "elastic_p": 1.0}),
    "thickness": AugmentConfig(**{**NOTHING, "thickness_p": 1.0}),
}


def sample_images(count: int) -> tuple[np.ndarray, str]:
    """``count`` MNIST training digits as float32 (count, 1, 28, 28), or random blobs."""
    try:
        from npcnn.digits.data import load_mnist

        (x_train, _), _ = load_mnist()
        return as_float_images(x_train[:count, None]), "MNIST"
    except DataError:
        rng = np.random.default_rng(0)
        return rng.random((count, 1, 28, 28), dtype=np.float32), "random"


def images_per_second(images: np.ndarray, config: AugmentConfig, repeats: int) -> float:
    """Median throughput of ``augment_batch`` over ``repeats`` runs, in batches of 128."""
    rng = np.random.default_rng(0)
    augment_batch(images[:128], rng, config)  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(images), 128):
            augment_batch(images[first : first + 128], rng, config)
        timings.append(time.perf_counter() - start)
    return len(images) / float(np.median(timings))


def generator_images_per_second(images: np.ndarray, prefetch: int, repeats: int) -> float:
    """Throughput of one pass of ``augmented_batches`` (default config, batch 128) when the
    consumer does nothing - what it can feed a training loop."""
    uint8_images = (images[:, 0] * 255).round().astype(np.uint8)
    labels = np.zeros(len(images), dtype=np.uint8)
    timings = []
    for seed in range(repeats):
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        for _ in augmented_batches(uint8_images, labels, 128, rng, prefetch=prefetch):
            pass
        timings.append(time.perf_counter() - start)
    return len(images) / float(np.median(timings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()

    images, kind = sample_images(args.images)
    results = {name: images_per_second(images, cfg, args.repeats) for name, cfg in CONFIGS.items()}
    for prefetch in (0, 2):
        results[f"augmented_batches prefetch={prefetch}"] = generator_images_per_second(
            images, prefetch, args.repeats
        )

    if args.json:
        print(json.dumps({"images": len(images), "data": kind, "img_per_s": results}, indent=2))
        return
    print(f"augmentation throughput, {len(images)} {kind} images, median of {args.repeats} runs")
    print(f"{'config':34s} {'images/s':>10s} {'us/image':>9s}")
    for name, rate in results.items():
        print(f"{name:34s} {rate:10,.0f} {1e6 / rate:9.1f}")


if __name__ == "__main__":
    main()
