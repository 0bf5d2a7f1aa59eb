"""``npcnn.digits.number_windows``: reading a number through a sliding window.

The geometry (line height, windows framed on the local ink, training labels) on constructed ink;
the decoding on constructed probabilities; whole readings with the shipped number reader on drawn
numbers, overlapping ones included; ``Recogniser``'s choice between windows and segmentation;
and a tiny run of ``train_number_reader.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from test_numbers import png, written

import npcnn
from npcnn.digits import number_windows as nw
from npcnn.digits.architectures import build
from npcnn.digits.errors import NoInkError
from npcnn.digits.number_set import make_number
from npcnn.digits.preprocess import find_ink
from npcnn.digits.recogniser import NUMBER_READER_FILE, Recogniser
from npcnn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "weights" / "mnist_cnn.npz"
READER = ROOT / "weights" / NUMBER_READER_FILE


@pytest.fixture(scope="module")
def shipped() -> Recogniser:
    if not (WEIGHTS.is_file() and READER.is_file()):
        pytest.skip("no shipped model or number reader")
    return Recogniser.from_file(WEIGHTS)


def bars(heights: list[int], width: int = 6, gap: int = 30, top: int = 20) -> np.ndarray:
    """Vertical bars of the given heights on one baseline: clean ink (H, W)."""
    ink = np.zeros((top + max(heights) + 20, 20 + len(heights) * (width + gap)), np.float32)
    for k, height in enumerate(heights):
        x = 20 + k * (width + gap)
        ink[top + max(heights) - height : top + max(heights), x : x + width] = 1.0
    return ink


# --------------------------------------------------------------------- geometry
def test_the_line_is_scaled_so_that_its_digits_are_digit_px_tall() -> None:
    line = nw.line_geometry(bars([100, 100, 100]))
    heights = (line.bottom - line.top + 1)[line.bottom >= line.top]
    assert abs(np.median(heights) - nw.DIGIT_PX) <= 1
    assert line.zoom == pytest.approx(nw.DIGIT_PX / 100)


def test_an_underline_does_not_count_as_a_digit() -> None:
    ink = bars([80, 80])
    ink[-12:-8, 10:] = 1.0  # a long flat line under the digits
    cleaned = nw.digit_ink(ink)
    assert cleaned[-12:-8].sum() == 0 and cleaned.sum() > 0
    with pytest.raises(NoInkError):
        nw.digit_ink(np.zeros((20, 20), np.float32))


def test_a_window_frames_the_ink_at_its_centre_like_an_mnist_digit() -> None:
    line = nw.line_geometry(bars([100, 60], gap=200))  # a tall bar, then a short one far away
    inked = np.flatnonzero(line.bottom >= line.top)
    first_bar = inked[inked < line.ink.shape[1] / 2]
    centre = (first_bar[0] + first_bar[-1]) / 2
    windows, kept, heights = nw.cut_windows(line, np.array([centre, centre + 60.0]))
    assert kept.tolist() == [True, False]  # the second window has no ink within its band
    rows = np.flatnonzero(windows[0].max(axis=1) > 0.5)
    assert abs(len(rows) - nw.DIGIT_PX) <= 2  # the bar is DIGIT_PX tall in its window
    assert abs((rows[0] + rows[-1]) / 2 - (nw.WINDOW - 1) / 2) <= 1.5  # and centred
    cols = np.flatnonzero(windows[0].max(axis=0) > 0.5)
    assert abs((cols[0] + cols[-1]) / 2 - (nw.WINDOW - 1) / 2) <= 1.5
    assert not windows[1].any()


def test_windows_read_the_line_as_scipy_reads_it_bilinearly_with_nothing_beyond_its_edges() -> None:
    """``cut_windows`` samples with ``kernels.sample_bilinear``; that is
    ``scipy.ndimage.map_coordinates(order=1, mode="constant")`` at the same points, windows
    that reach past the line's edges included (where the ink touches them)."""
    rng = np.random.default_rng(3)
    ink = rng.random((40, 90), dtype=np.float32)
    ink[ink < 0.6] = 0.0  # ink right up to every edge
    top, bottom = nw.column_extents(ink)
    line = nw.Line(ink, 1.0, top, bottom)
    centres = np.array([0.0, 0.4, 17.3, 45.0, 88.6, 89.0, 95.0])
    windows, kept, heights = nw.cut_windows(line, centres, width=36)
    tops, bottoms = nw.local_extent(line, centres)
    for k in np.flatnonzero(kept):
        step = heights[k] / nw.DIGIT_PX
        rows = (tops[k] + bottoms[k]) / 2 + (np.arange(nw.WINDOW) - (nw.WINDOW - 1) / 2) * step
        cols = centres[k] + (np.arange(36) - 35 / 2) * step
        r, c = np.meshgrid(rows, cols, indexing="ij")
        expected = ndimage.map_coordinates(ink, [r, c], order=1, mode="constant", cval=0.0)
        np.testing.assert_allclose(windows[k], expected, atol=1e-5)
    assert not windows[~kept].any()


