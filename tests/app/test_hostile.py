"""Hostile bodies and pictures, as an attacker would send them: every body the server cannot use
gets a 4xx JSON error, quickly, never a 500.

Deeply nested and very large JSON, many-part multipart, animated pictures (GIF, APNG, WebP) and
every format Pillow can write (the server reads the usual ones and refuses the rest with 400).
The other hostile inputs (truncated files, bombs, bad base64, fuzzing) are in test_app.py.
"""

from __future__ import annotations

import io
import json
import struct
import time

import numpy as np
import pytest
from app_helpers import TRAINED, assert_error, draw_digit, png_bytes, post_file
from PIL import Image

import app as app_module

PREDICTING = ["/api/predict", "/api/predict_number", "/api/explain", "/api/predict_batch"]


def post_json_bytes(client, url: str, body: bytes):
    return client.post(url, data=body, content_type="application/json")


# --------------------------------------------------------------------- JSON


DEEP_BODIES = {
    "100,000 nested lists": b"[" * 100_000 + b"]" * 100_000,
    "100,000 nested lists, unclosed": b"[" * 100_000,
    "100,000 nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "nesting inside the image field": b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nesting inside the images list": b'{"images": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}",
    "a thousand levels": b"[" * 1000 + b"]" * 1000,
}


@pytest.mark.parametrize("name", sorted(DEEP_BODIES))
@pytest.mark.parametrize("url", PREDICTING)
def test_deeply_nested_json_gets_400_not_500(client, name: str, url: str) -> None:
    started = time.perf_counter()
    message = assert_error(post_json_bytes(client, url, DEEP_BODIES[name]), 400)
    assert time.perf_counter() - started < 1.0
    assert "JSON" in message


def test_nesting_within_the_bound_is_parsed_and_refused_for_its_shape(client) -> None:
    body = b'{"image": ' + b"[" * 100 + b"]" * 100 + b"}"
    assert "string" in assert_error(post_json_bytes(client, "/api/predict", body), 400)


VERY_LARGE_JSON = {
    "a list of 4 million numbers": b"[" + b"0," * 4_000_000 + b"0]",
    "an object of 800,000 keys": b"{" + b",".join(b'"k%d":1' % i for i in range(800_000)) + b"}",
    "9 MB of base64 garbage": b'{"image": "' + b"QUFB" * 2_300_000 + b'"}',
    "9 MB string of escapes": b'{"image": "' + b"\\u0041" * 1_500_000 + b'"}',
    "a huge integer": b'{"image": ' + b"9" * 5_000_000 + b"}",
    "a huge float": b'{"image": 1e999999}',
    "a JSON string with a BOM": b'\xef\xbb\xbf{"image": "AAAA"}',
    "utf-16": '{"image": "AAAA"}'.encode("utf-16"),
    "NaN and Infinity": b'{"image": NaN, "x": Infinity}',
    "a lone surrogate": b'{"image": "\\ud800"}',
}


@pytest.mark.parametrize("name", sorted(VERY_LARGE_JSON))
def test_very_large_or_strange_json_gets_400_quickly(client, name: str) -> None:
    body = VERY_LARGE_JSON[name]
    assert len(body) < app_module.MAX_UPLOAD_BYTES
    started = time.perf_counter()
    assert_error(post_json_bytes(client, "/api/predict", body), 400)
    assert_error(post_json_bytes(client, "/api/predict_batch", body), 400)
    assert time.perf_counter() - started < 5.0


