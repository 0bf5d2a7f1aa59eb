"""``/api/predict_number``'s number fields (confidence, runner_up) and ``/api/predict``'s
``looks_like_number``, through the Flask test client."""

from __future__ import annotations

import math

import pytest
from app_helpers import assert_error, draw_digit, png_bytes, post_file
from digit_strokes import draw_strokes
from PIL import Image


def written(text: str, step: int = 120) -> Image.Image:
    image = Image.new("L", (step * len(text) + 100, 200), 255)
    for i, char in enumerate(text):
        x0 = (40 + i * step) / image.width
        draw_strokes(image, int(char), (x0, 0.15, x0 + 95 / image.width, 0.85), 0.06, 0)
    return image


def test_predict_number_answers_the_number_its_confidence_and_runner_up(client) -> None:
    response = post_file(client, "/api/predict_number", png_bytes(written("147")))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) >= {"number", "digits", "image_size", "low_confidence", "model"}
    assert set(body) >= {"confidence", "runner_up"}
    assert len(body["number"]) == len(body["digits"]) == 3
    assert body["number"] == "".join(str(d["digit"]) for d in body["digits"])
    assert isinstance(body["confidence"], float) and 0.0 < body["confidence"] <= 1.0
    product = math.prod(d["confidence"] for d in body["digits"])
    assert body["confidence"] == pytest.approx(product, rel=1e-4)
    runner_up = body["runner_up"]
    if runner_up is not None:
        assert set(runner_up) == {"number", "confidence"}
        assert runner_up["number"] != body["number"] and runner_up["number"].isdigit()
        assert 0.1 * body["confidence"] <= runner_up["confidence"] + 1e-6
    width, height = body["image_size"]
    for digit in body["digits"]:
        x0, y0, x1, y1 = digit["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def test_predict_says_whether_the_picture_looks_like_a_number(client) -> None:
    number = post_file(client, "/api/predict", png_bytes(written("147"))).get_json()
    assert number["looks_like_number"] is True
    single = post_file(client, "/api/predict", png_bytes(draw_digit(4))).get_json()
    assert single["looks_like_number"] is False
    assert isinstance(single["digit"], int)


@pytest.mark.parametrize("url", ["/api/predict_number", "/api/predict"])
def test_bad_pictures_are_4xx_not_500(client, url: str) -> None:
    assert_error(post_file(client, url, b"not a picture at all"), 400)
    assert_error(post_file(client, url, png_bytes(Image.new("L", (300, 100), 255))), 422)
    assert_error(client.post(url, json={"image": 5}), 400)
