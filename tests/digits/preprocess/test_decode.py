"""Tests of npcnn.digits.preprocess.decode: untrusted bytes -> a picture -> float arrays.

Every Pillow mode and array kind gives the same result, unusable input is an ``ImageError``,
and ``decode_image`` survives random and damaged bytes, refuses decompression bombs, applies
EXIF orientation and reduces huge pictures.
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from preprocess_pictures import (
    assert_mnist_like,
    corr,
    coverage,
    draw_digit,
    paint,
    place,
    png_bytes,
)

from npcnn.digits.errors import ImageError
from npcnn.digits.preprocess.decode import decode_image, load_image
from npcnn.digits.preprocess.framing import to_mnist


def _array_variants(gray: np.ndarray) -> dict[str, np.ndarray]:
    opaque = np.full_like(gray, 255)
    return {
        "uint8 (H, W)": gray,
        "uint8 (H, W, 1)": gray[..., None],
        "uint8 (H, W, 2)": np.dstack([gray, opaque]),
        "uint8 (H, W, 3)": np.dstack([gray] * 3),
        "uint8 (H, W, 4)": np.dstack([gray] * 3 + [opaque]),
        "uint16 full range": gray.astype(np.uint16) * 257,
        "uint16 holding 8 bits": gray.astype(np.uint16),
        "int64": gray.astype(np.int64),
        "float32 in [0, 1]": gray.astype(np.float32) / 255,
        "float64 in [0, 255]": gray.astype(np.float64),
        "float in [-1, 1]": gray / 127.5 - 1.0,
        "float16": (gray / 255).astype(np.float16),
        "bool": gray > 127,
        "non-contiguous": np.dstack([gray] * 3)[:, :, ::-1],
    }


@pytest.mark.parametrize(
    "mode", ["L", "RGB", "RGBA", "P", "LA", "PA", "I;16", "I", "F", "1", "CMYK", "YCbCr", "HSV"]
)
def test_every_pillow_mode_gives_the_same_result(mode, reference) -> None:
    image = paint(place(coverage("3"))).convert(mode)
    out = to_mnist(image)
    assert_mnist_like(out)
    assert corr(out, reference["3"]) > (0.95 if mode == "1" else 0.995)


def test_every_array_kind_gives_the_same_result(reference) -> None:
    gray = np.asarray(paint(place(coverage("3"))).convert("L"))
    for name, array in _array_variants(gray).items():
        out = to_mnist(array)
        assert_mnist_like(out)
        assert corr(out, reference["3"]) > (0.95 if name == "bool" else 0.995), name


def test_large_picture_is_fast() -> None:
    picture = paint(place(coverage("5"), (4000, 4000), 3000))
    to_mnist(picture)  # warm-up
    started = time.perf_counter()
    assert_mnist_like(to_mnist(picture))
    assert time.perf_counter() - started < 2.0  # ~0.1 s unloaded; generous for a busy machine


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 10)),
        np.zeros((10, 0, 3)),
        np.zeros(10),
        np.zeros((2, 2, 2, 2)),
        np.zeros((5, 5, 5)),
        np.full((5, 5), np.nan),
        np.array([[0.0, np.inf]]),
        np.array([["a"]]),
        np.zeros((4, 4), complex),
        np.array([[None]]),
        "not an image",
        None,
    ],
    ids=repr,
)
def test_unusable_input_raises_image_error(bad) -> None:
    with pytest.raises(ImageError):
        to_mnist(bad)


def test_a_truncated_lazy_pillow_image_raises_image_error() -> None:
    data = png_bytes(draw_digit("3"))
    image = Image.open(io.BytesIO(data[: len(data) // 2]))  # opened, not yet decoded
    with pytest.raises(ImageError):
        to_mnist(image)


@settings(max_examples=150)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_]),
        shape=st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
            lambda hw: st.sampled_from([hw, (*hw, 1), (*hw, 2), (*hw, 3), (*hw, 4)])
        ),
    )
)
@example(
    array=np.array([[[0.0, -5e-324, -5e-324], [-5e-324, -5e-324, -5e-324]]])
)  # found by hypothesis
def test_any_array_gives_an_mnist_like_output_or_an_image_error(array) -> None:
    """Random content, NaN, extreme values, 1-pixel images: a valid output or ImageError."""
    try:
        out = to_mnist(array)
    except ImageError:
        return
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() == pytest.approx(1.0)


def test_load_image_reduces_big_pictures_by_box_averaging() -> None:
    big = np.zeros((2000, 2000), np.uint8)
    big[::2] = 255  # stripes: averaging gives grey, point sampling would give black or white
    working = load_image(big)
    assert working.scale == 4 and working.colour.shape == (500, 500)
    assert working.input_size == (2000, 2000)
    np.testing.assert_allclose(working.colour[1:-1, 1:-1], 0.5, atol=0.01)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width x height`` 8-bit grey pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


SAMPLE_FILES = {
    fmt: png_bytes(draw_digit("3", size=(64, 48), box=(10, 5, 50, 45), width=5, mode=mode), fmt)
    for fmt, mode in [("PNG", "L"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"),
                      ("WEBP", "RGB"), ("TIFF", "L"), ("PPM", "RGB")]
}  # fmt: skip


@pytest.mark.parametrize("fmt", list(SAMPLE_FILES))
def test_decode_common_formats(fmt) -> None:
    image = decode_image(SAMPLE_FILES[fmt])
    assert image.size == (64, 48)
    assert_mnist_like(to_mnist(image))


def _decode_then_preprocess(data: bytes) -> None:
    """The app's path; anything but ImageError (NoInkError is one) would be a crash."""
    try:
        to_mnist(decode_image(data))
    except ImageError:
        pass


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt TIFF/EXIF tags
@settings(max_examples=300)
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash(data) -> None:
    _decode_then_preprocess(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt TIFF/EXIF tags
@settings(max_examples=300)
@given(
    fmt=st.sampled_from(list(SAMPLE_FILES)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    keep=st.floats(0.0, 1.0),
)
def test_damaged_files_never_crash(fmt, edits, keep) -> None:
    data = bytearray(SAMPLE_FILES[fmt])
    for position, value in edits:
        data[position % len(data)] = value
    _decode_then_preprocess(bytes(data[: max(1, round(keep * len(data)))]))


def test_truncated_png_is_an_image_error() -> None:
    data = png_bytes(draw_digit("3"))
    with pytest.raises(ImageError, match="truncated|corrupt"):
        decode_image(data[: len(data) - 40])


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (8_000, 6_000), (30_000, 10)])
def test_decompression_bombs_are_refused_before_decoding(width, height) -> None:
    started = time.perf_counter()
    with pytest.raises(ImageError, match="too large"):
        decode_image(png_claiming(width, height))
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("data", [b"", png_claiming(0, 10), png_claiming(10, 0), b"GIF89a"])
def test_empty_zero_size_and_headers_only_are_image_errors(data) -> None:
    with pytest.raises(ImageError):
        decode_image(data)


