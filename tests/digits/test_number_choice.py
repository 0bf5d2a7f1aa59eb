"""``npcnn.digits.number_choice``: the learned choice between the windows' and segmentation's
readings - its features on constructed readings, the logistic regression's fit, the file, and
how ``Recogniser`` uses it.  How much it helps is measured by ``tune_number_chooser.py`` and
``evaluate_numbers.py``, not here."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_numbers import png, written

from npcnn.digits import number_choice as nc
from npcnn.digits import number_windows
from npcnn.digits.numbers import NumberDigit, NumberReading
from npcnn.digits.preprocess import find_ink
from npcnn.digits.recogniser import (
    NUMBER_READER_FILE,
    SECOND_READER_FILE,
    Recogniser,
    model_version,
    open_picture,
)
from npcnn.errors import ModelFileError

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "weights" / "mnist_cnn.npz"


def one_hot(digit: int, p: float) -> np.ndarray:
    """11 probabilities: ``p`` on ``digit``, the rest spread evenly."""
    probabilities = np.full(11, (1 - p) / 10)
    probabilities[digit] = p
    return probabilities


def reading(digits: str, p: float, boxes: list[tuple[int, int, int, int]]) -> NumberReading:
    parts = [
        NumberDigit(np.zeros((28, 28), np.float32), one_hot(int(d), p), int(d), box)
        for d, box in zip(digits, boxes, strict=True)
    ]
    return NumberReading(parts, p ** len(digits), None, (300, 100))


def test_the_features_say_what_each_reading_says_about_itself() -> None:
    by_windows = reading("17", 0.8, [(0, 0, 20, 40), (30, 0, 90, 40)])  # the 7's box 1.5 wide
    by_segments = reading("117", 0.9, [(0, 0, 20, 40), (30, 0, 50, 40), (55, 0, 90, 40)])
    digit_model = np.array([one_hot(1, 0.99), one_hot(4, 0.6)])  # reads the "7" as a 4
    digit_model[1, 10] += 0.2
    digit_model[1, 4] -= 0.2
    reader = np.array([one_hot(1, 0.95), one_hot(1, 0.7), one_hot(10, 0.6)])  # the 7: no digit
    features = nc.reading_features(by_windows, by_segments, digit_model, reader)
    x = dict(zip(nc.FEATURES, features, strict=True))
    assert x["log_windows_confidence"] == pytest.approx(2 * math.log(0.8))
    assert x["log_segments_confidence"] == pytest.approx(3 * math.log(0.9))
    assert x["length_difference"] == -1
    assert x["digit_model_log_probability"] == pytest.approx(
        math.log(0.99) + math.log(digit_model[1, 7])
    )
    assert x["digit_model_refusal"] == pytest.approx(digit_model[1, 10])
    assert x["digit_model_disagreement"] == 0.5
    assert x["segments_refusal"] == pytest.approx(0.01)
    assert x["windows_widest_box"] == pytest.approx(1.5)
    assert x["segments_widest_box"] == pytest.approx(35 / 40)
    assert x["windows_no_digit"] == pytest.approx(0.02)
    assert x["windows_trusted"] == 1.0
    assert x["reader_log_probability"] == pytest.approx(
        math.log(0.95) + math.log(0.7) + math.log(0.04)
    )
    assert x["reader_no_digit"] == pytest.approx(0.6)


def test_without_a_segmentation_reading_its_features_are_the_worst_possible() -> None:
    by_windows = reading("5", 0.3, [(0, 0, 20, 40)])
    features = nc.reading_features(by_windows, None, one_hot(5, 0.9)[None], None)
    x = dict(zip(nc.FEATURES, features, strict=True))
    assert x["log_segments_confidence"] == pytest.approx(math.log(1e-9))
    assert x["reader_log_probability"] == pytest.approx(math.log(1e-9))
    assert x["reader_no_digit"] == 1.0
    assert x["length_difference"] == 1 and x["windows_trusted"] == 0.0


def test_the_fit_learns_a_rule_it_can_apply_to_new_pictures() -> None:
    rng = np.random.default_rng(0)

    def pictures(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, len(nc.FEATURES)))
        # segmentation is right when it is surer than the windows, up to some noise
        return x, (x[:, 1] - x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(float)

    x, y = pictures(400)
    chooser = nc.fit_chooser(x, y, {"digit_model": "a", "number_reader": "b"})
    assert chooser.weights[1] > 1 and chooser.weights[0] < -1  # the two that matter
    assert max(abs(w) for w in chooser.weights[2:]) < 0.5 * chooser.weights[1]
    x_new, y_new = pictures(400)
    right = [chooser.prefers_segments(row) == bool(label) for row, label in zip(x_new, y_new,
                                                                                 strict=True)]  # fmt: skip
    assert np.mean(right) > 0.9


def test_a_fit_needs_one_feature_row_per_label() -> None:
    with pytest.raises(ValueError):
        nc.fit_chooser(np.zeros((5, 3)), np.zeros(5), {})


def test_a_chooser_survives_its_file_and_a_bad_file_is_refused(tmp_path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, len(nc.FEATURES)))
    chooser = nc.fit_chooser(x, (x[:, 0] > 0).astype(float), {"digit_model": "a"})
    path = tmp_path / nc.CHOOSER_FILE
    chooser.save(path)
    again = nc.Chooser.load(path)
    assert again == chooser
    assert again.probability_segments_right(x[0]) == chooser.probability_segments_right(x[0])
    data = json.loads(path.read_text())
    for broken in ("{not json", json.dumps({**data, "weights": data["weights"][:-1]}),
                   json.dumps({**data, "features": ["something", "else"]}),
                   json.dumps({k: v for k, v in data.items() if k != "bias"})):  # fmt: skip
        path.write_text(broken)
        with pytest.raises(ModelFileError):
            nc.Chooser.load(path)


@pytest.fixture(scope="module")
def shipped() -> Recogniser:
    if not (WEIGHTS.with_name(nc.CHOOSER_FILE).is_file()):
        pytest.skip("no shipped number chooser")
    return Recogniser.from_file(WEIGHTS)


def test_the_shipped_chooser_was_fitted_for_the_shipped_networks(shipped) -> None:
    assert shipped.chooser is not None
    reader_version = model_version((WEIGHTS.with_name(NUMBER_READER_FILE)).read_bytes())
    second = WEIGHTS.with_name(SECOND_READER_FILE)
    assert shipped.chooser.fitted_for == {
        "digit_model": shipped.version,
        "number_reader": reader_version,
        "second_reader": model_version(second.read_bytes()) if second.is_file() else "None",
    }


def test_a_chooser_fitted_for_other_networks_is_not_used(tmp_path, caplog) -> None:
    for name in (WEIGHTS.name, NUMBER_READER_FILE):
        shutil.copy(WEIGHTS.with_name(name), tmp_path / name)
    n = len(nc.FEATURES)
    chooser = nc.Chooser(nc.FEATURES, (0.0,) * n, (1.0,) * n, (0.0,) * n, 0.0,
                         {"digit_model": "0123456789ab", "number_reader": "ba9876543210"})  # fmt: skip
    chooser.save(tmp_path / nc.CHOOSER_FILE)
    with caplog.at_level(logging.WARNING):
        recogniser = Recogniser.from_file(tmp_path / WEIGHTS.name)
    assert recogniser.chooser is None
    assert "fitted for other networks" in caplog.text


def _always(segments: bool) -> nc.Chooser:
    """A chooser that always prefers segmentation (or never): only its bias speaks."""
    n = len(nc.FEATURES)
    return nc.Chooser(nc.FEATURES, (0.0,) * n, (1.0,) * n, (0.0,) * n,
                      50.0 if segments else -50.0, {})  # fmt: skip


def test_the_chooser_decides_only_where_the_readings_differ(shipped) -> None:
    by_windows = reading("17", 0.6, [(0, 0, 20, 40), (30, 0, 60, 40)])
    by_segments = reading("71", 0.6, [(0, 0, 20, 40), (30, 0, 60, 40)])
    same = reading("17", 0.9, [(0, 0, 20, 40), (30, 0, 60, 40)])
    ink = find_ink(open_picture(png(written("17"))))
    line = number_windows.line_geometry(ink.pixels)
    recogniser = Recogniser(shipped.model, number_reader=shipped.number_reader,
                            chooser=_always(True))  # fmt: skip
    chosen = recogniser.choose(by_windows, by_segments, ink, line)
    assert chosen.number == "71" and chosen.digits == by_segments.digits
    assert chosen.runner_up == ("17", by_windows.confidence)  # the other reading, as close
    assert recogniser.choose(by_windows, same, ink, line) is by_windows  # they agree
    recogniser.chooser = _always(False)
    chosen = recogniser.choose(by_windows, by_segments, ink, line)
    assert chosen.number == "17" and chosen.runner_up == ("71", by_segments.confidence)
    unlikely = reading("71", 0.05, [(0, 0, 20, 40), (30, 0, 60, 40)])  # 0.0025 < 0.1 x 0.36
    assert recogniser.choose(by_windows, unlikely, ink, line).runner_up is None  # its own


def test_the_reader_reads_windows_centred_on_another_readings_digits(shipped) -> None:
    """``reader_probabilities``: the reader's (both readers', averaged) probabilities for windows
    centred on each digit of segmentation's reading - the same as the windows it reads itself
    when a digit's middle falls on one of its own window centres."""
    data = png(written("407"))
    ink = find_ink(open_picture(data))
    by_segments = shipped.segment_number(data, "segmentation")
    assert by_segments.number == "407"
    read = shipped.read_windows(ink)
    probabilities = shipped.reader_probabilities(ink, read.line, by_segments)
    assert probabilities.shape == (3, 11)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert list(probabilities[:, :10].argmax(axis=1)) == [4, 0, 7]
    assert (probabilities[:, 10] < 0.5).all()  # a digit is centred in each
    # a box whose middle is one of the reader's own window centres gets that very window
    k = len(read.centres) // 2
    middle = read.centres[k] / read.line.zoom * ink.scale
    windows, kept = number_windows.windows_at_boxes(
        ink, read.line, [(middle - 5, 0, middle + 5, 9)]
    )
    assert kept[0] == read.kept[k]
    assert np.allclose(windows[0], read.windows[k], atol=1e-5)
    # with no ink near its middle, a box holds no digit
    far = reading("1", 0.9, [(ink.input_size[0] * 10, 0, ink.input_size[0] * 10 + 5, 5)])
    nothing = shipped.reader_probabilities(ink, read.line, far)
    assert nothing[0, 10] == 1.0


