"""The Flask app through its test client: every endpoint, hostile inputs, a fuzz, and (with the
shipped model) real digits drawn every which way.

The model is ``$NPCNN_TEST_WEIGHTS`` or the shipped ``weights/mnist_cnn.npz``.  Without either, the
API tests run on a tiny random model saved to and loaded from a temporary file (conftest.py), and
the accuracy tests skip.  Serving (probes, metrics, batches, shedding) is in test_serving.py,
hostile bodies and formats in test_hostile.py, real server processes in test_server_process.py.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from app_helpers import (
    TRAINED,
    assert_error,
    decode_data_url_png,
    draw_digit,
    png_bytes,
    post_file,
)
from digit_strokes import draw_strokes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import app as app_module
import npcnn
from npcnn.digits.preprocess import to_mnist
from npcnn.digits.recogniser import LOW_CONFIDENCE
from npcnn.layers import Conv2D

needs_trained_model = pytest.mark.skipif(
    not TRAINED.is_file(), reason=f"no trained model at {TRAINED} (weights/mnist_cnn.npz) yet"
)


# --------------------------------------------------------------------- valid requests


def test_page_has_the_elements_the_tests_and_screen_readers_rely_on(client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for element_id in (
        "canvas",
        "prediction",
        "probabilities",
        "preview",
        "clear",
        "undo",
        "upload",
        "number",
        "saliency",
        "feature-maps",
    ):
        assert f'id="{element_id}"' in html, element_id
    assert 'aria-live="polite"' in html
    assert "https://" not in html and "http://" not in html  # no CDN: works offline
    assert "Content-Security-Policy" in response.headers


def test_static_files_are_served(client) -> None:
    for name in ("app.js", "style.css", "favicon.svg"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert len(response.data) > 100


def test_health_describes_the_model(client, model) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["model"]["parameters"] == model.parameter_count()
    assert body["model"]["layers"] == [layer.name for layer in model.layers]
    assert body["model"]["outputs"] == model.predict(np.zeros((1, 1, 28, 28), np.float32)).shape[1]
    accuracy = (model.metadata.get("metrics") or {}).get("test_accuracy")
    assert body["model"]["test_accuracy"] == accuracy


def test_predict_multipart_matches_the_model_on_the_preprocessed_image(client, model) -> None:
    image = draw_digit(7)
    response = post_file(client, "/api/predict", png_bytes(image))
    assert response.status_code == 200
    body = response.get_json()
    predicted = model.predict(to_mnist(image)[None, None])[0]
    expected, not_digit = predicted[:10], float(predicted[10]) if len(predicted) > 10 else 0.0
    np.testing.assert_allclose(body["probabilities"], expected, atol=1e-5)
    assert len(body["probabilities"]) == 10
    assert body["not_digit_probability"] == pytest.approx(not_digit, abs=1e-5)
    assert abs(sum(body["probabilities"]) + body["not_digit_probability"] - 1.0) < 1e-4
    assert body["digit"] == int(np.argmax(expected))
    assert body["confidence"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert body["low_confidence"] == (body["confidence"] < LOW_CONFIDENCE)
    assert body["runner_up"] != body["digit"]
    preview = decode_data_url_png(body["preview"])
    assert preview.shape == (28, 28)
    np.testing.assert_allclose(preview / 255.0, to_mnist(image), atol=1 / 255 + 1e-6)


def test_every_way_of_sending_the_image_gives_the_same_answer(client) -> None:
    data = png_bytes(draw_digit(3))
    b64 = base64.b64encode(data).decode()
    responses = [
        post_file(client, "/api/predict", data),
        client.post("/api/predict", json={"image": "data:image/png;base64," + b64}),
        client.post("/api/predict", json={"image": b64}),
        client.post("/api/predict", json={"image": base64.urlsafe_b64encode(data).decode()}),
        client.post("/api/predict", json={"image": b64.rstrip("=")}),  # padding dropped
        client.post(
            "/api/predict",
            json={"image": "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))},
        ),
        client.post("/api/predict", data=data, content_type="image/png"),
        client.post(
            "/api/predict",
            data={"image": "data:image/png;base64," + b64},
            content_type="multipart/form-data",
        ),
    ]
    bodies = [r.get_json() for r in responses]
    for response, body in zip(responses, bodies, strict=True):
        assert response.status_code == 200, body
        assert body["probabilities"] == bodies[0]["probabilities"]


@pytest.mark.parametrize("paper", [255, 0])
def test_blank_images_get_422_nothing_to_recognise(client, paper: int) -> None:
    blank = png_bytes(Image.new("L", (280, 280), paper))
    for url in ("/api/predict", "/api/predict_number", "/api/explain"):
        message = assert_error(post_file(client, url, blank), 422)
        assert "nothing to recognise" in message


def test_predict_number_reads_digits_left_to_right(client, model) -> None:
    image = Image.new("L", (600, 240), 255)
    boxes = [(0.05, 0.15, 0.22, 0.85), (0.40, 0.15, 0.57, 0.85), (0.75, 0.15, 0.92, 0.85)]
    for digit, box in zip((1, 4, 7), boxes, strict=True):
        draw_strokes(image, digit, box, 0.06, 0)
    response = post_file(client, "/api/predict_number", png_bytes(image))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert len(body["digits"]) == 3
    assert body["number"] == "".join(str(d["digit"]) for d in body["digits"])
    assert body["image_size"] == [600, 240]
    lefts = [d["box"][0] for d in body["digits"]]
    assert lefts == sorted(lefts)
    for d, (bx0, _, bx1, _) in zip(body["digits"], boxes, strict=True):
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 240
        centre = (x0 + x1) / 2 / 600
        assert bx0 - 0.05 <= centre <= bx1 + 0.05  # each box sits on its own digit
        assert len(d["probabilities"]) == 10
        assert decode_data_url_png(d["preview"]).shape == (28, 28)
        assert d["digit"] == int(np.argmax(d["probabilities"]))


def test_explain_returns_saliency_and_first_conv_feature_maps(client, flask_app, model) -> None:
    image = draw_digit(2)
    response = post_file(client, "/api/explain", png_bytes(image))
    assert response.status_code == 200
    body = response.get_json()
    x = to_mnist(image)[None, None]
    winner = int(np.argmax(model.predict(x)[0]))
    assert body["digit"] == winner
    gradient = np.abs(flask_app.extensions["npcnn"].explain_model.input_gradient(x, winner)[0, 0])
    np.testing.assert_allclose(body["saliency_values"], gradient / gradient.max(), atol=1e-3)
    assert max(map(max, body["saliency_values"])) == pytest.approx(1.0)
    saliency = decode_data_url_png(body["saliency"])
    assert saliency.shape == (28, 28, 3)
    first_conv = next(layer for layer in model.layers if isinstance(layer, Conv2D))
    assert body["feature_layer"] == first_conv.name
    assert body["feature_map_count"] == first_conv.out_channels
    rows, columns = body["feature_map_grid"]
    assert rows * columns >= first_conv.out_channels
    h, w = body["feature_map_size"]
    grid = decode_data_url_png(body["feature_maps"])
    assert grid.shape == (rows * (h + 1) - 1, columns * (w + 1) - 1, 3)


def test_concurrent_predictions_and_explanations_agree_with_sequential_ones(weights_path) -> None:
    # room for all four threads' explanations at once (load shedding is tested in test_serving)
    flask_app = app_module.create_app(weights_path, heavy_limit=4)
    images = [png_bytes(draw_digit(d)) for d in range(10)]
    client = flask_app.test_client()
    expected = [
        post_file(client, "/api/predict", data).get_json()["probabilities"] for data in images
    ]
    expected_saliency = post_file(client, "/api/explain", images[0]).get_json()["saliency_values"]
    failures: list[str] = []

    def worker(offset: int) -> None:
        c = flask_app.test_client()
        for i in range(10):
            k = (i + offset) % 10
            if k == 0:
                answer = post_file(c, "/api/explain", images[0])
                if answer.status_code != 200:
                    failures.append(f"explain answered {answer.status_code}")
                    continue
                got = answer.get_json()["saliency_values"]
                if not np.allclose(got, expected_saliency, atol=1e-4):
                    failures.append("explain differs")
            body = post_file(c, "/api/predict", images[k]).get_json()
            if not np.allclose(body["probabilities"], expected[k], atol=1e-5):
                failures.append(f"digit {k} differs")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


# --------------------------------------------------------------------- hostile input


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_header(width: int, height: int, pixels: bytes = b"") -> bytes:
    """A PNG whose header claims width x height (grey, 8 bit), with ``pixels`` as its data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(pixels))
        + png_chunk(b"IEND", b"")
    )


