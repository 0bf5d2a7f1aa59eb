"""Untrusted bytes -> a picture -> float arrays: the first step of preprocessing.

``decode_image`` turns the bytes of an upload into a Pillow image, safely: the size in the header
is checked before anything is decoded (a "decompression bomb" is refused), only the usual
formats are read, any failure of Pillow's is an ``ImageError``, the EXIF orientation is applied,
and big pictures come back reduced.

``load_image`` turns a Pillow image of any mode, or a NumPy array of any real dtype, into a
``WorkingImage``: float32 colour in [0, 1] (premultiplied by alpha) and the alpha channel.  Big
pictures are reduced early (box averaging to about 512x512 pixels, ``WORK_PIXELS``) so that a
4000x4000 photo costs little more than a canvas drawing; the later steps work at that resolution
and remember the ``scale`` to give boxes back in the input's pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from npcnn.digits.errors import ImageError

WORK_PIXELS = 512 * 512  # bigger pictures are reduced to about this many pixels first
DECODABLE_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "WEBP", "TIFF", "PPM", "TGA", "ICO")


def _reduction_factor(width: int, height: int, max_pixels: int) -> int:
    """The integer factor that brings width x height down to at most about ``max_pixels``."""
    return max(1, math.ceil(math.sqrt(width * height / max_pixels)))


def block_mean(array: np.ndarray, factor: int, pad_mode: str = "edge") -> np.ndarray:
    """Average ``factor x factor`` blocks; the array is first padded to whole blocks (``"edge"``:
    by repeating its last row and column, ``"constant"``: with zeros)."""
    pad_h, pad_w = -array.shape[0] % factor, -array.shape[1] % factor
    if pad_h or pad_w:
        extra = ((0, 0),) * (array.ndim - 2)
        array = np.pad(array, ((0, pad_h), (0, pad_w), *extra), mode=pad_mode)
    h, w = array.shape[0] // factor, array.shape[1] // factor
    blocks = array.reshape(h, factor, w, factor, *array.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Untrusted bytes -> a Pillow image.
# ----------------------------------------------------------------------------------------------


def _reducible(image: Image.Image) -> Image.Image:
    """Convert ``image`` to a mode that ``Image.reduce`` accepts, keeping alpha and 16-bit range."""
    if image.mode in ("L", "LA", "RGB", "RGBA", "I", "F"):
        return image
    if image.mode.startswith("I;16"):
        return image.convert("I")
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (how the camera was held); a broken EXIF block is ignored
    rather than refusing an image whose pixels are fine."""
    try:
        if image.getexif().get(0x0112, 1) == 1:  # upright already: no copy of the pixels
            return image
        return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF raises many types; the pixels are still good
        return image