def test_json_over_the_size_limit_gets_413(client) -> None:
    body = b"[" + b"0," * (app_module.MAX_UPLOAD_BYTES // 2) + b"0]"
    for url in PREDICTING:
        assert_error(post_json_bytes(client, url, body), 413)


# --------------------------------------------------------------------- multipart


def many_part_body(parts: int, name: str = "field", filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    part = f"--b\r\nContent-Disposition: {disposition}\r\n\r\nx\r\n".encode()
    return part * parts + b"--b--\r\n"


@pytest.mark.parametrize("parts", [app_module.MAX_FORM_PARTS + 1, 10_000, 150_000])
@pytest.mark.parametrize("url", PREDICTING)
def test_many_part_multipart_gets_413(client, parts: int, url: str) -> None:
    body = many_part_body(parts)
    assert len(body) < app_module.MAX_UPLOAD_BYTES  # refused for its parts, not its size
    started = time.perf_counter()
    message = assert_error(
        client.post(url, data=body, content_type="multipart/form-data; boundary=b"), 413
    )
    assert "parts" in message
    assert time.perf_counter() - started < 5.0


def test_many_files_in_one_field_are_a_413_for_a_batch(client) -> None:
    body = many_part_body(app_module.MAX_BATCH + 1, name="images", filename="x.png")
    response = client.post(
        "/api/predict_batch", data=body, content_type="multipart/form-data; boundary=b"
    )
    assert "at most 64" in assert_error(response, 413)


def test_a_part_with_a_huge_header_or_no_end_gets_4xx(client) -> None:
    bodies = [
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="'
        + b"a" * 2_000_000
        + b'"\r\n\r\nx\r\n--b--\r\n',
        b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\n' + b"x" * 1000,  # no end
        b"--b\r\n" + b"X-Header: y\r\n" * 100_000 + b"\r\nx\r\n--b--\r\n",
        b"--b--\r\n",
    ]
    for body in bodies:
        response = client.post(
            "/api/predict", data=body, content_type="multipart/form-data; boundary=b"
        )
        assert 400 <= response.status_code < 500, response.status_code
        assert response.get_json()["error"]


# --------------------------------------------------------------------- animated and exotic pictures


def animation(format: str) -> bytes:
    """Two frames: a 4, then a 7 (the server reads the first)."""
    frames = [draw_digit(4).convert("RGB"), draw_digit(7).convert("RGB")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=format, save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


@pytest.mark.parametrize("format", ["GIF", "PNG", "WEBP"])  # PNG with save_all: an APNG
def test_animated_pictures_are_read_from_their_first_frame(client, format: str) -> None:
    data = animation(format)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    response = post_file(client, "/api/predict", data)
    assert response.status_code == 200, response.get_json()
    if TRAINED.is_file():
        assert response.get_json()["digit"] == 4


def pillow_writable_formats() -> list[str]:
    Image.init()
    return sorted(Image.SAVE)


READ_FORMATS = {"PNG", "JPEG", "MPO", "GIF", "BMP", "WEBP", "TIFF", "PPM", "TGA", "ICO"}


def saved(image: Image.Image, format: str) -> bytes | None:
    """``image`` saved as ``format`` in the first mode that format accepts, or None."""
    for mode in ("L", "RGB", "1", "RGBA"):
        try:
            return png_bytes(image.convert(mode), format)
        except Exception:  # this mode or format cannot be written (missing codec...)
            continue
    return None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # formats Pillow is retiring
@pytest.mark.parametrize("format", pillow_writable_formats())
def test_every_format_pillow_writes_is_read_or_refused_with_400(client, format: str) -> None:
    data = saved(draw_digit(4, size=96), format)
    if data is None:
        pytest.skip(f"Pillow cannot write {format} here")
    response = post_file(client, "/api/predict", data, filename=f"x.{format.lower()}")
    if format in READ_FORMATS:
        assert response.status_code == 200, response.get_json()
    else:
        assert_error(response, 400)


def psd_bytes(width: int = 32, height: int = 32) -> bytes:
    """A minimal Photoshop file: one grey 8-bit channel, raw pixels (Pillow reads PSD)."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 1, height, width, 8, 1)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + b"\x80" * (width * height)


EXOTIC = {
    "psd": psd_bytes(),
    "16-bit grey png": png_bytes(Image.fromarray(np.asarray(draw_digit(2), dtype=np.uint16) * 257)),
    "cmyk jpeg": png_bytes(draw_digit(2).convert("CMYK"), "JPEG"),
    "float tiff": png_bytes(draw_digit(2).convert("F"), "TIFF"),
    "1-bit tiff": png_bytes(draw_digit(2).convert("1"), "TIFF"),
    "palette png with transparency": png_bytes(draw_digit(2).convert("P"), "PNG", transparency=255),
    "grey+alpha png": png_bytes(draw_digit(2).convert("LA")),
    "multi-size ico": png_bytes(draw_digit(2).convert("RGBA"), "ICO", sizes=[(16, 16), (64, 64)]),
    "multi-page tiff": animation("TIFF"),
    "progressive jpeg": png_bytes(draw_digit(2).convert("RGB"), "JPEG", progressive=True),
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(x) print\n",
    "pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
}


@pytest.mark.parametrize("name", sorted(EXOTIC))
@pytest.mark.parametrize("url", ["/api/predict", "/api/predict_number", "/api/explain"])
def test_exotic_pictures_never_give_a_server_error(client, name: str, url: str) -> None:
    response = post_file(client, url, EXOTIC[name])
    assert response.status_code in (200, 400, 422), response.get_data(as_text=True)
    if response.status_code != 200:
        assert response.get_json()["error"]
    if name in ("psd", "eps", "pdf"):  # Pillow can open them; the server does not read them
        assert response.status_code == 400


def test_exotic_pictures_in_a_batch_each_get_their_answer(client) -> None:
    names = sorted(EXOTIC)
    files = [(io.BytesIO(EXOTIC[name]), f"{i}.bin") for i, name in enumerate(names)]
    response = client.post(
        "/api/predict_batch", data={"images": files}, content_type="multipart/form-data"
    )
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == len(names)
    for name, result in zip(names, results, strict=True):
        assert ("digit" in result) != ("error" in result), name
        assert result.get("status", 200) in (200, 400, 422), name


def test_json_batch_of_strange_items_each_get_their_answer(client) -> None:
    items = [None, 1, [], {}, "", "!!!", "data:image/png;base64,", "A" * 10_000, True]
    response = client.post(
        "/api/predict_batch",
        data=json.dumps({"images": items}).encode(),
        content_type="application/json",
    )
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == [400] * len(items)