def test_a_windows_band_spans_the_ink_of_the_columns_within_band_heights() -> None:
    """``local_extent`` against its definition, one window at a time."""
    rng = np.random.default_rng(4)
    ink = np.zeros((30, 120), np.float32)
    for x in rng.integers(0, 120, 25):
        y0 = int(rng.integers(0, 25))
        ink[y0 : y0 + int(rng.integers(1, 6)), x] = 1.0
    top, bottom = nw.column_extents(ink)
    line = nw.Line(ink, 1.0, top, bottom)
    centres = np.concatenate([np.arange(-8.0, 130.0, 2.0), rng.uniform(-10, 130, 30)])
    tops, bottoms = nw.local_extent(line, centres)
    reach = nw.BAND * nw.DIGIT_PX
    for x, got_top, got_bottom in zip(centres, tops, bottoms, strict=True):
        lo, hi = max(0, int(np.floor(x - reach))), min(120, int(np.ceil(x + reach)) + 1)
        rows = np.flatnonzero(ink[:, lo:hi].any(axis=1)) if hi > lo else np.array([])
        if rows.size == 0:
            assert np.isnan(got_top) and np.isnan(got_bottom)
        else:
            assert (got_top, got_bottom) == (rows[0], rows[-1] + 1)


def test_a_wider_window_shows_the_same_middle_and_more_of_the_neighbours() -> None:
    line = nw.line_geometry(bars([100, 100, 100], gap=80))
    inked = np.flatnonzero(line.bottom >= line.top)
    centres = np.array([float(inked[len(inked) // 2])])  # on the middle bar
    square, _, _ = nw.cut_windows(line, centres)
    wide, kept, _ = nw.cut_windows(line, centres, width=44)
    assert wide.shape == (1, nw.WINDOW, 44) and kept.all()
    np.testing.assert_allclose(wide[0, :, 8:36], square[0], atol=1e-6)
    inked_columns = np.flatnonzero(wide[0].max(axis=0) > 0.5)
    assert inked_columns.min() < 8 and inked_columns.max() >= 36  # both neighbours, in part
    assert not square[0, :, :3].any() and not square[0, :, -3:].any()


def test_training_labels_follow_the_distance_to_the_nearest_digit_centre() -> None:
    centres = np.array([0.0, 1.0, 3.0, 10.0, 20.0])
    labels = nw.window_labels(centres, np.full(5, 20.0), np.array([0.0, 20.0]), np.array([4, 7]))
    # 0/20 from digit 4: centred; 1/20 = 0.05: centred; 3/20 = 0.15: left out; 10/20: no digit
    assert labels.tolist() == [4, 4, -1, nw.NOT_A_DIGIT, 7]
    # two 1s only 0.2 heights apart: halfway between them is "no digit", not a third 1
    pair = nw.window_labels(
        np.array([10.0, 12.0, 14.0]), np.full(3, 20.0), np.array([10.0, 14.0]), np.array([1, 1])
    )
    assert pair.tolist() == [1, nw.NOT_A_DIGIT, 1]


def test_training_windows_come_labelled_from_a_number_picture() -> None:
    rng = np.random.default_rng(3)
    picture = make_number(rng, "dev", "overlapping")
    images, labels = nw.training_windows(picture, rng, width=40)
    assert images.dtype == np.uint8 and images.shape[1:] == (nw.WINDOW, 40)
    assert len(images) == len(labels) and set(labels.tolist()) <= set(range(11))
    written_digits = {int(c) for c in picture.text}
    assert set(labels[labels < nw.NOT_A_DIGIT].tolist()) == written_digits  # every digit, centred
    assert (labels == nw.NOT_A_DIGIT).mean() <= 0.4


# --------------------------------------------------------------------- decoding
def probabilities(rows: list[tuple[int, float]]) -> np.ndarray:
    """Windows' probabilities from (digit, P(digit)) pairs; the rest is P(no digit)."""
    table = np.zeros((len(rows), 11))
    for k, (digit, p) in enumerate(rows):
        table[k, digit] = p
        table[k, nw.NOT_A_DIGIT] += 1.0 - p
    return table


def read(rows: list[tuple[int, float]]) -> str:
    return "".join(str(d.digit) for d in nw.decode(probabilities(rows)))


def test_each_run_of_confident_windows_is_one_digit() -> None:
    blank = [(0, 0.0)] * 2
    assert (
        read([*blank, (3, 0.9), (3, 0.99), (3, 0.95), *blank, (5, 0.8), (5, 0.9), *blank]) == "35"
    )
    assert read(blank) == ""
    assert read([(7, 0.5), (7, 0.6)]) == ""  # never RUN_LEVEL sure: no digit


def test_a_run_splits_where_it_dips_or_where_its_digit_changes() -> None:
    dip = [(1, 0.99), (1, 0.99), (1, 0.72), (1, 0.99), (1, 0.99)]
    assert read(dip) == "11"  # two 1s close together: s dips below DIP x its peaks
    change = [(4, 0.95)] * nw.MIN_GROUP + [(2, 0.95)] * nw.MIN_GROUP
    assert read(change) == "42"
    flicker = [(4, 0.95)] * nw.MIN_GROUP + [(9, 0.95)] + [(4, 0.95)] * nw.MIN_GROUP
    assert read(flicker) == "4"  # one window's other opinion is not a digit of its own


def test_the_runner_up_swaps_the_least_certain_digit() -> None:
    table = probabilities([(2, 0.95), (0, 0.0), (7, 0.6)])
    table[2, 1] = 0.35  # the 7 might be a 1
    table[2, nw.NOT_A_DIGIT] = 0.05
    found = nw.decode(table)
    assert [d.digit for d in found] == [2, 7]
    text, confidence = nw.runner_up(found)
    assert text == "21" and confidence == pytest.approx(0.95 * 0.35)
    sure = nw.decode(probabilities([(2, 0.99), (0, 0.0), (7, 0.99)]))
    assert nw.runner_up(sure) is None


# --------------------------------------------------------------------- the shipped reader
@pytest.mark.parametrize(
    ("text", "step"), [("2026", 120), ("4571", 80), ("3908", 70), ("1234567", 100)]
)
def test_the_shipped_reader_reads_drawn_numbers(shipped, text: str, step: int) -> None:
    ink = find_ink(written(text, step=step))
    reading = nw.read_number(ink, shipped.number_reader.predict)
    assert reading.number == text
    boxes = [d.box for d in reading.digits]
    width, height = reading.input_size
    assert all(0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height for x0, y0, x1, y1 in boxes)
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)
    assert all(d.image.shape == (28, 28) for d in reading.digits)


def test_overlapping_digits_are_read_as_the_windows_read_them(shipped) -> None:
    data = png(written("3908", step=70))  # boxes 95 px wide, 70 apart: the strokes cross
    assert shipped.read_number(data, method="windows")["number"] == "3908"
    assert shipped.read_number(data)["number"] == "3908"


def test_auto_trusts_a_confident_window_reading_and_else_asks_segmentation(
    shipped, monkeypatch
) -> None:
    monkeypatch.setattr(shipped, "sequence_head", None)  # auto without the head (number_sequence)
    data = png(written("2026"))
    calls: list[str] = []
    original = shipped._predict
    monkeypatch.setattr(shipped, "_predict", lambda batch: calls.append("digit") or original(batch))
    assert shipped.read_number(data)["number"] == "2026"
    assert calls == []  # confident: segmentation was not asked
    monkeypatch.setattr(nw, "reading_from_windows", lambda ink, read: _unsure_reading())
    answer = shipped.read_number(data)
    # segmentation read it (and the chooser, if any, looked at the windows' digits): surer
    assert calls[0] == "digit" and answer["number"] == "2026"


def _unsure_reading():
    digit = nw.NumberDigit(np.zeros((28, 28), np.float32), np.full(11, 1 / 11), 9, (0, 0, 1, 1))
    return nw.NumberReading([digit], 1 / 11, None, (10, 10))


def test_methods_without_a_reader_and_unknown_methods_are_refused(shipped) -> None:
    data = png(written("17"))
    alone = Recogniser(shipped.model)
    assert alone.read_number(data)["number"] == shipped.read_number(data, "segmentation")["number"]
    with pytest.raises(ConfigError):
        alone.read_number(data, method="windows")
    with pytest.raises(ValueError):
        shipped.read_number(data, method="guess")


def test_the_windows_are_as_wide_as_the_reader_reads_them(shipped) -> None:
    seen = []

    class Watched(npcnn.Sequential):
        def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
            seen.append(x.shape[1:])
            return super().predict(x, batch_size)

    wide = build("shipped", seed=1, classes=11, width=40)
    reader = Watched(wide.layers, input_shape=(1, 28, 40))
    recogniser = Recogniser(shipped.model, number_reader=reader)
    assert recogniser.window_width == 40
    recogniser.warm_up()
    recogniser.read_number(png(written("17")), method="windows")  # an untrained reader: any answer
    assert seen and set(seen) == {(1, 28, 40)}
    with pytest.raises(ConfigError, match="same windows"):
        Recogniser(shipped.model, number_reader=reader, second_reader=shipped.number_reader)


def test_a_tiny_training_run_saves_a_reader_with_eleven_outputs(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("train_number_reader", None)
    import train_number_reader

    out = tmp_path / "reader.npz"
    args = ["--pictures", "12", "--val-pictures", "6", "--epochs", "1", "--workers", "1"]
    assert train_number_reader.main([*args, "--out", str(out), "--quiet"]) == 0
    model = npcnn.load(out)
    assert model.predict(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 11)
    assert model.metadata["name"] == "number-reader"


def test_the_app_reads_the_development_numbers_and_overlapping_ones_better_by_windows(
    shipped,
) -> None:
    """A guard, not the measurement (``evaluate_numbers.py`` is): 120 development pictures."""
    from npcnn.digits.number_set import number_set

    pictures = number_set("dev", 120)
    right = [shipped.read_number(p.png())["number"] == p.text for p in pictures]
    assert np.mean(right) >= 0.85
    overlapping = [p for p in pictures if p.category == "overlapping"]
    by_windows = sum(
        shipped.read_number(p.png(), "windows")["number"] == p.text for p in overlapping
    )
    by_segments = sum(
        shipped.read_number(p.png(), "segmentation")["number"] == p.text for p in overlapping
    )
    assert by_windows > by_segments


def box_overlap(a: tuple, b: tuple) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_each_digits_box_holds_that_digit_whole(shipped) -> None:
    """The boxes drawn on the pad (and the digit images a correction stores) hold the whole digit:
    a 0 or a 7's bar reaches past the windows centred on it.  Measured against the true boxes of
    60 development pictures read right (the windows' own span, BAND either side: mean 0.81)."""
    from npcnn.digits.number_set import number_set

    overlaps = []
    for picture in number_set("dev", 60):
        reading = nw.read_number(find_ink(picture.pixels), shipped.number_reader.predict)
        if reading.number == picture.text:
            boxes = zip((d.box for d in reading.digits), picture.boxes, strict=True)
            overlaps += [box_overlap(found, true) for found, true in boxes]
    assert len(overlaps) > 200
    assert np.mean(overlaps) > 0.84 and np.median(overlaps) > 0.87