def test_auto_asks_segmentation_only_when_the_windows_are_unsure(shipped, monkeypatch) -> None:
    monkeypatch.setattr(shipped, "sequence_head", None)  # auto without the head (number_sequence)
    data = png(written("2026"))
    answers = {m: shipped.segment_number(data, m) for m in ("windows", "segmentation")}
    asked: list[str] = []
    original = shipped.read_by_segments
    monkeypatch.setattr(shipped, "read_by_segments",
                        lambda ink: asked.append("segments") or original(ink))  # fmt: skip
    reading_ = shipped.segment_number(data)
    sure = not nc.needs_second_look(answers["windows"])
    assert asked == ([] if sure else ["segments"])
    assert reading_.number == "2026"


def test_a_small_tuning_run_fits_and_saves_a_chooser(tmp_path, monkeypatch, capsys) -> None:
    if not (WEIGHTS.with_name(NUMBER_READER_FILE).is_file()):
        pytest.skip("no shipped number reader")
    monkeypatch.syspath_prepend(str(ROOT))
    import tune_number_chooser

    out = tmp_path / nc.CHOOSER_FILE
    args = ["--count", "40", "--fit-seeds", "21,22,23", "--check-seeds", "1", "--workers", "1"]
    assert tune_number_chooser.main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "check 1" in printed and "looks twice" in printed
    chooser = nc.Chooser.load(out)
    assert chooser.fitted_for["digit_model"] == model_version(WEIGHTS.read_bytes())
    with pytest.raises(SystemExit):  # a seed may not be both fitted on and checked on
        tune_number_chooser.main(["--fit-seeds", "1,2", "--check-seeds", "2"])


