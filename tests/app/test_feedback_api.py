"""``POST /api/feedback`` and its undo, ``DELETE /api/feedback/<id>``, on a temporary SQLite file;
the store's ``delete`` on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import io
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from app_helpers import (
    assert_error,
    decode_data_url_png,
    draw_digit,
    metric_value,
    png_bytes,
    post_file,
    scrape,
)
from digit_strokes import draw_strokes
from PIL import Image

import app as app_module
from npcnn.digits.feedback import Correction, FeedbackStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "digits"))
import postgres_cluster  # noqa: E402

postgres_cluster_fixture = postgres_cluster.postgres_cluster_fixture
postgres_database_fixture = postgres_cluster.postgres_database_fixture

UNREACHABLE = "postgresql+psycopg://npcnn@127.0.0.1:1/npcnn"


@pytest.fixture()
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'feedback.sqlite3'}"


@pytest.fixture()
def feedback_app(weights_path: Path, db_url: str):
    app = app_module.create_app(weights_path, database_url=db_url, feedback_burst=50)
    yield app
    app.extensions["npcnn.corrections"].store.close()


@pytest.fixture()
def fclient(feedback_app):
    return feedback_app.test_client()


def rows(db_url: str):
    with FeedbackStore(db_url) as store:
        return list(store.iter_rows(with_upload=True))


def post_correction(client, data: bytes, label: str, **fields):
    form = {"image": (io.BytesIO(data), "digit.png"), "label": label, **fields}
    return client.post("/api/feedback", data=form, content_type="multipart/form-data")


def test_a_correction_is_stored_with_the_servers_own_reading(fclient, feedback_app, db_url):
    picture = png_bytes(draw_digit(3))
    shown = post_file(fclient, "/api/predict", picture).get_json()
    response = post_correction(fclient, picture, "8")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert isinstance(body["id"], int) and body["undo_token"] and body["undo_seconds"] > 0
    [row] = rows(db_url)
    assert row.id == body["id"]
    assert row.label == "8"
    assert row.predicted == str(shown["digit"])
    assert row.confidence == pytest.approx(shown["confidence"], abs=1e-6)
    assert row.model_version == feedback_app.extensions["npcnn"].version
    assert row.upload == picture
    assert row.image.shape == (28, 28) and row.image.dtype == np.uint8
    preview = decode_data_url_png(shown["preview"])
    assert np.abs(row.image.astype(int) - preview.astype(int)).max() <= 1  # what the model saw
    assert abs((row.created.timestamp()) - time.time()) < 60


def test_json_and_not_a_digit(fclient, db_url):
    url = "data:image/png;base64," + base64.b64encode(png_bytes(draw_digit(5))).decode()
    response = fclient.post("/api/feedback", json={"image": url, "label": "none", "shown": 5})
    assert response.status_code == 201, response.get_json()
    response = fclient.post("/api/feedback", json={"image": url, "label": 4})
    assert response.status_code == 201
    assert [row.label for row in rows(db_url)] == ["none", "4"]


@pytest.mark.parametrize("label", ["10", "x", "", "-1", "3.5", "nonee"])
def test_a_bad_label_is_400_and_nothing_is_stored(fclient, db_url, label):
    assert_error(post_correction(fclient, png_bytes(draw_digit(1)), label), 400)
    assert rows(db_url) == []


def test_bad_corrections_are_4xx_and_store_nothing(fclient, db_url):
    picture = png_bytes(draw_digit(1))
    blank = png_bytes(Image.new("L", (280, 280), 255))
    form = {"image": (io.BytesIO(picture), "d.png")}
    assert_error(fclient.post("/api/feedback", data=form), 400)  # no label
    no_image = fclient.post(
        "/api/feedback", data={"label": "3"}, content_type="multipart/form-data"
    )
    assert_error(no_image, 400)
    assert_error(fclient.post("/api/feedback", data={"label": "3"}), 415)  # urlencoded
    assert_error(post_correction(fclient, blank, "3"), 422)
    assert_error(post_correction(fclient, b"not a picture", "3"), 400)
    assert_error(post_correction(fclient, picture, "3", index="-2"), 400)
    assert_error(post_correction(fclient, picture, "3", index="5"), 400)  # no 6th digit
    assert_error(fclient.post("/api/feedback", json={"image": 5, "label": "3"}), 400)
    assert_error(fclient.post("/api/feedback", json=[1, 2]), 400)
    assert_error(fclient.post("/api/feedback", data=picture, content_type="image/png"), 415)
    too_big = b"\x89PNG" + bytes(2 * 1024 * 1024 + 10)  # over the store's cap, under the body's
    assert_error(post_correction(fclient, too_big, "3"), 413)
    assert rows(db_url) == []


def test_number_mode_corrects_one_digit_by_its_index(fclient, db_url):
    image = Image.new("L", (600, 240), 255)
    boxes = [(0.05, 0.15, 0.22, 0.85), (0.40, 0.15, 0.57, 0.85), (0.75, 0.15, 0.92, 0.85)]
    for digit, box in zip((1, 4, 7), boxes, strict=True):
        draw_strokes(image, digit, box, 0.06, 0)
    picture = png_bytes(image)
    number = post_file(fclient, "/api/predict_number", picture).get_json()
    response = post_correction(fclient, picture, "9", index="1")
    assert response.status_code == 201, response.get_json()
    [row] = rows(db_url)
    second = number["digits"][1]
    assert row.label == "9" and row.predicted == str(second["digit"])
    preview = decode_data_url_png(second["preview"])
    assert np.abs(row.image.astype(int) - preview.astype(int)).max() <= 1


def test_undo_within_the_window_with_the_token_only(fclient, feedback_app, db_url):
    picture = png_bytes(draw_digit(2))
    first = post_correction(fclient, picture, "7").get_json()
    second = post_correction(fclient, picture, "6").get_json()
    url = f"/api/feedback/{first['id']}"
    assert_error(fclient.delete(url), 403)  # no token
    assert_error(fclient.delete(url, headers={"X-Undo-Token": second["undo_token"]}), 403)
    assert_error(fclient.delete(url, headers={"X-Undo-Token": "123.abc"}), 403)
    assert_error(fclient.delete(url, headers={"X-Undo-Token": "nonsense"}), 403)
    assert len(rows(db_url)) == 2
    response = fclient.delete(url, json={"undo_token": first["undo_token"]})
    assert response.status_code == 204
    assert [row.id for row in rows(db_url)] == [second["id"]]
    assert_error(fclient.delete(url, headers={"X-Undo-Token": first["undo_token"]}), 404)
    feedback_app.extensions["npcnn.corrections"].undo_seconds = 0.0
    late = post_correction(fclient, picture, "5").get_json()
    time.sleep(0.01)
    message = assert_error(
        fclient.delete(f"/api/feedback/{late['id']}", headers={"X-Undo-Token": late["undo_token"]}),
        403,
    )
    assert "too late" in message
    assert len(rows(db_url)) == 2


def test_the_rate_limit_is_429_with_retry_after(weights_path, db_url):
    app = app_module.create_app(
        weights_path, database_url=db_url, feedback_per_minute=1, feedback_burst=2
    )
    client = app.test_client()
    picture = png_bytes(draw_digit(4))
    assert post_correction(client, picture, "1").status_code == 201
    assert post_correction(client, picture, "1").status_code == 201
    response = post_correction(client, picture, "1")
    assert_error(response, 429)
    assert int(response.headers["Retry-After"]) >= 1
    assert len(rows(db_url)) == 2
    other = client.post(
        "/api/feedback",
        data={"image": (io.BytesIO(picture), "d.png"), "label": "1"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert other.status_code == 201  # per client


def test_a_database_that_is_down_is_503_while_predictions_and_readiness_go_on(weights_path):
    app = app_module.create_app(weights_path, database_url=UNREACHABLE)
    client = app.test_client()
    picture = png_bytes(draw_digit(6))
    started = time.monotonic()
    response = post_correction(client, picture, "6")
    assert time.monotonic() - started < 15
    message = assert_error(response, 503)
    assert "unavailable" in message and "npcnn@127.0.0.1:1" in message
    assert post_file(client, "/api/predict", picture).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_feedback_is_counted_in_the_metrics(fclient):
    post_correction(fclient, png_bytes(draw_digit(0)), "0")
    post_correction(fclient, png_bytes(draw_digit(0)), "zero")
    samples = scrape(fclient)
    count = "npcnn_http_requests_total"
    labels = {"endpoint": "/api/feedback", "method": "POST"}
    assert metric_value(samples, count, status="201", **labels) == 1
    assert metric_value(samples, count, status="400", **labels) == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    return request.getfixturevalue("postgres_database")


def test_store_delete(any_url):
    rng = np.random.default_rng(0)
    with FeedbackStore(any_url) as store:
        ids = [
            store.add(
                Correction(
                    image=rng.integers(0, 256, (28, 28), dtype=np.uint8),
                    label=str(i),
                    predicted=1,
                    confidence=0.5,
                    model_version="test",
                )
            )
            for i in range(3)
        ]
        assert store.delete(ids[1]) is True
        assert store.delete(ids[1]) is False
        assert store.delete(10**9) is False
        assert [row.id for row in store.iter_rows()] == [ids[0], ids[2]]
        with pytest.raises(ValueError):
            store.delete("1")  # type: ignore[arg-type]
