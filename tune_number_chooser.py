"""Fit the number chooser (``npcnn.digits.number_choice``) on the DEVELOPMENT number set.

When the number reader's windows are unsure (``number_choice.needs_second_look``), the app reads
the picture by segmentation too; where the two readings differ, the chooser says which to take.
This script reads development pictures of several seeds both ways (in ``--workers`` processes),
fits the chooser's logistic regression on the pictures whose windows' confidence is under
``number_choice.FIT_GATE`` where the two differ and exactly one is right, writes it beside the
weights, and prints, on development seeds kept out of the fit (``--check-seeds``), exact-number
accuracy as the app reads with the chooser against the rule it replaces (under ``WINDOW_TRUST``,
the more confident reading) - never the test set::

    python tune_number_chooser.py                           # fit on seeds 21-28, check on 1 and 7
    python tune_number_chooser.py --fit-seeds 21,22 --no-save

Refit whenever the digit model or the number reader changes: the chooser is only used with the
networks it was fitted for (their versions are saved with it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import npcnn
from npcnn.digits import number_choice, number_windows
from npcnn.digits.errors import ImageError
from npcnn.digits.number_choice import WINDOW_TRUST
from npcnn.digits.number_set import number_set
from npcnn.digits.preprocess import find_ink
from npcnn.digits.recogniser import Recogniser, open_picture

HERE = Path(__file__).resolve().parent


@dataclass
class Unsure:
    """One development picture: the first reader's reading and confidence; when its confidence
    is under ``FIT_GATE`` or the app would look twice (``second_look``), also the windows'
    reading the chooser sees (both readers together, with a second reader), segmentation's
    reading and confidence, and the features."""

    seed: int
    truth: str
    first: str
    first_confidence: float
    second_look: bool = False
    by_windows: str = ""
    by_segments: str | None = None
    segments_confidence: float = 0.0
    features: np.ndarray | None = None


def read_seed(weights: str, seed: int, count: int) -> tuple[int, list[Unsure]]:
    """Read ``count`` development pictures of ``seed``.  Returns (pictures read, their rows)."""
    npcnn.set_threads(1)  # as the app runs
    recogniser = Recogniser.from_file(weights, chooser=None)
    unsure = []
    pictures = number_set("dev", count, seed)
    for picture in pictures:
        try:
            ink = find_ink(open_picture(picture.png()))
            read = recogniser.read_windows(ink)
            by_windows = number_windows.reading_from_windows(ink, read)
        except ImageError:
            continue  # counted as a miss by both rules alike
        row = Unsure(seed, picture.text, by_windows.number, by_windows.confidence)
        unsure.append(row)
        row.second_look = number_choice.needs_second_look(by_windows)
        if by_windows.confidence >= number_choice.FIT_GATE and not row.second_look:
            continue
        if recogniser.second_reader is not None:  # as the app reads when it looks twice
            by_windows = number_windows.reading_from_windows(
                ink, recogniser.with_second_reader(read)
            )
        try:
            by_segments = recogniser.read_by_segments(ink)
        except ImageError:
            by_segments = None
        row.features = number_choice.reading_features(
            by_windows,
            by_segments,
            recogniser.digit_probabilities(by_windows),
            None if by_segments is None
            else recogniser.reader_probabilities(ink, read.line, by_segments),
        )  # fmt: skip
        row.by_windows = by_windows.number
        row.by_segments = by_segments.number if by_segments is not None else ""
        row.segments_confidence = by_segments.confidence if by_segments is not None else 0.0
    return len(pictures), unsure


def exact(rows: list[Unsure], pictures: int, pick) -> float:
    """Exact-number accuracy (%) over ``pictures`` when ``pick(row)`` is the reading taken."""
    return 100.0 * sum(pick(row) == row.truth for row in rows) / pictures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=str(HERE / "weights" / "mnist_cnn.npz"))
    parser.add_argument("--fit-seeds", default="21,22,23,24,25,26,27,28")
    parser.add_argument("--check-seeds", default="1,7")
    parser.add_argument("--count", type=int, default=1200, help="pictures per seed")
    parser.add_argument("--l2", type=float, default=0.01, help="L2 penalty of the regression")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=None, help="default: beside --weights")
    parser.add_argument("--no-save", action="store_true", help="fit and check, write nothing")
    args = parser.parse_args(argv)
    fit_seeds = [int(s) for s in args.fit_seeds.split(",")]
    check_seeds = [int(s) for s in args.check_seeds.split(",") if s]
    if set(fit_seeds) & set(check_seeds):
        parser.error("the check seeds must not be fit seeds")
    started = time.perf_counter()
    seeds = fit_seeds + check_seeds
    jobs = ([args.weights] * len(seeds), seeds, [args.count] * len(seeds))
    if args.workers <= 1:
        results = list(map(read_seed, *jobs))
    else:  # fresh processes ("spawn"): forking a process that already ran OpenMP is unsafe
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=spawn) as pool:
            results = list(pool.map(read_seed, *jobs))
    by_seed = dict(zip(seeds, results, strict=True))
    print(f"read {len(seeds)} x {args.count} development pictures in "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip

    rows = [
        row for seed in fit_seeds for row in by_seed[seed][1]
        if row.by_segments is not None and row.first_confidence < number_choice.FIT_GATE
    ]  # fmt: skip
    useful = [
        row for row in rows
        if row.by_windows != row.by_segments and row.truth in (row.by_windows, row.by_segments)
    ]  # fmt: skip
    if len(useful) < 2:
        print(f"only {len(useful)} pictures where the readings differ and one is right: "
              "too few to fit; read more (--count, --fit-seeds)")  # fmt: skip
        return 1
    x = np.stack([row.features for row in useful])
    y = np.array([row.by_segments == row.truth for row in useful], dtype=np.float64)
    recogniser = Recogniser.from_file(args.weights, chooser=None)
    fitted_for = {
        "digit_model": recogniser.version,
        "number_reader": str(recogniser.number_reader_version),
        "second_reader": str(recogniser.second_reader_version),
    }
    chooser = number_choice.fit_chooser(x, y, fitted_for, l2=args.l2)
    print(f"fitted on {len(useful)} pictures of seeds {fit_seeds} where the readings differ and "
          f"one is right (segmentation right in {100 * y.mean():.0f}%)")  # fmt: skip
    looked = [row.second_look for seed in seeds for row in by_seed[seed][1]]
    print(f"the app looks twice at {100 * np.mean(looked):.0f}% of the pictures")
    for name, weight in zip(number_choice.FEATURES, chooser.weights, strict=True):
        print(f"  {name:<30} {weight:+.3f}")
    print(f"  {'bias':<30} {chooser.bias:+.3f}")

    def with_chooser(row: Unsure) -> str:  # as the app reads
        if not row.second_look:
            return row.first
        if row.by_segments is None or row.by_segments == row.by_windows:
            return row.by_windows
        return row.by_segments if chooser.prefers_segments(row.features) else row.by_windows

    def more_confident(row: Unsure) -> str:  # the rule without a chooser (one reader)
        if row.by_segments is None or row.first_confidence >= WINDOW_TRUST:
            return row.first
        return row.first if row.first_confidence >= row.segments_confidence else row.by_segments

    print(f"{'seeds':<12} {'pictures':>8} {'windows alone':>14} {'old rule':>9} {'chooser':>8}")
    for label, group in [("fit", fit_seeds), *[(f"check {s}", [s]) for s in check_seeds]]:
        count = sum(by_seed[s][0] for s in group)
        group_rows = [row for s in group for row in by_seed[s][1]]
        print(f"{label:<12} {count:>8} {exact(group_rows, count, lambda r: r.first):>13.2f}%"
              f" {exact(group_rows, count, more_confident):>8.2f}%"
              f" {exact(group_rows, count, with_chooser):>7.2f}%")  # fmt: skip
    if not args.no_save:
        path = Path(args.out or Path(args.weights).with_name(number_choice.CHOOSER_FILE))
        chooser.save(path)
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