def decode_image(
    data: bytes,
    max_pixels: int = 40_000_000,
    max_side: int = 20_000,
    reduce_to_pixels: int | None = 4_000_000,
) -> Image.Image:
    """Decode untrusted image bytes (PNG, JPEG, GIF, BMP, WebP, TIFF, PPM, TGA, ICO) safely.

    - The size in the header is checked *before* decoding: more than ``max_pixels`` pixels or a
      side over ``max_side`` is refused (a "decompression bomb": a tiny file that claims to be
      huge), as are zero-size images; Pillow's own bomb guard is turned into ``ImageError`` too.
    - Truncated, corrupt or unknown data -> ``ImageError`` with a clear message; nothing else.
    - EXIF orientation is applied (phone photos come out upright); an animation gives its first
      frame.
    - Pictures with more than ``reduce_to_pixels`` pixels come back reduced by an integer factor
      (JPEG: decoded at 1/2, 1/4 or 1/8 scale by the decoder itself, which is much faster).
      ``None`` keeps full size.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"expected image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("the image is empty (0 bytes)")
    Image.init()
    formats = [name for name in DECODABLE_FORMATS if name in Image.OPEN]
    try:
        image = Image.open(io.BytesIO(bytes(data)), formats=formats)
    except Image.DecompressionBombError as error:
        raise ImageError(f"the image is too large: {error}") from error
    except Exception as error:  # Pillow's plugins raise many types on garbage
        message = "not an image in a supported format (PNG, JPEG, GIF, BMP, WebP, ...)"
        raise ImageError(message) from error
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"the image has zero size {width}x{height}")
    if width * height > max_pixels or max(width, height) > max_side:
        raise ImageError(
            f"the image is too large: {width}x{height} pixels "
            f"(the limit is {max_pixels} pixels and {max_side} per side)"
        )
    try:
        factor = (
            1 if reduce_to_pixels is None else _reduction_factor(width, height, reduce_to_pixels)
        )
        if factor > 1 and image.format in ("JPEG", "MPO"):
            image.draft(image.mode, (width // factor, height // factor))
        image.load()
        image = _upright(image)
        factor = _reduction_factor(*image.size, reduce_to_pixels) if reduce_to_pixels else 1
        if factor > 1:
            image = _reducible(image).reduce(factor)
    except Exception as error:  # truncated or corrupt data, unsupported variants of a format
        raise ImageError(f"the image data is truncated or corrupt: {error}") from error
    return image


# ----------------------------------------------------------------------------------------------
# Reading pictures: PIL images of any mode and NumPy arrays of any dtype -> float arrays.
# ----------------------------------------------------------------------------------------------


@dataclass
class WorkingImage:
    """A picture as float arrays at working resolution.

    ``colour``: (H, W) grey or (H, W, 3) RGB, float32 in [0, 1], *premultiplied* by ``alpha``.
    ``alpha``: (H, W) float32 in [0, 1], or None when the picture has no transparency.
    ``scale``: input pixels per working pixel (1 unless the picture was reduced).
    ``input_size``: (width, height) of the picture as given.
    """

    colour: np.ndarray
    alpha: np.ndarray | None
    scale: int
    input_size: tuple[int, int]


def _split_channels(pixels: np.ndarray, scale: int, size: tuple[int, int]) -> WorkingImage:
    """(H, W) or (H, W, C) float32 in [0, 1], C in 1..4 -> WorkingImage (alpha premultiplied)."""
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        alpha = np.ascontiguousarray(pixels[..., -1])
        colour = pixels[..., 0] if pixels.shape[2] == 2 else pixels[..., :3]
        if alpha.min() >= 0.999:
            return WorkingImage(np.ascontiguousarray(colour), None, scale, size)
        colour = colour * (alpha if colour.ndim == 2 else alpha[..., None])
        return WorkingImage(colour.astype(np.float32), alpha, scale, size)
    if pixels.ndim == 3:
        pixels = pixels[..., 0] if pixels.shape[2] == 1 else pixels
    return WorkingImage(np.ascontiguousarray(pixels, dtype=np.float32), None, scale, size)


def _array_to_unit_range(array: np.ndarray) -> np.ndarray:
    """Any real array -> float32 in [0, 1].

    bool is 0/1 and uint8 is divided by 255.  Other non-negative integers are divided by
    ``2^bits - 1`` for the smallest usual bit depth (8, 10, 12 or 16) that holds their largest
    value, so a 16-bit scan and an 8-bit image stored in 16 bits both come out right.  Floats
    are taken as they are when they lie in [0, 1] and divided by 255 when they lie in [0, 255].
    Anything else (negative values, bigger numbers) is stretched from its minimum to its maximum.
    """
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ImageError("the image contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low >= 0.0 and array.dtype.kind in "iu" and high <= 65535:
        depth = next(bits for bits in (8, 10, 12, 16) if high < 2**bits)
        return array.astype(np.float32) / np.float32(2**depth - 1)
    if low >= 0.0 and high <= 255.0:
        return array.astype(np.float32) / np.float32(1.0 if high <= 1.0 else 255.0)
    # halves first, so that even values near the float64 limit cannot overflow
    half_span = high / 2 - low / 2
    if half_span <= 0.0:  # one value (or values a subnormal apart: their halves are equal)
        return np.zeros(array.shape, dtype=np.float32)
    stretched = (array.astype(np.float64) / 2 - low / 2) / half_span
    return stretched.astype(np.float32)


def _from_array(array: np.ndarray, max_pixels: int) -> WorkingImage:
    """A NumPy array (H, W), (H, W, 1), (H, W, 2) grey+alpha, (H, W, 3) RGB or (H, W, 4) RGBA."""
    if array.dtype.kind not in "biuf":
        raise ImageError(f"an image array must hold numbers, not dtype {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(f"an image array must be (H, W) or (H, W, 1..4), got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"the image has zero size {array.shape}")
    if array.dtype == np.uint8 and (array.ndim == 2 or array.shape[2] in (3, 4)):
        return _from_pil(Image.fromarray(np.ascontiguousarray(array)), max_pixels)
    size = (array.shape[1], array.shape[0])
    factor = _reduction_factor(*size, max_pixels)
    pixels = _array_to_unit_range(array)
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4) and factor > 1:
        pixels = pixels.copy()  # average premultiplied colour, so transparent colour cannot bleed
        pixels[..., :-1] *= pixels[..., -1:]
        pixels = block_mean(pixels, factor)
        alpha = np.maximum(pixels[..., -1:], 1e-6)
        pixels[..., :-1] = np.where(pixels[..., -1:] > 0, pixels[..., :-1] / alpha, 0.0)
    elif factor > 1:
        pixels = block_mean(pixels, factor)
    return _split_channels(pixels, factor, size)


def _from_pil(image: Image.Image, max_pixels: int) -> WorkingImage:
    """A Pillow image of any mode; reduced with ``Image.reduce`` (box averaging) when big."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"the image has zero size {width}x{height}")
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _from_array(np.asarray(image), max_pixels)  # 16/32-bit: keep the full range
    if mode == "1":
        image = image.convert("L")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode not in ("L", "RGB", "RGBA", "LA", "RGBa", "La"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX ...
    if image.mode in ("RGBA", "LA", "La"):
        image = image.convert("RGBA").convert("RGBa")  # premultiplied: averaging stays correct
    factor = _reduction_factor(width, height, max_pixels)
    if factor > 1:
        image = image.reduce(factor)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if image.mode != "RGBa":
        return _split_channels(pixels, factor, (width, height))
    alpha = np.ascontiguousarray(pixels[..., 3])
    colour = np.ascontiguousarray(pixels[..., :3])  # already premultiplied
    return WorkingImage(colour, None if alpha.min() >= 0.999 else alpha, factor, (width, height))


def load_image(image: Image.Image | np.ndarray, max_pixels: int = WORK_PIXELS) -> WorkingImage:
    """Read a Pillow image (any mode) or a NumPy array (any real dtype) as float arrays, reducing
    it by an integer factor (box averaging) to at most about ``max_pixels`` pixels.

    Raises ``ImageError`` for zero size, a wrong shape, NaN, or an image Pillow cannot read.
    """
    if isinstance(image, np.ndarray):
        return _from_array(image, max_pixels)
    if isinstance(image, Image.Image):
        try:
            return _from_pil(image, max_pixels)
        except ImageError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError) as error:  # e.g. a truncated file
            raise ImageError(f"cannot read the image: {error}") from error
    raise ImageError(f"expected a PIL image or a NumPy array, got {type(image).__name__}")
