"""How well a model reads other people's handwriting: scikit-learn's digits, 43 writers.

    python evaluate_writers.py --csv DIR/sklearn/datasets/data/digits.csv.gz \\
        --weights weights/mnist_cnn.npz [--weights other.npz ...]

scikit-learn's digits (the UCI "optical recognition of handwritten digits" set) are 1,797 digits
written by 43 people, none of them MNIST's writers, scanned and reduced to 8x8 cells of 0-16
(how much of the cell is ink).  The project never trains, tunes or selects on them (see "Data we
may train on" in the design notes): they only judge.  The file comes inside scikit-learn's
wheel, fetched with pip as any package is - no install needed::

    pip download --no-deps scikit-learn==1.9.1 -d DIR
    unzip DIR/scikit_learn-*.whl 'sklearn/datasets/data/digits.csv.gz' -d DIR

Each 8x8 digit is enlarged to 64x64 (bilinear: the cells become a soft grey stroke), drawn dark on
white like a scan, and read the way the app reads an upload (``preprocess.to_mnist``, then the
model).  Printed: accuracy (a refusal, "not a digit", counts as an error), the share refused,
and the accuracy per digit, for each model.
"""

from __future__ import annotations

import argparse
import gzip
import sys

import numpy as np
from PIL import Image

import npcnn
from npcnn.digits.preprocess import to_mnist

SIDE = 64  # the 8x8 digits are enlarged to SIDE x SIDE pixels before preprocessing


def load_writers_digits(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``digits.csv.gz`` -> (images float32 (N, 8, 8) in [0, 1] of ink, labels int64 (N,))."""
    with gzip.open(path, "rt") as rows:
        table = np.loadtxt(rows, delimiter=",", dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != 65:
        raise ValueError(f"{path}: expected rows of 64 cells and a label, got {table.shape}")
    return table[:, :64].reshape(-1, 8, 8) / 16.0, table[:, 64].astype(np.int64)


def as_scan(ink: np.ndarray) -> np.ndarray:
    """An (8, 8) ink image -> a (SIDE, SIDE) uint8 picture, dark ink on white paper."""
    big = Image.fromarray(ink.astype(np.float32), mode="F").resize(
        (SIDE, SIDE), Image.Resampling.BILINEAR
    )
    return np.round(255 * (1 - np.clip(np.asarray(big), 0, 1))).astype(np.uint8)


def evaluate(model: npcnn.Sequential, images: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, refusals and per-digit accuracy of ``model`` on the 8x8 ``images``."""
    batch = np.stack([to_mnist(as_scan(image)) for image in images])[:, None]
    predicted = model.predict(batch.astype(np.float32)).argmax(axis=1)
    return {
        "accuracy": float((predicted == labels).mean()),
        "refused": float((predicted == 10).mean()),
        "per_digit": [  # NaN for a digit the file does not hold
            float((predicted[labels == d] == d).mean()) if (labels == d).any() else float("nan")
            for d in range(10)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", required=True, help="scikit-learn's digits.csv.gz")
    parser.add_argument(
        "--weights", action="append", help="a model file (repeat to compare several)"
    )
    args = parser.parse_args(argv)
    images, labels = load_writers_digits(args.csv)
    print(
        f"{len(labels):,} digits by 43 writers (scikit-learn's digits), enlarged to {SIDE}x{SIDE}"
    )
    print(f"{'model':<34}{'accuracy':>9}{'refused':>9}   per digit 0-9 (%)")
    for path in args.weights or ["weights/mnist_cnn.npz"]:
        figures = evaluate(npcnn.load(path), images, labels)
        per_digit = " ".join(f"{100 * a:5.1f}" for a in figures["per_digit"])
        print(
            f"{path:<34}{100 * figures['accuracy']:8.2f}%{100 * figures['refused']:8.2f}%"
            f"   {per_digit}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
