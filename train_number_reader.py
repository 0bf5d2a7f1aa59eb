"""Train the number reader: the network that reads a number through a sliding window.

    python train_number_reader.py                 # -> weights/number_reader.npz (about 25 min)
    python train_number_reader.py --pictures 600 --epochs 1 --out /tmp/reader.npz   # a quick try

The training pictures are the project's own numbers (``number_set.make_number``) made from
MNIST's training digits outside the validation split (``number_set``'s "train" digits: the
development set's digits are never learnt from) and synthetic ones, with seeds of their own
(``PICTURE_SEED`` and up); every digit is augmented (tilt, slant, stroke, elastic wobble:
``--augment-strength``) before it is placed; each is cut into labelled windows exactly as
the reader cuts a picture (``number_windows.training_windows``).  Both cores make them.  A
separate set of pictures (``VAL_SEED``) gives the validation accuracy printed after each epoch.
How well the trained reader reads numbers: ``python evaluate_numbers.py --set dev``.  A new
reader needs its own number chooser: ``python tune_number_chooser.py`` (until then the app
ignores the old one, fitted for the previous reader, and says so in its log).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import npcnn
from npcnn.digits import number_windows
from npcnn.digits.architectures import ARCHITECTURES, build
from npcnn.digits.augment import augmenter
from npcnn.digits.number_set import CATEGORIES, make_number
from npcnn.io import save_model
from npcnn.optimizers import Adam, schedule_named

PICTURE_SEED = 10_000  # training picture i uses the seed (PICTURE_SEED + seed, i)
VAL_SEED = 20_000  # validation pictures likewise
DEFAULTS = {
    "pictures": 24_000,
    "val_pictures": 1_000,
    "epochs": 4,
    "arch": "shipped",
    "lr": 3e-3,
    "augment_strength": 1.0,
    "window_width": 28,
}


def windows_of_pictures(
    seed: int, first: int, count: int, strength: float, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The labelled windows (28 x ``width``) of pictures ``first .. first + count - 1`` of seed
    ``seed``, each digit augmented with ``augmenter(strength)`` (0: none) before it is placed."""
    augment = augmenter(strength)
    images, labels = [], []
    for index in range(first, first + count):
        rng = np.random.default_rng([seed, index])
        picture = make_number(rng, "train", CATEGORIES[index % len(CATEGORIES)], augment)
        x, y = number_windows.training_windows(picture, rng, width=width)
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def make_windows(
    seed: int, count: int, workers: int, strength: float = 0.0, width: int = number_windows.WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``count`` pictures, made in ``workers`` processes (the same for any number)."""
    parts = [
        (seed, first, min(500, count - first), strength, width) for first in range(0, count, 500)
    ]
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(windows_of_pictures, *zip(*parts, strict=True)))
    return np.concatenate([x for x, _ in results]), np.concatenate([y for _, y in results])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=DEFAULTS["pictures"])
    parser.add_argument("--val-pictures", type=int, default=DEFAULTS["val_pictures"])
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default=DEFAULTS["arch"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument(
        "--augment-strength",
        type=float,
        default=DEFAULTS["augment_strength"],
        help="how much each training digit is changed before it is placed (0 = not at all)",
    )
    parser.add_argument(
        "--window-width",
        type=int,
        default=DEFAULTS["window_width"],
        help="the windows' width in pixels (their height is 28): wider shows more neighbours",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes making the windows")
    parser.add_argument("--out", type=Path, default=Path("weights/number_reader.npz"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    x, y = make_windows(
        PICTURE_SEED + args.seed, args.pictures, args.workers, args.augment_strength,
        args.window_width,
    )  # fmt: skip
    x_val, y_val = make_windows(
        VAL_SEED + args.seed, args.val_pictures, args.workers, width=args.window_width
    )
    made = time.perf_counter() - started
    print(f"{len(x):,} training windows from {args.pictures:,} pictures, {len(x_val):,} for "
          f"validation, in {made:.0f} s; classes {np.bincount(y, minlength=11).tolist()}")  # fmt: skip

    model = build(args.arch, seed=args.seed, classes=11, width=args.window_width)
    steps = -(-len(x) // 128) * args.epochs
    history = npcnn.fit(
        model, x[:, None], y, epochs=args.epochs, batch_size=128,
        optimizer=Adam(lr=args.lr, weight_decay=1e-2),
        schedule=schedule_named("onecycle", args.lr, steps),
        loss_fn=npcnn.SoftmaxCrossEntropy(0.05),
        validation_data=(x_val[:, None], y_val), verbose=not args.quiet,
    )  # fmt: skip
    total = time.perf_counter() - started
    card = {
        "name": "number-reader",
        "purpose": "reads a number window by window (npcnn.digits.number_windows)",
        "arch": args.arch,
        "options": {
            k: getattr(args, k)
            for k in (
                "pictures",
                "val_pictures",
                "epochs",
                "lr",
                "augment_strength",
                "window_width",
                "seed",
            )
        },
        "training_windows": int(len(x)),
        "val_window_accuracy": round(float(history[-1]["val_accuracy"]), 5),
        "total_seconds": round(total, 1),
        "argv": sys.argv[1:] if argv is None else list(argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, args.out, card)
    print(f"saved {args.out}: validation window accuracy {card['val_window_accuracy']:.4f}, "
          f"{total / 60:.1f} min in all")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
