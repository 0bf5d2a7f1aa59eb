"""Train the sequence head: the network that reads the number readers' windows as one sequence.

    python train_number_sequence.py                 # -> weights/number_sequence.npz
    python train_number_sequence.py --pictures 400 --epochs 1 --out /tmp/sequence.npz  # a try

The two number readers (``weights/number_reader.npz`` and ``number_reader_2.npz``, trained first
by ``train_number_reader.py``) read the windows of the project's own number pictures
(``number_set.make_number`` with the "train" digits: MNIST's training digits outside the
validation split, and synthetic ones, each augmented before it is placed) made with seeds of
their own (``PICTURE_SEED``, not the readers' pictures); both cores make them.  The head
(``number_sequence.head_layers``) learns from their features with the CTC loss on the numbers'
digit strings: where each digit lies is never given.  Validation: exact-number accuracy of the
best path on pictures of ``VAL_SEED``.  How the app then reads numbers: ``python
evaluate_numbers.py --set dev``; a new head needs its own number chooser (``python
tune_number_chooser.py``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import npcnn
from npcnn.digits import number_sequence, number_windows
from npcnn.digits.augment import augmenter
from npcnn.digits.number_set import CATEGORIES, make_number
from npcnn.digits.preprocess.ink import find_ink
from npcnn.digits.recogniser import model_version
from npcnn.io import save_model
from npcnn.losses import CTCLoss
from npcnn.model import Sequential
from npcnn.optimizers import Adam

PICTURE_SEED = 30_000  # training picture i uses the seed (PICTURE_SEED + seed, i)
VAL_SEED = 40_000
READERS = ("number_reader.npz", "number_reader_2.npz")
DEFAULTS = {"pictures": 80_000, "val_pictures": 1_000, "epochs": 8, "lr": 1e-3, "batch": 32}


def load_readers(folder: Path) -> list[Sequential]:
    """Both number readers, BatchNorm folded, as the app runs them."""
    return [npcnn.fold_batchnorm(npcnn.load(folder / name)) for name in READERS]


def features_of_pictures(
    folder: str, seed: int, first: int, count: int, strength: float
) -> tuple[list[np.ndarray], list[str]]:
    """The window features (``number_sequence.window_features``, float16) and the digit string
    of pictures ``first .. first + count - 1`` of ``seed``, each digit augmented with
    ``augmenter(strength)`` (0: none) before it is placed."""
    npcnn.set_threads(1)
    readers = load_readers(Path(folder))
    width = number_windows.WINDOW
    empty = number_sequence.empty_window_features(readers, width)
    augment = augmenter(strength)
    features, texts = [], []
    for index in range(first, first + count):
        rng = np.random.default_rng([seed, index])
        picture = make_number(rng, "train", CATEGORIES[index % len(CATEGORIES)], augment)
        ink = find_ink(picture.pixels)
        _, _, windows, kept = number_windows.read_line(ink.pixels, width)
        sequence = number_sequence.line_features(readers, windows, kept, empty)
        features.append(sequence.astype(np.float16))
        texts.append(picture.text)
    return features, texts


def make_features(
    folder: Path, seed: int, count: int, workers: int, strength: float
) -> tuple[list[np.ndarray], list[str]]:
    """Features of ``count`` pictures, made in ``workers`` processes (the same for any number)."""
    parts = [(str(folder), seed, first, min(250, count - first), strength)
             for first in range(0, count, 250)]  # fmt: skip
    jobs = zip(*parts, strict=True)
    if workers <= 1:
        results = list(map(features_of_pictures, *jobs))
    else:  # fresh processes ("spawn"): forking a process that already ran OpenMP is unsafe
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
            results = list(pool.map(features_of_pictures, *jobs))
    return [f for fs, _ in results for f in fs], [t for _, ts in results for t in ts]


def read_all(
    head: Sequential, sequences: list[np.ndarray], empty: np.ndarray, batch: int = 64
) -> list[str]:
    """The best-path reading of every sequence."""
    found = []
    for start in range(0, len(sequences), batch):
        part = [s.astype(np.float32) for s in sequences[start : start + batch]]
        for logits in number_sequence.head_logits(head, part, empty):
            found.append("".join(str(d.digit) for d in number_sequence.decode(logits)))
    return found


def train(
    head: Sequential,
    sequences: list[np.ndarray],
    texts: list[str],
    empty: np.ndarray,
    epochs: int,
    lr: float,
    batch: int,
    seed: int,
    report: Callable[[int, float, float], None],
) -> None:
    """CTC training of ``head`` on standardised features: batches of sequences of similar
    lengths (little padding), shuffled each epoch; Adam with a cosine-decaying learning rate.
    After each epoch ``report(epoch, mean loss, seconds)``."""
    context = number_sequence.CONTEXT
    labels = [[int(c) for c in text] for text in texts]
    lengths = np.array([len(s) for s in sequences])
    order = np.argsort(lengths, kind="stable")
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    rng = np.random.default_rng(seed)
    optimizer = Adam(lr=lr)
    ctc = CTCLoss(blank=number_windows.NOT_A_DIGIT)
    total, step = len(batches) * epochs, 0
    for epoch in range(epochs):
        started, losses = time.perf_counter(), []
        rng.shuffle(batches)
        for chosen in batches:
            optimizer.lr = lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * step / total)))
            step += 1
            part = [sequences[i].astype(np.float32) for i in chosen]
            x, steps = number_sequence.in_context(part, empty, context)
            logits = head.forward(x, training=True).reshape(len(chosen), steps, -1)
            losses.append(ctc.forward(logits, [labels[i] for i in chosen], lengths[chosen]))
            grad = ctc.backward().reshape(len(chosen) * steps, -1).astype(np.float32)
            head.backward(grad, input_grad=False)
            _, params, grads = zip(*head.parameters(), strict=True)
            optimizer.step(params, grads)
        report(epoch, float(np.mean(losses)), time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=DEFAULTS["pictures"])
    parser.add_argument("--val-pictures", type=int, default=DEFAULTS["val_pictures"])
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    parser.add_argument("--augment-strength", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes making the features")
    parser.add_argument("--weights", type=Path, default=Path("weights"),
                        help="the folder holding both number readers")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("weights/number_sequence.npz"))
    args = parser.parse_args(argv)

    started = time.perf_counter()
    sequences, texts = make_features(
        args.weights, PICTURE_SEED + args.seed, args.pictures, args.workers, args.augment_strength
    )
    val_sequences, val_texts = make_features(
        args.weights, VAL_SEED + args.seed, args.val_pictures, args.workers, 0.0
    )
    made = time.perf_counter() - started
    print(f"{sum(len(s) for s in sequences):,} windows of {len(sequences):,} pictures, "
          f"{len(val_sequences):,} for validation, in {made:.0f} s")  # fmt: skip
    fits = [
        i
        for i, (s, t) in enumerate(zip(sequences, texts, strict=True))
        if CTCLoss.steps_needed(t) <= len(s)
    ]
    if len(fits) < len(sequences):
        print(f"left out {len(sequences) - len(fits)} pictures with fewer windows than their "
              "digits need (a blank between equal digits)")  # fmt: skip
        sequences, texts = [sequences[i] for i in fits], [texts[i] for i in fits]

    readers = load_readers(args.weights)
    empty = number_sequence.empty_window_features(readers, number_windows.WINDOW)
    every = np.concatenate(sequences).astype(np.float32)
    mean, scale = every.mean(axis=0), every.std(axis=0) + 1e-3
    del every
    standardised = [((s.astype(np.float32) - mean) / scale).astype(np.float16) for s in sequences]
    empty_standardised = (empty - mean) / scale
    val_standardised = [(s.astype(np.float32) - mean) / scale for s in val_sequences]

    width = len(empty) * (2 * number_sequence.CONTEXT + 1)
    head = Sequential(number_sequence.head_layers(), input_shape=(width,), seed=args.seed)
    history = []

    def report(epoch: int, loss: float, seconds: float) -> None:
        read = read_all(head, val_standardised, empty_standardised)
        exact = float(np.mean([r == t for r, t in zip(read, val_texts, strict=True)]))
        history.append({"epoch": epoch + 1, "loss": loss, "val_exact": exact})
        print(f"epoch {epoch + 1}/{args.epochs}: CTC loss {loss:.4f}, validation numbers read "
              f"exactly {100 * exact:.2f}% ({seconds:.0f} s)", flush=True)  # fmt: skip

    train(head, standardised, texts, empty_standardised, args.epochs, args.lr, args.batch,
          args.seed, report)  # fmt: skip
    number_sequence.fold_standardisation(head, mean, scale)
    card = {
        "name": "number-sequence-head",
        "purpose": "reads the number readers' windows as a sequence (npcnn.digits.number_sequence)",
        "readers": {name: model_version((args.weights / name).read_bytes()) for name in READERS},
        "context": number_sequence.CONTEXT,
        "options": {k: getattr(args, k) for k in ("pictures", "val_pictures", "epochs", "lr",
                                                  "batch", "augment_strength", "seed")},
        "history": history,
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    save_model(head, args.out, metadata=card)
    print(f"saved {args.out} ({card['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
