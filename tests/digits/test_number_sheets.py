"""number_sheets.py: sheets of number pictures to read by eye, scored against the key and the app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import number_sheets
from npcnn.digits.recogniser import Recogniser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def recogniser() -> Recogniser:
    return Recogniser.from_file(ROOT / "weights" / "mnist_cnn.npz")


def test_sheets_hold_the_sampled_pictures_and_the_key_their_numbers(tmp_path) -> None:
    sample = number_sheets.Sample("dev", 7, 36, "touching", 3, 11)
    paths = number_sheets.make(sample, tmp_path)
    assert [p.name for p in paths] == ["sheet0.png"]
    assert Image.open(paths[0]).size == (1160, 800)
    key = json.loads((tmp_path / "key.json").read_text())
    pictures = sample.pictures()
    assert key["numbers"] == [p.text for p in pictures]
    assert all(p.category == "touching" for p in pictures)
    assert number_sheets.Sample(**key["sample"]) == sample  # the key makes the pictures again


def test_a_sample_larger_than_the_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="only 2 plain pictures"):
        number_sheets.Sample("dev", 7, 12, "plain", 3, 11).pictures()


def test_readings_are_scored_against_the_key_beside_the_app(tmp_path, recogniser) -> None:
    sample = number_sheets.Sample("dev", 7, 24, "plain", 4, 11)
    number_sheets.make(sample, tmp_path)
    truth = json.loads((tmp_path / "key.json").read_text())["numbers"]
    wrong = "1" + truth[2]  # a digit too many
    readings = tmp_path / "readings.txt"
    readings.write_text("# a comment\n" + "\n".join([truth[0], truth[1], wrong, "?"]) + "\n")
    result = number_sheets.score(tmp_path, readings, recogniser)
    assert result["pictures"] == 4 and result["yours_exact"] == 2
    missed = {m["index"]: m for m in result["misses"]}
    assert missed[2]["yours"] == wrong and missed[3]["yours"] == ""
    apps = [recogniser.read_number(p.png())["number"] for p in sample.pictures()]
    assert result["app_exact"] == sum(a == t for a, t in zip(apps, truth, strict=True))


def test_one_reading_per_picture_is_required(tmp_path, recogniser) -> None:
    number_sheets.make(number_sheets.Sample("dev", 7, 12, "plain", 2, 11), tmp_path)
    (tmp_path / "readings.txt").write_text("12\n")
    with pytest.raises(ValueError, match="1 readings for 2 pictures"):
        number_sheets.score(tmp_path, tmp_path / "readings.txt", recogniser)
