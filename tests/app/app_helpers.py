"""Helpers shared by the app's tests: drawings, uploads, error checks and metric reading."""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path

import numpy as np
from digit_strokes import draw_strokes  # tests/ is on sys.path (tests/conftest.py)
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # app.py lives at the project's root, outside the package

# The trained model: $NPCNN_TEST_WEIGHTS (e.g. a candidate) or the shipped one.
TRAINED = Path(os.environ.get("NPCNN_TEST_WEIGHTS") or ROOT / "weights" / "mnist_cnn.npz")


def png_bytes(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def draw_digit(
    digit: int,
    size: int = 280,
    box: tuple[float, float, float, float] = (0.3, 0.15, 0.7, 0.85),
    width: float = 0.06,
    ink: int | tuple[int, ...] = 0,
    paper: int | tuple[int, ...] = 255,
    mode: str = "L",
) -> Image.Image:
    """A drawing of ``digit`` inside ``box`` (fractions of the canvas), ink ``width`` x size."""
    image = Image.new(mode, (size, size), paper)
    draw_strokes(image, digit, box, width, ink)
    return image


def post_file(client, url: str, data: bytes, filename: str = "digit.png"):
    return client.post(
        url, data={"image": (io.BytesIO(data), filename)}, content_type="multipart/form-data"
    )


def decode_data_url_png(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def assert_error(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    message = response.get_json()["error"]
    assert isinstance(message, str) and len(message) > 5
    return message


# --------------------------------------------------------------------- Prometheus text


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text -> {(sample name, frozenset of label items): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client) -> dict[tuple[str, frozenset], float]:
    """``GET /metrics`` through a Flask test client, parsed."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse_metrics(response.get_data(as_text=True))


def metric_value(samples: dict, metric: str, **labels: str) -> float:
    """The value of sample ``metric`` with exactly these ``labels`` (0 when absent)."""
    return samples.get((metric, frozenset(labels.items())), 0.0)