def test_non_bytes_and_unsupported_formats_are_image_errors() -> None:
    with pytest.raises(ImageError):
        decode_image("a string")  # type: ignore[arg-type]
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageError, match="not an image in a supported format"):
        decode_image(eps)  # never handed to Ghostscript


def test_exif_orientation_is_applied() -> None:
    upright = draw_digit("7", size=(200, 300), box=(10, 60, 190, 240), mode="RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as the camera stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = decode_image(png_bytes(stored, "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.size == upright.size
    assert corr(to_mnist(decoded), to_mnist(upright)) > 0.97


def test_animated_gif_gives_its_first_frame() -> None:
    first, second = draw_digit("2", mode="P"), draw_digit("7", mode="P")
    data = png_bytes(first, "GIF", save_all=True, append_images=[second], duration=100)
    decoded = decode_image(data)
    assert corr(to_mnist(decoded), to_mnist(first)) > 0.99


def test_huge_but_legal_jpeg_is_decoded_reduced_and_fast() -> None:
    picture = paint(place(coverage("4"), (4000, 3000), 2200))
    data = png_bytes(picture, "JPEG", quality=85)
    started = time.perf_counter()
    decoded = decode_image(data)
    out = to_mnist(decoded)
    elapsed = time.perf_counter() - started
    assert decoded.width * decoded.height <= 4_000_000 and decoded.size == (2000, 1500)
    assert_mnist_like(out)
    assert elapsed < 3.0  # ~0.1 s unloaded
    assert decode_image(data, reduce_to_pixels=None).size == (4000, 3000)


def test_size_limits_are_the_callers_to_choose() -> None:
    data = png_bytes(draw_digit("1", size=(300, 200)))
    with pytest.raises(ImageError, match="too large"):
        decode_image(data, max_pixels=50_000)
    with pytest.raises(ImageError, match="too large"):
        decode_image(data, max_side=250)
    assert decode_image(data, max_pixels=60_000, max_side=300).size == (300, 200)