def bomb_png(side: int = 10_000) -> bytes:
    """A ~100 KB file that decompresses to side x side pixels (100 MB for 10 000)."""
    row = b"\x00" * (side + 1)  # filter byte + a row of black pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


HOSTILE_FILES = {
    "garbage": b"this is not an image at all" * 10,
    "truncated png": png_bytes(draw_digit(5))[:200],
    "png header only": png_bytes(draw_digit(5))[:33],
    "zero-size png": png_with_header(0, 0),
    "huge dimensions": png_with_header(100_000, 100_000, b"\x00" * 100),
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
    "html": b"<html><script>alert(1)</script></html>",
    "jpeg header only": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "gif header only": b"GIF89a\x10\x00\x10\x00",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
@pytest.mark.parametrize("url", ["/api/predict", "/api/predict_number", "/api/explain"])
def test_unusable_files_get_400(client, name: str, url: str) -> None:
    assert_error(post_file(client, url, HOSTILE_FILES[name]), 400)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_quickly(client) -> None:
    bomb = bomb_png()
    assert len(bomb) < 200_000
    started = time.perf_counter()
    message = assert_error(post_file(client, "/api/predict", bomb), 400)
    assert time.perf_counter() - started < 1.0  # refused from the header, never decompressed
    assert "too large" in message


def test_too_large_body_gets_413(client) -> None:
    big = b"\x00" * (app_module.MAX_UPLOAD_BYTES + 1)
    assert_error(post_file(client, "/api/predict", big), 413)
    assert_error(client.post("/api/predict", data=big, content_type="image/png"), 413)
    huge_json = json.dumps({"image": "A" * (app_module.MAX_UPLOAD_BYTES + 10)})
    assert_error(client.post("/api/predict", data=huge_json, content_type="application/json"), 413)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded", None]
)
def test_unsupported_content_types_get_415(client, content_type) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post("/api/predict", data=b"image=abc", headers=headers)
    assert_error(response, 415)


