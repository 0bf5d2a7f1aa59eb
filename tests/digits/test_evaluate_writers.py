"""evaluate_writers.py: scikit-learn's 8x8 digit format is read and judged as the app reads."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import evaluate_writers


def write_csv(path, images: np.ndarray, labels: np.ndarray) -> None:
    rows = np.concatenate([images.reshape(len(images), 64), labels[:, None]], axis=1)
    with gzip.open(path, "wt") as out:
        np.savetxt(out, rows, fmt="%d", delimiter=",")


def test_upright_bars_in_the_8x8_format_are_read_as_ones(tmp_path, shipped_model) -> None:
    bars = np.zeros((12, 8, 8), dtype=np.int64)
    for k in range(12):  # a one-cell-wide stroke of full ink, in a different column each time
        bars[k, 1:7, 2 + k % 4] = 16
    path = tmp_path / "digits.csv.gz"
    write_csv(path, bars, np.ones(12, dtype=np.int64))
    images, labels = evaluate_writers.load_writers_digits(str(path))
    assert images.shape == (12, 8, 8) and images.max() == 1.0 and (labels == 1).all()
    scan = evaluate_writers.as_scan(images[0])
    assert scan.shape == (64, 64) and scan.min() < 40 and scan.max() == 255  # dark ink on white
    figures = evaluate_writers.evaluate(shipped_model, images, labels)
    assert figures["accuracy"] == pytest.approx(figures["per_digit"][1])
    assert figures["accuracy"] == 1.0


def test_a_file_of_another_shape_is_refused(tmp_path) -> None:
    path = tmp_path / "bad.csv.gz"
    with gzip.open(path, "wt") as out:
        out.write("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="64 cells"):
        evaluate_writers.load_writers_digits(str(path))
