"""``npcnn.digits.number_sequence``: the sequence head over the number readers' windows.

Its pieces on constructed inputs (context stacking, best-path decoding, folding
the standardisation into the first layer); the shipped head reading drawn numbers through
``Recogniser`` (and a head trained for other readers left unused); a tiny run of
``train_number_sequence.py``.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from test_numbers import png, written

import npcnn
from npcnn.digits import number_sequence as ns
from npcnn.digits.recogniser import SEQUENCE_FILE, Recogniser

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "weights" / "mnist_cnn.npz"
HEAD = ROOT / "weights" / SEQUENCE_FILE
BLANK = 10


@pytest.fixture(scope="module")
def shipped() -> Recogniser:
    if not (WEIGHTS.is_file() and HEAD.is_file()):
        pytest.skip("no shipped model or sequence head")
    recogniser = Recogniser.from_file(WEIGHTS)
    assert recogniser.sequence_head is not None, "the shipped head must fit the shipped readers"
    return recogniser


def confident(path: list[int]) -> np.ndarray:
    """Logits (K, 11) all but certain of class ``path[k]`` at window k."""
    logits = np.full((len(path), 11), -12.0)
    logits[np.arange(len(path)), path] = 12.0
    return logits


# --------------------------------------------------------------------- pieces
def test_each_row_holds_its_window_and_its_neighbours_with_empty_windows_beyond_the_ends():
    rng = np.random.default_rng(0)
    empty = np.full(3, -1.0, np.float32)
    sequences = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 2)]
    rows, steps = ns.in_context(sequences, empty, context=1)
    assert steps == 5 and rows.shape == (2 * 5, 3 * 3)
    first = rows[:5]
    np.testing.assert_array_equal(first[2], np.concatenate(sequences[0][1:4]))
    np.testing.assert_array_equal(first[0], np.concatenate([empty, *sequences[0][:2]]))
    second = rows[5:]
    np.testing.assert_array_equal(second[1], np.concatenate([*sequences[1], empty]))
    np.testing.assert_array_equal(second[4], np.concatenate([empty, empty, empty]))  # padding


def test_best_path_merges_repeats_and_needs_a_blank_between_equal_digits():
    found = ns.decode(confident([BLANK, 4, 4, BLANK, 1, BLANK, 1, 1, 7, BLANK]))
    assert [d.digit for d in found] == [4, 1, 1, 7]
    assert [(d.first, d.last) for d in found] == [(1, 2), (4, 4), (6, 7), (8, 8)]
    assert all(d.confidence > 0.99 and d.probabilities.shape == (11,) for d in found)
    assert ns.decode(confident([BLANK, BLANK])) == []


def test_a_digits_confidence_is_its_best_window_and_its_window_is_that_one():
    logits = confident([BLANK, 3, 3, BLANK])
    logits[2, 5] = 11.0  # window 2 is less sure of its 3
    (three,) = ns.decode(logits)
    assert three.window == 1
    assert three.confidence == pytest.approx(npcnn.softmax(logits[1])[3])


def test_folding_the_standardisation_gives_the_same_logits_on_raw_features():
    rng = np.random.default_rng(1)
    head = npcnn.Sequential(ns.head_layers(), input_shape=(4 * 3,), seed=2)
    mean, scale = rng.normal(size=4), rng.uniform(0.5, 3.0, size=4)
    raw = rng.normal(size=(6, 4 * 3)) * 3
    before = head.predict_logits(((raw.reshape(6, 3, 4) - mean) / scale).reshape(6, 12))
    ns.fold_standardisation(head, mean, scale)
    np.testing.assert_allclose(head.predict_logits(raw), before, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------- the shipped head
@pytest.mark.parametrize("text, step", [("2026", 120), ("3908", 70), ("711", 55), ("1415", 60)])
def test_the_shipped_head_reads_drawn_numbers(shipped, text: str, step: int) -> None:
    answer = shipped.read_number(png(written(text, step=step)))
    assert answer["number"] == text
    boxes = [d["box"] for d in answer["digits"]]
    assert all(a[0] < b[0] for a, b in zip(boxes, boxes[1:], strict=False))  # left to right


def test_auto_is_the_heads_reading_of_both_readers_windows(shipped, monkeypatch) -> None:
    data = png(written("4709", step=80))
    calls: list[str] = []
    original = shipped.read_sequence
    monkeypatch.setattr(shipped, "read_sequence", lambda ink: calls.append("head") or original(ink))
    monkeypatch.setattr(shipped, "_predict", lambda batch: pytest.fail("segmentation was asked"))
    answer = shipped.read_number(data)
    assert calls == ["head"] and answer["number"] == "4709"
    assert 0 < answer["confidence"] <= 1 and len(answer["digits"]) == 4


def test_a_head_trained_for_other_readers_is_not_used(shipped, tmp_path, caplog) -> None:
    for name in ("mnist_cnn.npz", "number_reader.npz", "number_reader_2.npz", SEQUENCE_FILE):
        shutil.copy(ROOT / "weights" / name, tmp_path / name)
    head = npcnn.load(tmp_path / SEQUENCE_FILE)
    head.metadata["readers"] = {**head.metadata["readers"], "number_reader.npz": "0" * 12}
    npcnn.save(head, tmp_path / SEQUENCE_FILE)
    with caplog.at_level(logging.WARNING):
        recogniser = Recogniser.from_file(tmp_path / "mnist_cnn.npz")
    assert recogniser.sequence_head is None
    assert "train_number_sequence.py" in caplog.text
    assert recogniser.read_number(png(written("2026")))["number"] == "2026"  # windows + chooser


def test_a_tiny_training_run_saves_a_head_for_the_shipped_readers(tmp_path, monkeypatch) -> None:
    if not HEAD.is_file():
        pytest.skip("no shipped number readers")
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("train_number_sequence", None)
    import train_number_sequence

    out = tmp_path / SEQUENCE_FILE
    args = ["--pictures", "16", "--val-pictures", "6", "--epochs", "1", "--workers", "1"]
    assert train_number_sequence.main([*args, "--out", str(out)]) == 0
    head = npcnn.load(out)
    shipped_head = npcnn.load(HEAD)
    assert head.metadata["readers"] == shipped_head.metadata["readers"]
    assert head.input_shape == shipped_head.input_shape
    assert head.predict(np.zeros((3, *head.input_shape), np.float32)).shape == (3, 11)