BAD_JSON_BODIES = {
    "malformed json": b'{"image": "abc',
    "not an object": b'["data:image/png;base64,AAAA"]',
    "missing field": b'{"picture": "AAAA"}',
    "field not a string": b'{"image": 12345}',
    "field null": b'{"image": null}',
    "empty string": b'{"image": ""}',
    "bad base64 characters": b'{"image": "!!!not base64***"}',
    "base64 one char too many": b'{"image": "AAAAA"}',
    "data url without base64": b'{"image": "data:image/png,%89PNG"}',
    "data url without comma": b'{"image": "data:image/png;base64"}',
    "data url with garbage": b'{"image": "data:image/png;base64,@@@@"}',
    "base64 of garbage": b'{"image": "aGVsbG8gd29ybGQ="}',
    "invalid utf-8": b'{"image": "\xff\xfe"}',
}


@pytest.mark.parametrize("name", sorted(BAD_JSON_BODIES))
def test_bad_json_bodies_get_400(client, name: str) -> None:
    response = client.post(
        "/api/predict", data=BAD_JSON_BODIES[name], content_type="application/json"
    )
    assert_error(response, 400)


def test_multipart_without_the_image_field_or_with_an_empty_file_gets_400(client) -> None:
    message = assert_error(
        client.post("/api/predict", data={"other": "x"}, content_type="multipart/form-data"), 400
    )
    assert "image" in message
    assert_error(post_file(client, "/api/predict", b""), 400)
    assert_error(client.post("/api/predict", data=b"", content_type="image/png"), 400)
    # multipart without a boundary: nothing can be parsed out of it
    assert_error(
        client.post("/api/predict", data=b"xyz", headers={"Content-Type": "multipart/form-data"}),
        400,
    )


