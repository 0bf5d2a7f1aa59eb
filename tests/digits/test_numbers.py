"""``npcnn.digits.numbers``: recognition-driven segmentation of whole numbers.

The dynamic programming is checked exactly against brute force on toy scores; the seams and atoms
on constructed ink; whole readings with the shipped model on drawn numbers (touching digits,
specks and an underline) and with tiny 10- and 11-output models.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from digit_strokes import draw_strokes
from PIL import Image, ImageDraw
from scipy import ndimage

import npcnn
from npcnn.digits import numbers
from npcnn.digits.preprocess import find_ink
from npcnn.digits.recogniser import Recogniser
from npcnn.layers import Dense, Flatten

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "mnist_cnn.npz"


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def written(text: str, step: int = 120, size: int = 95, pen: float = 0.06) -> Image.Image:
    """``text`` drawn left to right, dark on white, each digit in a ``size`` px box, ``step``
    px apart (under ``size``: the digits touch or overlap)."""
    image = Image.new("L", (step * len(text) + 100, 200), 255)
    for i, char in enumerate(text):
        x0 = (40 + i * step) / image.width
        draw_strokes(image, int(char), (x0, 0.15, x0 + size / image.width, 0.85), pen, 0)
    return image


def pieces(image: Image.Image) -> int:
    return ndimage.label(np.asarray(image) < 128, structure=np.ones((3, 3)))[1]


@pytest.fixture(scope="module")
def shipped() -> Recogniser:
    if not SHIPPED_WEIGHTS.is_file():
        pytest.skip("no shipped model")
    return Recogniser.from_file(SHIPPED_WEIGHTS)


# --------------------------------------------------------------------- the DP, exactly
def brute_force(spans, log_scores, top_digits, priors, cut_costs, skippable):
    """Every way to cover atoms 0..n-1 with candidates (or skips), every digit choice: scores."""
    n = len(cut_costs) - 1
    found: dict[str, float] = {}

    def walk(i, score, text):
        if i == n:
            if text:
                found[text] = max(found.get(text, -math.inf), score)
            return
        if skippable[i]:
            walk(i + 1, score + numbers.SKIP_COST, text)
        for k, (start, stop) in enumerate(spans):
            if start != i:
                continue
            cut = cut_costs[stop] if stop < n else 0.0
            for rank in range(top_digits.shape[1]):
                step = log_scores[k, rank] + priors[k] + numbers.DIGIT_BIAS - cut
                walk(stop, score + step, text + str(top_digits[k, rank]))

    walk(0, 0.0, "")
    return sorted(found.items(), key=lambda item: -item[1])


def test_the_dp_finds_the_best_reading_and_the_runner_up_as_brute_force_does() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 6))
        spans = [(i, j) for i in range(n) for j in range(i + 1, min(i + 3, n) + 1)]
        top_digits = np.stack([rng.choice(10, size=2, replace=False) for _ in spans])
        log_scores = np.sort(np.log(rng.uniform(0.01, 1.0, size=(len(spans), 2))), axis=1)[:, ::-1]
        priors = -rng.uniform(0, 2, size=len(spans))
        cut_costs = np.r_[0.0, rng.uniform(0, 1, size=n - 1), 0.0]
        skippable = rng.random(n) < 0.3
        readings = numbers.best_readings(
            spans, log_scores, top_digits, priors, cut_costs, skippable, keep=50
        )
        expected = brute_force(spans, log_scores, top_digits, priors, cut_costs, skippable)
        assert readings[0].number == expected[0][0]
        assert readings[0].score == pytest.approx(expected[0][1])
        if len(expected) > 1:
            assert readings[1].number == expected[1][0]
            assert readings[1].score == pytest.approx(expected[1][1])


def test_a_toy_reading_merges_what_reads_better_as_one_digit() -> None:
    # atoms: a 4 in two strokes (atoms 0, 1) and a 7 (atom 2)
    spans = [(0, 1), (1, 2), (0, 2), (2, 3), (1, 3)]
    top_digits = np.array([[1, 7], [1, 7], [4, 9], [7, 1], [4, 7]])
    log_scores = np.log([[0.6, 0.3], [0.5, 0.4], [0.99, 0.01], [0.98, 0.01], [0.2, 0.1]])
    priors = np.zeros(5)
    readings = numbers.best_readings(
        spans, log_scores, top_digits, priors, np.zeros(4), np.zeros(3, bool)
    )
    assert readings[0].number == "47"
    assert [k for k, _ in readings[0].segments] == [2, 3]
    assert readings[0].confidence == pytest.approx(0.99 * 0.98)
    assert readings[1].number == "117"  # the 4's strokes read apart, each as a 1
    assert readings[1].confidence == pytest.approx(0.6 * 0.5 * 0.98)
    assert [r.number for r in readings[2:]] == ["177", "717"]  # KEEP = 4 readings in all


# --------------------------------------------------------------------- cuts and atoms
def test_a_seam_cuts_two_bars_where_a_thin_bridge_joins_them() -> None:
    ink = np.zeros((60, 70), np.float32)
    ink[5:55, 10:18] = 1.0  # left bar
    ink[5:55, 45:53] = 1.0  # right bar
    ink[30:32, 18:45] = 1.0  # a thin bridge: the two "digits" touch
    ink = ink[:, 10:53]  # a piece is cut to its box
    cuts = numbers.seam_cuts(ink, 50)
    assert len(cuts) >= 1
    path, cost = min(cuts, key=lambda c: c[1])
    assert np.all((path >= 8) & (path <= 35))  # between the bars, in every row
    assert cost < 0.1  # it crosses only the bridge
    assert numbers.seam_cuts(ink[:, :8], 50) == []  # one bar: nothing to cut


def test_seam_costs_follow_their_recurrence_pixel_by_pixel():
    """``seam_costs`` equals its docstring's recurrence written out with plain loops (ties
    straight down first, then from the left), and each traced seam costs what it says."""
    rng = np.random.default_rng(7)
    for drift in (0.0, 0.5, 1.0):
        piece = np.round(rng.random((9, 7)) * 3) / 3  # many ties
        height, width = piece.shape
        cost = [[0.0] * width for _ in range(height)]
        moves = np.zeros((height, width), dtype=np.int8)
        cost[0] = list(piece[0])
        for y in range(1, height):
            for x in range(width):
                options = [(cost[y - 1][x], 0)]
                if x > 0:
                    options.append((cost[y - 1][x - 1] + drift, -1))
                if x < width - 1:
                    options.append((cost[y - 1][x + 1] + drift, 1))
                best = min(value for value, _ in options)
                moves[y, x] = next(move for value, move in options if value == best)
                cost[y][x] = best + piece[y, x]
        total, found_moves = numbers.seam_costs(piece, drift)
        np.testing.assert_array_equal(total, cost[-1])
        np.testing.assert_array_equal(found_moves, moves)
        for end in range(width):
            path = numbers.trace_seam(found_moves, end)
            sideways = np.abs(np.diff(path)).sum()
            assert piece[np.arange(height), path].sum() + drift * sideways == pytest.approx(
                total[end]
            )


def test_seams_are_also_found_from_the_top_row() -> None:
    ink = np.zeros((60, 80), np.float32)
    ink[:, 4:10] = 1.0  # a digit on the left ...
    ink[40:42, 10:16] = 1.0  # ... touching a 1 through a thin bridge
    for y in range(60):
        up = (59 - y) * 4 // 10
        ink[y, 14 + up : 19 + up] = 1.0  # the 1, leaning right: bottom x = 14, top x = 37
        ink[y, 24 + up : 29 + up] = 1.0  # the next digit's side, leaning alike: top x = 47

    def tops_between_the_strokes() -> list[int]:
        return [int(path[0]) for path, _ in numbers.seam_cuts(ink, 60) if 42 <= path[0] <= 46]

    assert tops_between_the_strokes()  # a cut starts between the 1's top and its neighbour's
    default = numbers.TOP_SEAM_COST
    try:
        numbers.TOP_SEAM_COST = 0.0  # seams ended at the bottom row only: none starts there
        assert not tops_between_the_strokes()
    finally:
        numbers.TOP_SEAM_COST = default


def test_atoms_drop_an_underline_and_a_speck_and_keep_the_digits() -> None:
    ink = np.zeros((120, 300), np.float32)
    ink[10:90, 20:30] = 1.0
    ink[10:90, 120:130] = 1.0
    ink[100:104, 10:280] = 1.0  # an underline
    ink[5:7, 200:202] = 1.0  # a speck
    found = numbers.find_atoms(ink)
    assert [a.box for a in found.atoms] == [(20, 10, 30, 90), (120, 10, 130, 90)]
    assert found.line_height == 80 and found.digit_marks == 2


def test_a_margin_line_through_the_picture_is_dropped_but_a_tall_1_is_not() -> None:
    ink = np.zeros((200, 300), np.float32)
    ink[60:140, 120:130] = 1.0  # two digits' worth of strokes, 80 px tall
    ink[60:140, 200:210] = 1.0
    ink[:, 30:33] = 1.0  # a notebook's margin: top to bottom, 3 px wide
    found = numbers.find_atoms(ink)
    assert [a.box[0] for a in found.atoms] == [120, 200]
    assert found.line_height == 80 and found.digit_marks == 2
    ink[:, 30:33] = 0.0
    ink[3:197, 30:33] = 1.0  # a thin 1 nearly as tall as the picture, beside shorter digits
    assert [a.box[0] for a in numbers.find_atoms(ink).atoms] == [30, 120, 200]
    alone = np.zeros((200, 60), np.float32)
    alone[:, 25:29] = 1.0  # a thin 1 alone, top to bottom
    assert [a.box for a in numbers.find_atoms(alone).atoms] == [(25, 0, 29, 200)]
    tight = np.zeros((100, 120), np.float32)
    tight[:, 20:24] = 1.0  # "10" cropped tight: the 1 from top to bottom, the 0 nearly as tall
    tight[8:95, 50:100] = 1.0
    found = numbers.find_atoms(tight)
    assert found.digit_marks == 2 and found.atoms[0].box == (20, 0, 24, 100)


def test_a_slanted_seam_separates_overlapping_strokes() -> None:
    ink = np.zeros((80, 80), np.float32)
    for y in range(80):  # two parallel slanted strokes, overlapping in x, joined at the top
        ink[y, 10 + y // 4 : 16 + y // 4] = 1.0
        ink[y, 30 + y // 4 : 36 + y // 4] = 1.0
    ink[0:3, 10:36] = 1.0
    atoms = numbers._slices(ink, numbers.seam_cuts(ink, 80), 0, 0, 1, False)
    assert len(atoms) >= 2
    assert any(np.isclose(a.pixels.sum(), ink[3:, :25].sum(), rtol=0.2) for a in atoms)


def test_overlap_variants_borrow_a_strip_of_the_neighbour_across_a_cut_only() -> None:
    def atom(x0: int, x1: int, piece: int, cut: float) -> numbers.Atom:
        return numbers.Atom(np.ones((50, x1 - x0), np.float32), (x0, 0, x1, 50), piece, cut, False)

    # atoms 0 and 1 are slices of one piece (a cut between them), atom 2 a piece of its own
    atoms = [atom(0, 30, 1, 0.0), atom(30, 60, 1, 0.4), atom(80, 110, 2, 0.0)]
    right = numbers.overlap_variants(atoms, 0, 1, line=50.0)
    assert len(right) == 2  # only the right side has a cut: a narrow strip and a wide one
    # 0.1 and 0.2 x 50 px of atom 1, its side nearest atom 0
    assert [variant[-1].box for variant in right] == [(30, 0, 35, 50), (30, 0, 40, 50)]
    left = numbers.overlap_variants(atoms, 1, 2, line=50.0)
    assert [a.box for a in left[0]] == [(25, 0, 30, 50), (30, 0, 60, 50)]
    assert [a.box for a in left[1]] == [(20, 0, 30, 50), (30, 0, 60, 50)]
    assert numbers.overlap_variants(atoms, 2, 3, line=50.0) == []  # a gap, not a cut
    assert numbers.overlap_variants(atoms[:1], 0, 1, line=50.0) == []


# --------------------------------------------------------------------- whole readings
@pytest.mark.parametrize(("text", "step"), [("350", 84), ("2026", 80)])
def test_touching_digits_are_read_by_the_shipped_model(shipped, text: str, step: int) -> None:
    image = written(text, step=step)
    assert pieces(image) < len(text)  # the digits really touch
    answer = shipped.read_number(png(image))
    assert answer["number"] == text
    assert 0.0 < answer["confidence"] <= 1.0
    assert answer["confidence"] == pytest.approx(
        math.prod(d["confidence"] for d in answer["digits"]), rel=1e-4
    )


def test_specks_and_an_underline_are_ignored(shipped) -> None:
    image = written("2026")
    clean = shipped.read_number(png(image))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 182, image.width - 60, 188), fill=0)  # an underline
    for x, y in [(10, 10), (300, 8), (500, 190), (470, 20)]:
        draw.ellipse((x, y, x + 3, y + 3), fill=0)  # specks
    marked = shipped.read_number(png(image))
    assert clean["number"] == marked["number"] == "2026"


def test_a_margin_line_beside_a_number_is_not_read_as_a_1(shipped) -> None:
    image = written("3927")
    clean = shipped.read_number(png(image))
    ImageDraw.Draw(image).rectangle((12, 0, 14, image.height), fill=90)  # a margin, top to bottom
    assert clean["number"] == shipped.read_number(png(image))["number"] == "3927"
    assert shipped.segment_number(png(image), "segmentation").number == "3927"


def test_boxes_are_inside_the_picture_and_left_to_right(shipped) -> None:
    image = written("4789", step=100)
    answer = shipped.read_number(png(image))
    boxes = [d["box"] for d in answer["digits"]]
    assert len(boxes) == len(answer["number"]) == 4
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)
    for i, (x0, _, x1, _) in enumerate(boxes):  # each box sits on its own digit
        assert x0 - 10 <= 40 + 100 * i + 47 <= x1 + 10


def test_looks_like_number() -> None:
    three = np.asarray(written("147"), np.float32) < 128
    one = np.asarray(written("8"), np.float32) < 128
    assert numbers.looks_like_number(three.astype(np.float32))
    assert not numbers.looks_like_number(one.astype(np.float32))
    four = np.asarray(written("4"), np.float32) < 128  # two strokes, one digit
    assert not numbers.looks_like_number(four.astype(np.float32))


@pytest.mark.parametrize("outputs", [10, 11])
def test_ten_and_eleven_output_models_both_read_numbers(outputs: int) -> None:
    model = npcnn.Sequential([Flatten(), Dense(784, outputs)], input_shape=(1, 28, 28), seed=1)
    dense = model.layers[-1]
    dense.params["W"][...] = 0.0
    dense.params["b"][...] = 0.0
    dense.params["b"][3] = 5.0
    if outputs == 11:
        dense.params["b"][10] = 4.0  # "not a digit" close behind
    answer = Recogniser(model).read_number(png(written("17", step=150)))
    assert answer["number"] == "33"
    assert len(answer["digits"]) == 2
    logits = dense.params["b"].astype(np.float64)
    expected = math.exp(logits[3]) / np.exp(logits).sum()  # the 11-way softmax's, for 11
    assert answer["digits"][0]["confidence"] == pytest.approx(expected, rel=1e-4)


def test_read_for_correction_picks_the_digits_read_number_found(shipped) -> None:
    data = png(written("350", step=84))
    answer = shipped.read_number(data)
    for index, digit in enumerate(answer["digits"]):
        corrected = shipped.read_for_correction(data, index=index)
        assert corrected["predicted"] == digit["digit"]
        assert corrected["confidence"] == pytest.approx(digit["confidence"], abs=1e-6)


def test_every_candidate_is_scored_in_one_predict(shipped) -> None:
    calls = []
    model = shipped.model

    def predict(batch):
        calls.append(batch.shape)
        return model.predict(batch)

    reading = numbers.read_number(find_ink(written("2026")), predict)
    assert reading.number == "2026"
    assert len(calls) == 1 and calls[0][1:] == (1, 28, 28) and calls[0][0] >= 4
