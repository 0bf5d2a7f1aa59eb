"""How well the app reads whole numbers, on the project's own number pictures.

Every picture of ``npcnn.digits.number_set`` goes through ``Recogniser.read_number`` as PNG bytes,
exactly as ``/api/predict_number`` reads an upload, once per method:

- ``ink``: the ink-only segmentation (``preprocess.segment_digits``: cuts decided from the ink
  alone, before the network has a say);
- ``segmentation``: recognition-driven segmentation (``npcnn.digits.numbers``);
- ``windows``: the number reader's sliding window (``npcnn.digits.number_windows``);
- ``auto``: what the app does (``Recogniser.segment_number``) - with the sequence head
  (``npcnn.digits.number_sequence``), its reading of both number readers' windows; without it,
  the windows' reading checked against segmentation's when it is unsure.

Printed per method, overall and per category: exact-number accuracy (the whole string right),
digit-count accuracy (as many digits as written) and per-digit accuracy (the digits of the best
alignment of the reading with the truth - their longest common subsequence - over all true
digits).  Then the single-digit check: MNIST digits of the same split, scaled up to 40-120 px as
single pictures, read through ``Recogniser.read_digit`` (``/api/predict``'s path), against
``to_mnist`` + ``model.predict`` (the single-digit path before number reading changed): the two
must agree on every picture.

Tune on ``--set dev`` (the 5,000 MNIST training digits held out for validation, which no
network learns from); report ``--set test`` (MNIST test digits) only::

    python evaluate_numbers.py --set dev --count 300
    python evaluate_numbers.py --set test --count 1200 --weights weights/mnist_cnn.npz
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

import npcnn
from npcnn.digits.errors import ImageError
from npcnn.digits.number_set import CATEGORIES, SETS, digit_sources, number_set, scaled_digit
from npcnn.digits.preprocess import to_mnist
from npcnn.digits.recogniser import Recogniser, open_picture

HERE = Path(__file__).resolve().parent
METHODS = ("ink", "segmentation", "windows", "auto")


def common_digits(found: str, truth: str) -> int:
    """The length of the longest common subsequence of two digit strings: how many digits of the
    reading line up with the truth in the best alignment (dynamic programming, O(len x len))."""
    table = np.zeros((len(found) + 1, len(truth) + 1), dtype=np.int64)
    for i, a in enumerate(found, 1):
        for j, b in enumerate(truth, 1):
            table[i, j] = (
                table[i - 1, j - 1] + 1 if a == b else max(table[i - 1, j], table[i, j - 1])
            )
    return int(table[-1, -1])


def score_numbers(recogniser: Recogniser, pictures: list, method: str) -> dict:
    """Exact, count and per-digit accuracy of ``method`` on ``pictures``, overall and per
    category, and the mean milliseconds per picture."""
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # exact count digits n
    started = time.perf_counter()
    for picture in pictures:
        try:
            found = recogniser.read_number(picture.png(), method=method)["number"]
        except ImageError:
            found = ""
        for key in (picture.category, "all"):
            tally = tallies[key]
            tally[0] += found == picture.text
            tally[1] += len(found) == len(picture.text)
            tally[2] += common_digits(found, picture.text)
            tally[3] += len(picture.text)
            tally[4] += 1
    elapsed = (time.perf_counter() - started) / max(len(pictures), 1)
    return {
        key: {
            "pictures": t[4],
            "exact": t[0] / t[4],
            "count": t[1] / t[4],
            "digits": t[2] / t[3],
        }
        for key, t in tallies.items()
    } | {"ms_per_picture": 1000.0 * elapsed}


def single_digit_check(recogniser: Recogniser, kind: str, count: int, seed: int) -> dict:
    """MNIST digits of ``kind``'s split as single pictures (scaled to 40-120 px, dark on light):
    accuracy through ``read_digit`` and through ``to_mnist`` + ``predict``, and disagreements."""
    images, labels, _, _ = digit_sources(kind)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(labels), size=count, replace=False)
    through_app = through_framing = disagree = 0
    for k in chosen:
        glyph = scaled_digit(images[k], int(rng.integers(40, 121)))
        canvas = np.zeros((glyph.shape[0] + 40, glyph.shape[1] + 40), np.float32)
        canvas[20:-20, 20:-20] = glyph
        buffer = io.BytesIO()
        Image.fromarray((255 - 255 * canvas).astype(np.uint8)).save(buffer, format="PNG")
        app_digit = recogniser.read_digit(buffer.getvalue())["digit"]
        framed = to_mnist(open_picture(buffer.getvalue()))
        direct = int(np.argmax(recogniser.model.predict(framed[None, None])[0, :10]))
        through_app += app_digit == labels[k]
        through_framing += direct == labels[k]
        disagree += app_digit != direct
    return {
        "pictures": count,
        "read_digit_accuracy": through_app / count,
        "to_mnist_predict_accuracy": through_framing / count,
        "disagreements": disagree,
    }


def print_table(results: dict[str, dict]) -> None:
    """One row per category, the methods side by side."""
    methods = list(results)
    header = f"{'category':<12} {'n':>5} " + " ".join(
        f"{m + ' exact':>10} {m + ' count':>10} {m + ' digit':>10}" for m in methods
    )
    print(header)
    print("-" * len(header))
    for key in ("all", *CATEGORIES):
        if key not in results[methods[0]]:
            continue
        row = f"{key:<12} {results[methods[0]][key]['pictures']:>5} "
        row += " ".join(
            f"{100 * results[m][key]['exact']:>9.1f}% {100 * results[m][key]['count']:>9.1f}%"
            f" {100 * results[m][key]['digits']:>9.1f}%"
            for m in methods
        )
        print(row)
    print(
        "ms per picture: " + ", ".join(f"{m} {results[m]['ms_per_picture']:.1f}" for m in methods)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=str(HERE / "weights" / "mnist_cnn.npz"))
    parser.add_argument(
        "--number-reader",
        default=None,
        help="the number reader's weights (default: the one saved beside --weights)",
    )
    parser.add_argument("--set", choices=sorted(SETS), default="dev", dest="kind")
    parser.add_argument("--count", type=int, default=300, help="number pictures (default 300)")
    parser.add_argument("--seed", type=int, default=None, help="default: the set's own seed")
    parser.add_argument("--method", choices=[*METHODS, "all"], default="all")
    parser.add_argument("--single", type=int, default=500, help="single-digit pictures (0: skip)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    npcnn.set_threads(1)  # as the app runs
    options = {}
    if args.number_reader:
        options["number_reader"] = npcnn.load(args.number_reader)
    recogniser = Recogniser.from_file(args.weights, **options)
    pictures = number_set(args.kind, args.count, args.seed)
    outputs = recogniser.model.predict(np.zeros((1, 1, 28, 28), np.float32)).shape[1]
    print(
        f"{len(pictures)} {args.kind} numbers (seed {args.seed if args.seed is not None else 'default'}),"
        f" model {args.weights} ({outputs} outputs, version {recogniser.version})"
    )
    methods = list(METHODS) if args.method == "all" else [args.method]
    if recogniser.number_reader is None:
        methods = [m for m in methods if m not in ("windows", "auto")]
    results = {m: score_numbers(recogniser, pictures, m) for m in methods}
    print_table(results)
    report: dict = {"numbers": results}
    if args.single:
        seed = (SETS[args.kind][0] if args.seed is None else args.seed) + 1000
        check = single_digit_check(recogniser, args.kind, args.single, seed)
        report["single_digit"] = check
        print(
            f"single digits ({check['pictures']}): read_digit {100 * check['read_digit_accuracy']:.2f}%,"
            f" to_mnist+predict {100 * check['to_mnist_predict_accuracy']:.2f}%,"
            f" disagreements {check['disagreements']}"
        )
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