def test_wrong_method_and_unknown_path_get_json_errors(client) -> None:
    response = client.get("/api/predict")
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]
    assert_error(client.post("/api/health"), 405)
    assert_error(client.get("/api/nope"), 404)
    assert_error(client.get("/../../etc/passwd"), 404)
    assert_error(client.get("/static/../app.py"), 404)


def test_uploads_never_touch_the_filesystem(client, monkeypatch) -> None:
    """Werkzeug spools big uploads to temporary files; the app keeps them in memory instead."""
    import tempfile

    def forbidden(*args, **kwargs):
        raise AssertionError("a temporary file was created for an upload")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, forbidden)
    noise = np.random.default_rng(0).integers(0, 256, (1100, 1100), dtype=np.uint8)
    data = png_bytes(Image.fromarray(noise))
    assert len(data) > 1_000_000  # well past werkzeug's 500 KB spooling threshold
    response = post_file(client, "/api/predict", data)
    assert response.status_code in (200, 422)


def test_unexpected_failures_are_json_500_not_html(flask_app, monkeypatch) -> None:
    def broken(images):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(flask_app.extensions["npcnn"], "classify", broken)
    response = post_file(flask_app.test_client(), "/api/predict", png_bytes(draw_digit(1)))
    assert_error(response, 500)
    assert "simulated bug" not in response.get_data(as_text=True)  # no internals leak


def test_create_app_takes_a_model_object(model) -> None:
    client = app_module.create_app(model=model).test_client()
    body = post_file(client, "/api/predict", png_bytes(draw_digit(8))).get_json()
    expected = model.predict(to_mnist(draw_digit(8))[None, None])[0]
    np.testing.assert_allclose(body["probabilities"], expected[:10], atol=1e-5)


def test_predict_always_says_whether_it_is_a_digit(client, refusing_model) -> None:
    body = post_file(client, "/api/predict", png_bytes(draw_digit(8))).get_json()
    assert isinstance(body["is_digit"], bool) and isinstance(body["not_digit_probability"], float)
    refusing = app_module.create_app(model=refusing_model).test_client()
    body = post_file(refusing, "/api/predict", png_bytes(draw_digit(8))).get_json()
    assert body["is_digit"] is False and body["digit"] == 4
    assert len(body["probabilities"]) == 10 and body["not_digit_probability"] > 0.9
    number = post_file(refusing, "/api/predict_number", png_bytes(draw_digit(8))).get_json()
    assert [d["is_digit"] for d in number["digits"]] == [False]
    explained = post_file(refusing, "/api/explain", png_bytes(draw_digit(8))).get_json()
    assert explained["is_digit"] is False and explained["digit"] == 4


def test_command_line_reports_a_missing_model_file(capsys, tmp_path) -> None:
    assert app_module.main(["--weights", str(tmp_path / "absent.npz")]) == 2
    assert "no model file" in capsys.readouterr().err


def test_a_corrupt_model_file_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(npcnn.errors.ModelFileError):
        app_module.create_app(bad)


# --------------------------------------------------------------------- fuzz

FUZZ_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ_SETTINGS
@given(
    data=st.binary(max_size=2000),
    url=st.sampled_from(["/api/predict", "/api/predict_number", "/api/explain"]),
)
def test_fuzz_random_bytes_never_give_a_server_error(client, data: bytes, url: str) -> None:
    multipart_head = (
        b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    )
    for response in (
        post_file(client, url, data),  # as the uploaded file
        client.post(url, data=data, content_type="image/png"),  # as a raw body
        # as a whole multipart body, and as a broken one
        client.post(url, data=data, content_type="multipart/form-data; boundary=xyz"),
        client.post(
            url, data=multipart_head + data, content_type="multipart/form-data; boundary=xyz"
        ),
    ):
        assert response.status_code < 500, response.get_data(as_text=True)
        if response.status_code >= 400:
            assert "error" in response.get_json()