def test_two_readers_read_together_by_averaging_their_probabilities(shipped) -> None:
    if shipped.second_reader is None:
        pytest.skip("no second number reader")
    ink = find_ink(open_picture(png(written("4817"))))
    read = number_windows.window_probabilities(ink, shipped._predict_windows)
    first = read.probabilities.copy()
    both = shipped.with_second_reader(read)
    kept = read.kept
    second = shipped.second_reader.predict(read.windows[kept][:, None])
    # the app predicts with BatchNorm folded in (npcnn.fold_batchnorm): equal to float rounding
    np.testing.assert_allclose(both.probabilities[kept], (first[kept] + second) / 2, atol=1e-5)
    np.testing.assert_array_equal(both.probabilities[~kept], first[~kept])  # still "no digit"
    np.testing.assert_array_equal(read.probabilities, first)  # the first reading is untouched
    np.testing.assert_allclose(both.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(first[kept], second)  # two readers, not one twice
    assert shipped.describe()["number_reader"]["second_version"] == shipped.second_reader_version


def test_the_second_reader_is_asked_only_on_a_second_look(shipped, monkeypatch) -> None:
    if shipped.second_reader is None:
        pytest.skip("no second number reader")
    monkeypatch.setattr(shipped, "sequence_head", None)  # auto without the head (number_sequence)
    asked: list[int] = []
    original = shipped.with_second_reader
    monkeypatch.setattr(shipped, "with_second_reader",
                        lambda read: asked.append(1) or original(read))  # fmt: skip
    data = png(written("2026"))
    for gate, expected in ((1.01, [1]), (0.0, [])):  # always / never unsure
        monkeypatch.setattr(nc, "DIGIT_GATE", gate)
        monkeypatch.setattr(nc, "WINDOW_TRUST", gate)
        asked.clear()
        assert shipped.segment_number(data).number == "2026"
        assert asked == expected