@FUZZ_SETTINGS
@given(data=st.binary(min_size=8, max_size=400))
def test_fuzz_bytes_after_a_png_signature_never_give_a_server_error(client, data: bytes) -> None:
    response = post_file(client, "/api/predict", b"\x89PNG\r\n\x1a\n" + data)
    assert response.status_code < 500


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["image", "x", "data"]) | st.text(max_size=5), children, max_size=4
        )
    ),
    max_leaves=12,
)


@FUZZ_SETTINGS
@given(body=JSON_VALUES)
def test_fuzz_random_json_never_gives_a_server_error(client, body) -> None:
    response = client.post("/api/predict", data=json.dumps(body), content_type="application/json")
    assert response.status_code < 500
    assert response.status_code == 400
    assert "error" in response.get_json()


@FUZZ_SETTINGS
@given(text=st.text(max_size=300))
def test_fuzz_random_image_strings_never_give_a_server_error(client, text: str) -> None:
    for value in (text, "data:image/png;base64," + text):
        response = client.post("/api/predict", json={"image": value})
        assert response.status_code < 500
        assert "error" in response.get_json()


# --------------------------------------------------------------------- real digits


def predicted_digit(client, image: Image.Image, format: str = "PNG") -> int:
    response = post_file(client, "/api/predict", png_bytes(image, format))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["digit"]


@pytest.mark.slow
@needs_trained_model
def test_mnist_test_digits_on_white_paper_are_recognised(client) -> None:
    """Real MNIST test digits, upscaled to 280 x 280, dark ink on white: like a drawing."""
    from npcnn.digits.data import load_mnist

    _, (x_test, y_test) = load_mnist()
    picks = np.random.default_rng(7).choice(len(x_test), 100, replace=False)
    correct = 0
    for i in picks:
        big = Image.fromarray(255 - x_test[i]).resize((280, 280), Image.Resampling.BILINEAR)
        correct += predicted_digit(client, big) == int(y_test[i])
    assert correct >= 96, f"{correct}/100"


VARIANTS = {
    "centred": {},
    "small off-centre top-left": {"box": (0.05, 0.05, 0.2, 0.3), "width": 0.025},
    "small bottom-right": {"box": (0.72, 0.62, 0.9, 0.95), "width": 0.03},
    "thick": {"width": 0.12},
    "thin": {"width": 0.015},
    "white ink on black": {"ink": 255, "paper": 0},
    "blue ink on yellow paper": {"ink": (30, 40, 160), "paper": (250, 230, 120), "mode": "RGB"},
}


@needs_trained_model
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_drawn_digits_are_recognised_whatever_size_place_stroke_and_colour(client, variant) -> None:
    options = VARIANTS[variant]
    wrong = {d: predicted_digit(client, draw_digit(d, **options)) for d in range(10)}
    wrong = {d: got for d, got in wrong.items() if got != d}
    assert len(wrong) <= 1, f"{variant}: digit -> prediction {wrong}"


@needs_trained_model
def test_a_photographed_looking_upload_is_recognised(client) -> None:
    """Grey-blue ink on uneven off-white paper with noise and a shadow, as a big JPEG."""
    rng = np.random.default_rng(1)
    size = 900
    yy, xx = np.mgrid[0:size, 0:size] / size
    paper = 200 + 40 * xx - 30 * yy  # uneven lighting
    ink_mask = (
        np.asarray(
            draw_digit(4, size=size, box=(0.35, 0.25, 0.65, 0.75), ink=255, paper=0),
            dtype=np.float64,
        )
        / 255
    )
    grey = paper * (1 - ink_mask) + 60 * ink_mask + rng.normal(0, 8, (size, size))
    rgb = np.stack([grey * 0.95, grey * 0.97, grey * 1.0], axis=-1).clip(0, 255).astype(np.uint8)
    photo = Image.fromarray(rgb)
    assert predicted_digit(client, photo, "JPEG") == 4
