"""Synthetic training data: digits people might write, and drawings that are not digits.

Everything here is made by this module's own code from allowed sources only (see "Data we may
train on" in the design notes): glyphs of the Debian font packages listed in ``FONT_FILES``, and
pen strokes and shapes generated procedurally.  Handwriting fonts and every other data set are
kept out of training.

Typefaces are not handwriting, so a glyph is never used as it is rendered:

1. **render** it with Pillow (``_render_glyphs``), threshold it, and **thin** it to its skeleton,
   a one-pixel-wide line (``thin``, Zhang & Suen's algorithm, run on a whole stack at once);
2. take the skeleton's pixels as points of a **pen path** in a unit box, just like the control
   points of the procedural strokes (``_STROKE_DIGITS``, ``_SHAPES``);
3. **move the points** the way a hand does (``_distort``): an elastic wobble (a few smooth random
   waves), then slant, rotation, a squeeze or stretch and a little size change;
4. **redraw** them with a round pen of varying width (``_draw``): the ink at a pixel at distance
   ``d`` from the nearest path point, where the pen's radius is ``r``, is ``clip(r + 1/2 - d)``
   (a Euclidean distance transform does it for all pixels at once), then a slight blur;
5. **frame** the drawing as the app frames a real picture (crop to the ink, 20x20 box, centre of
   mass in 28x28: ``npcnn.digits.preprocess``), and store it as uint8.

Labels: 0-9 for digits, ``NOT_A_DIGIT`` (10) for letters, symbols, doodles, scribbles, stray
strokes and shapes.  Each image also has a style name (``"font"``, ``"stroke:7-crossed"``,
``"shape:star"``...), so tests and reports can count what is there.

``synthetic_digits(n, seed)`` and ``non_digits(n, seed)`` are seeded (same arguments, same
images) and cached: the arrays are written once to ``$NPCNN_DATA/synth/`` (default
``~/.cache/npcnn/synth/``) under a name derived from every parameter of the generator, with
``npcnn.io.save_npz_atomic``, and read back on the next call.

Speed: about 1 ms of one core per image once the glyphs are thinned (a few seconds, once per
call): ``python -m npcnn.digits.synth --digits 3000 --non-digits 8000 --no-cache`` makes 11,000
images in 14.4 s on the 2-core development machine (760 img/s), under 2% of a 15-minute
training budget; a cached set loads in well under a second.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from npcnn.digits.preprocess import MNIST_BOX, MNIST_STROKE_WIDTH, crop_to_ink, place_in_frame
from npcnn.errors import ConfigError
from npcnn.io import read_npz, save_npz_atomic

NOT_A_DIGIT = 10  # the label of the eleventh class
GENERATOR_VERSION = 1  # part of every cache key: bump it whenever the pictures change

# The allowed font packages and the files of theirs that are used, by explicit path.  Left out on
# purpose: the calligraphic Zapf Chancery clones (URW Z003, TeX Gyre Chorus), which are close to
# handwriting, and the symbol and dingbat fonts (no ordinary digits or letters).
_URW = "/usr/share/fonts/opentype/urw-base35/"
_GYRE = "/usr/share/texmf/fonts/opentype/public/tex-gyre/texgyre"
_DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVu"
FONT_FILES: dict[str, tuple[str, ...]] = {
    "fonts-dejavu-core": tuple(
        _DEJAVU + name + ".ttf"
        for name in ("Sans", "Sans-Bold", "SansMono", "SansMono-Bold", "Serif", "Serif-Bold")
    ),
    "fonts-dejavu-extra": tuple(
        _DEJAVU + name + ".ttf"
        for name in (
            "Sans-Oblique",
            "Sans-BoldOblique",
            "Sans-ExtraLight",
            "SansCondensed",
            "SansCondensed-Bold",
            "SansMono-Oblique",
            "Serif-Italic",
            "SerifCondensed",
            "SerifCondensed-BoldItalic",
        )
    ),
    "fonts-liberation2": tuple(
        f"/usr/share/fonts/truetype/liberation2/Liberation{name}.ttf"
        for name in (
            "Mono-Regular",
            "Mono-Bold",
            "Mono-Italic",
            "Sans-Regular",
            "Sans-Bold",
            "Sans-Italic",
            "Sans-BoldItalic",
            "Serif-Regular",
            "Serif-Bold",
            "Serif-Italic",
        )
    ),
    "fonts-freefont-ttf": tuple(
        f"/usr/share/fonts/truetype/freefont/Free{name}.ttf"
        for name in (
            "Mono",
            "MonoBold",
            "MonoOblique",
            "Sans",
            "SansBold",
            "SansOblique",
            "Serif",
            "SerifBold",
            "SerifItalic",
            "SerifBoldItalic",
        )
    ),
    "fonts-urw-base35": tuple(
        _URW + name + ".otf"
        for name in (
            "C059-Roman",
            "C059-Italic",
            "C059-Bold",
            "NimbusMonoPS-Regular",
            "NimbusMonoPS-Italic",
            "NimbusRoman-Regular",
            "NimbusRoman-Italic",
            "NimbusRoman-Bold",
            "NimbusSans-Regular",
            "NimbusSans-Italic",
            "NimbusSans-Bold",
            "NimbusSansNarrow-Regular",
            "P052-Roman",
            "P052-Italic",
            "URWBookman-Light",
            "URWBookman-LightItalic",
            "URWBookman-Demi",
            "URWGothic-Book",
            "URWGothic-BookOblique",
            "URWGothic-Demi",
        )
    ),
    "fonts-texgyre": tuple(
        _GYRE + name + ".otf"
        for name in (
            "adventor-regular",
            "adventor-italic",
            "adventor-bold",
            "bonum-regular",
            "bonum-italic",
            "cursor-regular",
            "cursor-bold",
            "heros-regular",
            "heros-italic",
            "heros-bold",
            "heroscn-regular",
            "pagella-regular",
            "pagella-italic",
            "pagella-bold",
            "schola-regular",
            "schola-italic",
            "termes-regular",
            "termes-italic",
            "termes-bold",
        )
    ),
}

# Letters and symbols for the "not a digit" class.  Left out: glyphs that look like a digit when
# handwritten (O o D Q θ: 0; l I i j J T t ! | / \ ( ) [ ]: 1; Z z ? ζ: 2; { } ξ: 3; A U u μ: 4;
# S s $ §: 5; b G: 6; r: 7; B ß β: 8; g q a y: 9) and L.
NON_DIGIT_CHARS = "CEFHKMNPRVWXYcefhkmnvwx#%@&+=*<>~^€¥£¶×÷±√∞ΣΩΦΨΔλπωκЖЯШЮ"
LOOKALIKES = "OoDQθlIiJjTt!|/\\()[]Zz?ζ{}ξAUuμSs$§bGrBßβgqayL0123456789"

GLYPH_CANVAS = 56  # glyphs are rendered and thinned on a square of this side
GLYPH_SIZE = 42  # font size in pixels
CANVAS_SCALE = 48.0  # a drawing's unit box becomes this many pixels before framing


class SynthSet(NamedTuple):
    """Images uint8 (N, 28, 28), white on black; labels int64 (N,); one style name per image."""

    images: np.ndarray
    labels: np.ndarray
    styles: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def allowed_fonts() -> list[Path]:
    """The font files of ``FONT_FILES`` that are installed, in a fixed order."""
    return [Path(p) for files in FONT_FILES.values() for p in files if Path(p).is_file()]


def font_package(path: str | Path) -> str | None:
    """The allowed package a font file belongs to, or None."""
    for package, files in FONT_FILES.items():
        if str(path) in files:
            return package
    return None


# ---------------------------------------------------------------------------------------------
# Skeletons of glyphs


def thin(masks: np.ndarray) -> np.ndarray:
    """Zhang & Suen's thinning of a stack of binary images (N, H, W) -> their skeletons.

    Repeatedly peel the pixels of the border that can go without breaking the shape: a pixel
    P1 with neighbours P2..P9 (clockwise from the one above) is removed when it has 2..6
    neighbours, exactly one 0->1 transition around it (removing it does not disconnect
    anything), and - alternately - P2*P4*P6 = 0 and P4*P6*P8 = 0 (south-east borders), then
    P2*P4*P8 = 0 and P2*P6*P8 = 0 (north-west borders).  Until nothing changes.
    """
    image = np.pad(np.asarray(masks, dtype=bool), ((0, 0), (1, 1), (1, 1)))
    core = image[:, 1:-1, 1:-1]  # a view: edits to it edit image
    while True:
        changed = False
        for step in (0, 1):
            p = [
                image[:, :-2, 1:-1],
                image[:, :-2, 2:],
                image[:, 1:-1, 2:],
                image[:, 2:, 2:],
                image[:, 2:, 1:-1],
                image[:, 2:, :-2],
                image[:, 1:-1, :-2],
                image[:, :-2, :-2],
            ]  # fmt: skip  P2..P9
            count = np.sum(p, axis=0, dtype=np.uint8)
            pairs = zip(p, p[1:] + p[:1], strict=True)
            transitions = np.sum([~a & b for a, b in pairs], axis=0, dtype=np.uint8)
            p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
            if step == 0:
                keep_shape = ~(p2 & p4 & p6) & ~(p4 & p6 & p8)
            else:
                keep_shape = ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            remove = core & (count >= 2) & (count <= 6) & (transitions == 1) & keep_shape
            if remove.any():
                core &= ~remove
                changed = True
        if not changed:
            return core.copy()


@cache
def _font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, GLYPH_SIZE)


def _glyph_bitmap(path: str, char: str) -> np.ndarray:
    """``char`` in the font at ``path``, centred on a GLYPH_CANVAS square, as a bool mask."""
    image = Image.new("L", (GLYPH_CANVAS, GLYPH_CANVAS), 0)
    centre = GLYPH_CANVAS / 2
    ImageDraw.Draw(image).text((centre, centre), char, font=_font(path), fill=255, anchor="mm")
    return np.asarray(image) >= 128


@cache
def _missing_glyph(path: str) -> np.ndarray:
    """What the font draws for a character it does not have (its 'missing glyph' box)."""
    return _glyph_bitmap(path, "\U0010fffd")


def _has_glyph(path: str, char: str) -> bool:
    """False when the font draws ``char`` as its 'missing glyph' box (or as nothing)."""
    bitmap = _glyph_bitmap(path, char)
    return bool(bitmap.any()) and not np.array_equal(bitmap, _missing_glyph(path))


def _glyph_skeletons(pairs: list[tuple[str, str]]) -> list[np.ndarray]:
    """The skeleton of each (font path, character) as points (K, 2) = (x, y) in a unit box
    (centred on the origin, longer side 1)."""
    masks = np.stack([_glyph_bitmap(path, char) for path, char in pairs])
    return [_unit_points(np.argwhere(skeleton)[:, ::-1]) for skeleton in thin(masks)]


def _unit_points(points: np.ndarray) -> np.ndarray:
    """Points (K, 2) moved and scaled so that their bounding box is centred, longer side 1."""
    points = np.asarray(points, dtype=np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - (low + high) / 2) / max(float((high - low).max()), 1e-6)


# ---------------------------------------------------------------------------------------------
# Pen paths: curves through control points


def _curve(points: list[tuple[float, float]] | np.ndarray, smooth: bool = True) -> np.ndarray:
    """Densely sampled path through ``points`` (x, y): a Catmull-Rom spline (``smooth``) or a
    polyline; about 200 samples per unit of length, so that no gaps show once drawn."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 2:
        return p
    if not smooth or len(p) == 2:
        pieces = []
        for a, b in zip(p[:-1], p[1:], strict=True):
            steps = max(2, int(np.hypot(*(b - a)) * 200))
            pieces.append(a + (b - a) * np.linspace(0, 1, steps)[:, None])
        return np.concatenate(pieces)
    padded = np.concatenate([p[:1], p, p[-1:]])
    pieces = []
    for i in range(len(p) - 1):
        p0, p1, p2, p3 = padded[i : i + 4]
        steps = max(2, int(np.hypot(*(p2 - p1)) * 300))
        t = np.linspace(0, 1, steps)[:, None]
        pieces.append(
            0.5
            * (
                2 * p1
                + (p2 - p0) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (3 * p1 - p0 - 3 * p2 + p3) * t**3
            )
        )
    return np.concatenate(pieces)


def _ellipse(
    cx: float, cy: float, rx: float, ry: float, start: float = 0.0, sweep: float = 2 * np.pi
) -> np.ndarray:
    """An elliptic arc (angles in radians, y down) sampled densely."""
    steps = max(8, int(abs(sweep) * max(rx, ry) * 200))
    angle = start + np.linspace(0, sweep, steps)
    return np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], axis=1)


def _jitter(rng: np.random.Generator, points: list[tuple[float, float]], sd: float = 0.035):
    return np.asarray(points, dtype=np.float64) + rng.normal(0, sd, (len(points), 2))


Strokes = list[np.ndarray]


def _digit_0(rng: np.random.Generator) -> Strokes:
    rx, ry = rng.uniform(0.22, 0.42), 0.5
    start = -np.pi / 2 + rng.uniform(-0.6, 0.6)
    sweep = rng.choice([-1, 1]) * (2 * np.pi + rng.uniform(-0.25, 0.35))
    arc = _ellipse(0.5, 0.5, rx, ry, start, sweep)
    wobble = 1 + 0.06 * np.sin(np.linspace(0, rng.uniform(2, 6), len(arc)) + rng.uniform(0, 6))
    return [0.5 + (arc - 0.5) * wobble[:, None]]


def _digit_1_plain(rng: np.random.Generator) -> Strokes:
    return [_curve(_jitter(rng, [(0.5, 0.0), (0.5, 1.0)], 0.03), smooth=False)]


def _digit_1_flag(rng: np.random.Generator) -> Strokes:
    flag = (0.5 - rng.uniform(0.15, 0.32), rng.uniform(0.12, 0.35))
    return [_curve(_jitter(rng, [flag, (0.55, 0.0), (0.55, 1.0)], 0.025), smooth=False)]


def _digit_1_flag_base(rng: np.random.Generator) -> Strokes:
    (stroke,) = _digit_1_flag(rng)
    half = rng.uniform(0.18, 0.3)
    base = _curve(_jitter(rng, [(0.55 - half, 1.0), (0.55 + half, 1.0)], 0.02), smooth=False)
    return [stroke, base]


def _digit_2_plain(rng: np.random.Generator) -> Strokes:
    top = [(0.12, 0.25), (0.38, 0.02), (0.7, 0.04), (0.84, 0.27), (0.65, 0.55), (0.1, 1.0)]
    base = [(0.1, 1.0), (rng.uniform(0.75, 0.95), 0.98)]
    return [_curve(_jitter(rng, top)), _curve(_jitter(rng, base, 0.02), smooth=False)]


def _digit_2_loop(rng: np.random.Generator) -> Strokes:
    path = [
        (0.12, 0.25), (0.38, 0.02), (0.7, 0.04), (0.84, 0.27), (0.65, 0.55), (0.25, 0.88),
        (0.12, 0.98), (0.25, 1.0), (0.33, 0.88), (0.22, 0.86), (0.3, 0.97), (0.6, 0.98),
        (0.92, 0.93),
    ]  # fmt: skip
    return [_curve(_jitter(rng, path, 0.02))]


def _digit_3_round(rng: np.random.Generator) -> Strokes:
    path = [
        (0.15, 0.12), (0.45, 0.0), (0.8, 0.12), (0.78, 0.35), (0.45, 0.48), (0.82, 0.6),
        (0.88, 0.85), (0.5, 1.0), (0.12, 0.88),
    ]  # fmt: skip
    return [_curve(_jitter(rng, path, 0.03))]


def _digit_3_flat(rng: np.random.Generator) -> Strokes:
    top = _curve(_jitter(rng, [(0.15, 0.0), (0.82, 0.0), (0.45, 0.42)], 0.025), smooth=False)
    belly = [(0.45, 0.42), (0.8, 0.55), (0.88, 0.8), (0.5, 1.0), (0.12, 0.88)]
    return [top, _curve(_jitter(rng, belly, 0.03))]


def _digit_4_closed(rng: np.random.Generator) -> Strokes:
    stem_x, bar_y = rng.uniform(0.6, 0.72), rng.uniform(0.58, 0.72)
    arm = [(stem_x, 0.0), (0.06, bar_y), (0.95, bar_y)]
    stem = [(stem_x, 0.0), (stem_x, 1.0)]
    return [_curve(_jitter(rng, arm, 0.025), smooth=False), _curve(_jitter(rng, stem, 0.02), False)]


def _digit_4_open(rng: np.random.Generator) -> Strokes:
    stem_x, bar_y = rng.uniform(0.6, 0.75), rng.uniform(0.52, 0.66)
    arm = [(rng.uniform(0.12, 0.3), 0.0), (0.08, bar_y), (0.95, bar_y)]
    stem = [(stem_x, rng.uniform(0.0, 0.15)), (stem_x, 1.0)]
    return [_curve(_jitter(rng, arm, 0.025), smooth=False), _curve(_jitter(rng, stem, 0.02), False)]


def _digit_5(rng: np.random.Generator) -> Strokes:
    bar = _curve(_jitter(rng, [(0.22, 0.0), (0.85, 0.0)], 0.025), smooth=False)
    body = [(0.22, 0.0), (0.18, 0.45), (0.5, 0.37), (0.82, 0.55), (0.85, 0.82), (0.5, 1.0),
            (0.12, 0.9)]  # fmt: skip
    body = _jitter(rng, body, 0.025)
    return [bar, np.concatenate([_curve(body[:2], False), _curve(body[1:])])]


def _digit_6(rng: np.random.Generator) -> Strokes:
    path = [
        (0.78, 0.02), (0.45, 0.18), (0.2, 0.52), (0.2, 0.82), (0.45, 1.0), (0.78, 0.88),
        (0.8, 0.62), (0.5, 0.5), (0.22, 0.66),
    ]  # fmt: skip
    return [_curve(_jitter(rng, path, 0.03))]


def _digit_7_plain(rng: np.random.Generator) -> Strokes:
    foot = (rng.uniform(0.3, 0.55), 1.0)
    return [_curve(_jitter(rng, [(0.08, 0.0), (0.92, 0.0), foot], 0.025), smooth=False)]


def _digit_7_crossed(rng: np.random.Generator) -> Strokes:
    foot_x = rng.uniform(0.3, 0.5)
    stroke = _curve(_jitter(rng, [(0.08, 0.0), (0.92, 0.0), (foot_x, 1.0)], 0.02), smooth=False)
    y = rng.uniform(0.45, 0.58)
    x = 0.92 + (foot_x - 0.92) * y  # the stem at height y
    half = rng.uniform(0.17, 0.28)
    bar = _curve(_jitter(rng, [(x - half, y), (x + half, y)], 0.02), smooth=False)
    return [stroke, bar]


def _digit_7_hook(rng: np.random.Generator) -> Strokes:
    path = [(0.08, rng.uniform(0.12, 0.25)), (0.08, 0.0), (0.92, 0.0), (0.42, 1.0)]
    return [_curve(_jitter(rng, path, 0.02), smooth=False)]


def _digit_8(rng: np.random.Generator) -> Strokes:
    w = rng.uniform(0.8, 1.15)
    path = [
        (0.5, 0.48), (0.2, 0.3), (0.25, 0.05), (0.5, 0.0), (0.75, 0.05), (0.8, 0.3),
        (0.5, 0.48), (0.15, 0.72), (0.25, 0.97), (0.5, 1.0), (0.75, 0.97), (0.85, 0.72),
        (0.5, 0.48),
    ]  # fmt: skip
    points = _jitter(rng, path, 0.025)
    points[:, 0] = 0.5 + (points[:, 0] - 0.5) * w
    return [_curve(points)]


def _nine_loop(rng: np.random.Generator) -> np.ndarray:
    loop = [(0.82, 0.2), (0.55, 0.0), (0.22, 0.1), (0.18, 0.32), (0.45, 0.47), (0.82, 0.3)]
    return _curve(_jitter(rng, loop, 0.03))


def _digit_9_straight(rng: np.random.Generator) -> Strokes:
    tail = [(0.82, 0.05), (rng.uniform(0.6, 0.82), 1.0)]
    return [_nine_loop(rng), _curve(_jitter(rng, tail, 0.02), smooth=False)]


def _digit_9_curved(rng: np.random.Generator) -> Strokes:
    tail = [(0.82, 0.1), (0.82, 0.6), (0.7, 0.92), (0.45, 1.0), (0.2, 0.9)]
    return [_nine_loop(rng), _curve(_jitter(rng, tail, 0.025))]


# style name -> (label, strokes maker); each style is as likely as the others of its digit.
_STROKE_DIGITS: dict[str, tuple[int, Callable[[np.random.Generator], Strokes]]] = {
    "0": (0, _digit_0),
    "1-plain": (1, _digit_1_plain),
    "1-flag": (1, _digit_1_flag),
    "1-flag-base": (1, _digit_1_flag_base),
    "2-plain": (2, _digit_2_plain),
    "2-loop": (2, _digit_2_loop),
    "3-round": (3, _digit_3_round),
    "3-flat": (3, _digit_3_flat),
    "4-closed": (4, _digit_4_closed),
    "4-open": (4, _digit_4_open),
    "5": (5, _digit_5),
    "6": (6, _digit_6),
    "7-plain": (7, _digit_7_plain),
    "7-crossed": (7, _digit_7_crossed),
    "7-hook": (7, _digit_7_hook),
    "8": (8, _digit_8),
    "9-straight": (9, _digit_9_straight),
    "9-curved": (9, _digit_9_curved),
}
STROKE_STYLES = tuple(_STROKE_DIGITS)


# ---------------------------------------------------------------------------------------------
# Shapes, doodles, scribbles and stray strokes (not digits)


def _circle_cross(rng: np.random.Generator) -> Strokes:
    r = 0.5
    circle = _ellipse(0.5, 0.5, r * rng.uniform(0.85, 1.1), r, rng.uniform(0, 6.3))
    d = r * rng.uniform(0.6, 1.0)
    if rng.random() < 0.5:  # + inside
        lines = [[(0.5 - d, 0.5), (0.5 + d, 0.5)], [(0.5, 0.5 - d), (0.5, 0.5 + d)]]
    else:  # x inside
        e = d * 0.7
        lines = [[(0.5 - e, 0.5 - e), (0.5 + e, 0.5 + e)], [(0.5 - e, 0.5 + e), (0.5 + e, 0.5 - e)]]
    return [circle] + [_curve(_jitter(rng, line, 0.02), smooth=False) for line in lines]


def _star(rng: np.random.Generator) -> Strokes:
    angles = -np.pi / 2 + np.arange(6) * 4 * np.pi / 5 + rng.uniform(-0.3, 0.3)
    points = np.stack([0.5 + 0.5 * np.cos(angles), 0.5 + 0.5 * np.sin(angles)], axis=1)
    return [_curve(points + rng.normal(0, 0.03, points.shape), smooth=False)]


def _smiley(rng: np.random.Generator) -> Strokes:
    face = _ellipse(0.5, 0.5, 0.5, 0.5, rng.uniform(0, 6.3))
    eye_y, eye_dx = rng.uniform(0.3, 0.4), rng.uniform(0.13, 0.2)
    eyes = [_ellipse(0.5 + s * eye_dx, eye_y, 0.03, 0.05) for s in (-1, 1)]
    smile = rng.uniform(0.5, 1.0) * rng.choice([1, -1])  # frowns too
    mouth = _ellipse(0.5, 0.55 - 0.1 * smile, 0.22, 0.12 * abs(smile) + 0.02, 0.4, 2.3)
    if smile < 0:
        mouth[:, 1] = 2 * mouth[:, 1].mean() - mouth[:, 1]
    return [face, *eyes, mouth]


def _grid(rng: np.random.Generator) -> Strokes:
    lines = int(rng.integers(2, 5))
    offsets = np.linspace(0, 1, lines + 2)[1:-1] if rng.random() < 0.6 else np.linspace(0, 1, lines)
    strokes = []
    for t in offsets:
        strokes.append(_curve(_jitter(rng, [(t, 0.0), (t, 1.0)], 0.03), smooth=False))
        strokes.append(_curve(_jitter(rng, [(0.0, t), (1.0, t)], 0.03), smooth=False))
    return strokes


def _box_cross(rng: np.random.Generator) -> Strokes:
    box = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]
    strokes = [_curve(_jitter(rng, box, 0.03), smooth=False)]
    strokes.append(_curve(_jitter(rng, [(0.0, 0.0), (1.0, 1.0)], 0.03), smooth=False))
    if rng.random() < 0.6:
        strokes.append(_curve(_jitter(rng, [(1.0, 0.0), (0.0, 1.0)], 0.03), smooth=False))
    return strokes


def _triangle(rng: np.random.Generator) -> Strokes:
    points = [(0.5, 0.0), (1.0, 0.9), (0.0, 0.9), (0.5, 0.0)]
    return [_curve(_jitter(rng, points, 0.05), smooth=False)]


def _spiral(rng: np.random.Generator) -> Strokes:
    turns = rng.uniform(2.0, 3.5)
    t = np.linspace(0, 1, int(600 * turns))
    angle = rng.uniform(0, 6.3) + rng.choice([-1, 1]) * 2 * np.pi * turns * t
    radius = 0.05 + 0.45 * t
    return [np.stack([0.5 + radius * np.cos(angle), 0.5 + radius * np.sin(angle)], axis=1)]


def _heart(rng: np.random.Generator) -> Strokes:
    t = np.linspace(0, 2 * np.pi, 600)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return [np.stack([x, y], axis=1) / 32 + rng.normal(0, 0.01, 2)]


def _arrow(rng: np.random.Generator) -> Strokes:
    shaft = _curve(_jitter(rng, [(0.0, 0.5), (1.0, 0.5)], 0.03), smooth=False)
    head = _curve(_jitter(rng, [(0.7, 0.25), (1.0, 0.5), (0.7, 0.75)], 0.03), smooth=False)
    return [shaft, head]


def _scribble(rng: np.random.Generator) -> Strokes:
    """A tangle: a smooth curve through 8-16 random points."""
    points = rng.uniform(0, 1, (int(rng.integers(8, 17)), 2))
    return [_curve(points)]


def _zigzag(rng: np.random.Generator) -> Strokes:
    """A zigzag or wave across, like crossing something out."""
    n = int(rng.integers(4, 9))
    x = np.linspace(0, 1, n)
    y = 0.5 + np.where(np.arange(n) % 2 == 0, -1, 1) * rng.uniform(0.08, 0.25)
    return [_curve(_jitter(rng, list(zip(x, y, strict=True)), 0.03), smooth=rng.random() < 0.5)]


def _stray(rng: np.random.Generator) -> Strokes:
    """Stray marks: a few short strokes or dots scattered in the box (not a single stroke, which
    could be a 1 or a minus-sized 7)."""
    strokes = []
    for _ in range(int(rng.integers(2, 6))):
        start = rng.uniform(0, 1, 2)
        if rng.random() < 0.3:
            strokes.append(_ellipse(*start, 0.03, 0.03))
        else:
            end = np.clip(start + rng.normal(0, 0.3, 2), 0, 1)
            strokes.append(_curve([start, end], smooth=False))
    return strokes


def _dash(rng: np.random.Generator) -> Strokes:
    """A lying stroke: a dash, a wave or a tilde (never upright, which would be a 1)."""
    angle = rng.uniform(-0.45, 0.45)
    x = np.linspace(-0.5, 0.5, 300)
    y = rng.uniform(0, 0.12) * np.sin(x * rng.uniform(4, 14) + rng.uniform(0, 6.3))
    c, s = np.cos(angle), np.sin(angle)
    return [np.stack([c * x - s * y, s * x + c * y], axis=1)]


def _blob(rng: np.random.Generator) -> Strokes:
    """A filled blot (a dot scaled up by the framing)."""
    r = rng.uniform(0.05, 0.5, 30)
    angle = rng.uniform(0, 2 * np.pi, 30)
    inside = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    return [_curve(np.concatenate([inside, inside[:1]]))]


_SHAPES: dict[str, Callable[[np.random.Generator], Strokes]] = {
    "shape:circle-cross": _circle_cross,
    "shape:star": _star,
    "shape:smiley": _smiley,
    "shape:grid": _grid,
    "shape:box-cross": _box_cross,
    "shape:triangle": _triangle,
    "shape:spiral": _spiral,
    "shape:heart": _heart,
    "shape:arrow": _arrow,
    "doodle:scribble": _scribble,
    "doodle:zigzag": _zigzag,
    "doodle:stray": _stray,
    "doodle:dash": _dash,
    "doodle:blob": _blob,
}
SHAPE_STYLES = tuple(_SHAPES)


# ---------------------------------------------------------------------------------------------
# The hand and the pen


def _distort(points: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Move unit-box points (K, 2) as a hand would: a smooth elastic wobble (three random waves
    per axis, amplitude up to 0.03), then slant, rotation, aspect and size."""
    points = _unit_points(points)
    waves = rng.normal(0, 2 * np.pi / 0.8, (2, 3, 2))  # (axis, wave, direction)
    phase = rng.uniform(0, 2 * np.pi, (2, 3))
    amplitude = rng.uniform(0, 0.03 * strength, (2, 3))
    wobble = (amplitude[:, :, None] * np.sin(waves @ points.T + phase[:, :, None])).sum(axis=1)
    points = points + wobble.T
    slant = rng.uniform(-0.35, 0.35) * strength  # x moves by -slant * y: y is down
    angle = rng.normal(0, 0.12) * strength
    aspect = np.exp(rng.normal(0, 0.15) * strength)
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) @ np.array([[1, -slant], [0, 1]]) @ np.diag([aspect, 1])
    return points @ matrix.T


def _draw(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw points (K, 2) of a unit box with a round pen whose radius varies smoothly along the
    path; returns the picture, float32, ink 1 on 0, before framing.

    The pen's width is chosen for the framed picture, where the drawing's longer side is 20 px:
    MNIST's stroke widths there are about 2.55 px (median), 1.8-3.6 px for most digits.  A pen of
    radius ``r`` draws a line ``2 r + 1`` pixels wide, so ``r = (w * side / 20 - 1) / 2``.  (The
    app's framing would bring a width outside that range back into it; drawing it within the
    range from the start spares that step.)
    """
    pixels = points * CANVAS_SCALE
    pixels = pixels - pixels.min(axis=0)
    side = float(pixels.max()) + 1
    width = float(np.clip(MNIST_STROKE_WIDTH * np.exp(rng.normal(0.05, 0.2)), 1.8, 4.0))
    radius = max((width * side / MNIST_BOX - 1) / 2, 0.6)
    margin = int(np.ceil(radius * 1.4)) + 3
    pixels += margin
    width, height = (np.ceil(pixels.max(axis=0)).astype(int) + margin + 1).tolist()
    cols, rows = np.round(pixels).astype(int).T
    mask = np.ones((height, width), dtype=bool)
    mask[rows, cols] = False
    distance, (near_row, near_col) = ndimage.distance_transform_edt(mask, return_indices=True)
    # The pen's pressure: a slow wave across the drawing, +-30% at most.
    direction = rng.normal(0, 1, 2) / side * rng.uniform(2, 10)
    pressure = 1 + rng.uniform(0, 0.3) * np.sin(
        near_col * direction[0] + near_row * direction[1] + rng.uniform(0, 2 * np.pi)
    )
    ink = np.clip(radius * pressure + 0.5 - distance, 0.0, 1.0)
    if rng.random() < 0.5:
        ink = ndimage.gaussian_filter(ink, rng.uniform(0.3, 0.9))
    return ink.astype(np.float32)


def _frame(ink: np.ndarray) -> np.ndarray:
    """The app's framing (crop to the ink, 20x20 box, centre of mass in 28x28) -> uint8."""
    frame = place_in_frame(crop_to_ink(ink)[0])
    return np.round(frame * 255).astype(np.uint8)


def _finish(strokes: Strokes, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    points = np.concatenate([np.asarray(s, dtype=np.float64) for s in strokes])
    return _frame(_draw(_distort(points, rng, strength), rng))


# ---------------------------------------------------------------------------------------------
# The generators


def _glyph_images(
    rng: np.random.Generator, chars: str, n: int, max_glyphs: int
) -> tuple[np.ndarray, list[str]]:
    """``n`` redrawn glyphs of ``chars`` in random allowed fonts; returns images and characters."""
    fonts = [str(p) for p in allowed_fonts()]
    if not fonts:
        raise ConfigError(
            "no allowed font is installed: apt-get install fonts-dejavu-core fonts-dejavu-extra "
            "fonts-liberation2 fonts-freefont-ttf fonts-urw-base35 fonts-texgyre"
        )
    pairs = [(f, c) for f in fonts for c in chars if _has_glyph(f, c)]
    if len(pairs) > max_glyphs:
        pairs = [pairs[i] for i in np.sort(rng.choice(len(pairs), max_glyphs, replace=False))]
    skeletons = _glyph_skeletons(pairs)
    which = rng.integers(0, len(pairs), n)
    images = np.stack([_finish([skeletons[i]], rng) for i in which]) if n else _empty()
    return images, [pairs[i][1] for i in which]


def _empty() -> np.ndarray:
    return np.zeros((0, 28, 28), dtype=np.uint8)


def _make_digits(n: int, seed: int, font_fraction: float) -> SynthSet:
    rng = np.random.default_rng([seed, 1])
    n_font = int(round(n * font_fraction))
    font_images, chars = _glyph_images(rng, "0123456789", n_font, max_glyphs=10_000)
    styles = list(rng.choice(STROKE_STYLES, n - n_font)) if n > n_font else []
    stroke_images = [_finish(_STROKE_DIGITS[s][1](rng), rng) for s in styles]
    images = np.concatenate([font_images, np.stack(stroke_images) if styles else _empty()])
    labels = [int(c) for c in chars] + [_STROKE_DIGITS[s][0] for s in styles]
    names = ["font"] * n_font + [f"stroke:{s}" for s in styles]
    return _shuffled(SynthSet(images, np.array(labels, dtype=np.int64), np.array(names)), rng)


def _make_non_digits(n: int, seed: int, font_fraction: float) -> SynthSet:
    rng = np.random.default_rng([seed, 2])
    n_font = int(round(n * font_fraction))
    font_images, chars = _glyph_images(rng, NON_DIGIT_CHARS, n_font, max_glyphs=1500)
    styles = list(rng.choice(SHAPE_STYLES, n - n_font)) if n > n_font else []
    shape_images = [_finish(_SHAPES[s](rng), rng) for s in styles]
    images = np.concatenate([font_images, np.stack(shape_images) if styles else _empty()])
    names = ["font:letter" if c.isalpha() else "font:symbol" for c in chars] + styles
    labels = np.full(n, NOT_A_DIGIT, dtype=np.int64)
    return _shuffled(SynthSet(images, labels, np.array(names)), rng)


def _shuffled(data: SynthSet, rng: np.random.Generator) -> SynthSet:
    order = rng.permutation(len(data))
    return SynthSet(data.images[order], data.labels[order], data.styles[order].astype(str))


def cache_dir() -> Path:
    """``$NPCNN_DATA/synth``, or ``~/.cache/npcnn/synth``."""
    return Path(os.environ.get("NPCNN_DATA") or Path.home() / ".cache" / "npcnn") / "synth"


def _cached(kind: str, make: Callable[..., SynthSet], use_cache: bool, **params) -> SynthSet:
    """``make(**params)``, read from the cache when it was made before with the same parameters,
    generator version and font files."""
    fonts = [[str(p), p.stat().st_size] for p in allowed_fonts()]
    key = {"kind": kind, "version": GENERATOR_VERSION, "fonts": fonts, **params}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{kind}-{digest}.npz"
    if use_cache and path.is_file():
        try:
            arrays = read_npz(path)
            return SynthSet(arrays["images"], arrays["labels"], arrays["styles"].astype(str))
        except (KeyError, OSError, ValueError):
            pass  # unreadable: make it again
    data = make(**params)
    if use_cache:
        save_npz_atomic(path, dict(zip(SynthSet._fields, data, strict=True)))
    return data


def _check(n: int, font_fraction: float) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"n must be an integer >= 0, got {n!r}")
    if not 0.0 <= font_fraction <= 1.0:
        raise ConfigError(f"font_fraction must be in [0, 1], got {font_fraction}")


def synthetic_digits(
    n: int, seed: int = 0, font_fraction: float = 0.5, cache: bool = True
) -> SynthSet:
    """``n`` synthetic handwritten-looking digits, labels 0-9: ``font_fraction`` of them redrawn
    from the allowed fonts' skeletons, the rest procedural pen strokes in every style of
    ``STROKE_STYLES`` (1 with a flag and a base, crossed 7, open and closed 4, 9 with a straight
    or curved tail...).  Seeded; cached unless ``cache=False``."""
    _check(n, font_fraction)
    return _cached(
        "digits", _make_digits, cache, n=int(n), seed=int(seed), font_fraction=font_fraction
    )


def non_digits(n: int, seed: int = 0, font_fraction: float = 0.4, cache: bool = True) -> SynthSet:
    """``n`` drawings that are not digits, label ``NOT_A_DIGIT``: ``font_fraction`` of them
    letters and symbols of the allowed fonts (``NON_DIGIT_CHARS``, redrawn like the digits), the
    rest shapes, doodles, scribbles and stray strokes (``SHAPE_STYLES``).  Seeded; cached."""
    _check(n, font_fraction)
    return _cached(
        "nondigits", _make_non_digits, cache, n=int(n), seed=int(seed), font_fraction=font_fraction
    )


JOINED_STYLES = ("pair:touching", "pair:overlapping", "pair:close", "digit+part")


def joined_digits(images: np.ndarray, n: int, seed: int = 0) -> SynthSet:
    """``n`` pictures of two digits joined, framed as if they were one digit: not a digit.

    Reading a number, the app frames runs of ink that may hold two digits, or one digit and a
    piece of its neighbour, and asks the network whether each is a digit
    (``npcnn.digits.numbers``); these teach it to say no.  ``images`` (N, 28, 28) uint8 are the
    digits to join: pass only training digits.  Each picture is one of ``JOINED_STYLES``, in
    turn: two digits touching, overlapping by 8-25% of their height, or 0-15% apart; or one
    digit and 45-70% of its neighbour's width, the cut going through the neighbour (left or
    right).  Heights differ by up to 20% and baselines by up to 10%.  A join whose ink is
    narrower than 0.7 of its height (two upright 1s side by side look like one bold 1) is drawn
    again with other digits.  Seeded; not cached (under 1 ms an image).
    """
    _check(n, 0.0)
    rng = np.random.default_rng([seed, 3])
    pictures, styles = [], []
    for k in range(n):
        style = JOINED_STYLES[k % len(JOINED_STYLES)]
        canvas = _join_two(images, style, rng)
        while canvas is None:
            canvas = _join_two(images, style, rng)
        pictures.append(_frame(canvas))
        styles.append(style)
    stack = np.stack(pictures) if pictures else _empty()
    return SynthSet(stack, np.full(n, NOT_A_DIGIT, dtype=np.int64), np.array(styles, dtype=str))


class _Pair(NamedTuple):
    """Two digits side by side on a canvas: digit a (``images[first]``, drawn as ``a``) from
    column ``a_left``, digit b (``images[second]``, drawn as ``b``) from column ``b_left``, each
    about ``height`` pixels high."""

    canvas: np.ndarray
    first: int
    second: int
    a: np.ndarray
    b: np.ndarray
    a_left: int
    b_left: int
    height: int

    @property
    def a_right(self) -> int:
        return self.a_left + self.a.shape[1]


def _pair(images: np.ndarray, style: str, rng: np.random.Generator) -> _Pair:
    """Two random digits of ``images`` side by side in ``style`` ("pair:touching",
    "pair:overlapping" or "pair:close"; ink in [0, 1])."""
    from npcnn.digits.number_set import place_touching, scaled_digit  # number_set imports synth

    height = int(rng.integers(36, 64))
    first, second = (int(i) for i in rng.integers(0, len(images), 2))
    a, b = (
        scaled_digit(images[i], max(12, round(height * rng.uniform(0.8, 1.0))))
        for i in (first, second)
    )
    lift = int(rng.uniform(-0.1, 0.1) * height)
    xa, right = height // 2, height // 2 + a.shape[1]  # a's columns; a margin on its left
    canvas = np.zeros((2 * height, right + b.shape[1] + height), np.float32)
    ya, yb = height // 2 + height - a.shape[0], height // 2 + height - b.shape[0] + lift
    canvas[ya : ya + a.shape[0], xa:right] = a
    if style == "pair:overlapping":
        xb = right - int(rng.uniform(0.08, 0.25) * height)
    elif style == "pair:close":
        xb = right + int(rng.uniform(0.0, 0.15) * height)
    else:  # touching: slide b left from a's right edge
        xb = place_touching(canvas, b, right + max(1, int(0.05 * height)), yb, height)
    xb = max(xb, xa + a.shape[1] // 2)  # a narrow digit (a 1) is never hidden in the other
    region = canvas[yb : yb + b.shape[0], xb : xb + b.shape[1]]
    np.maximum(region, b, out=region)
    return _Pair(canvas, first, second, a, b, xa, xb, height)


def _wide_enough(canvas: np.ndarray) -> bool:
    """Whether the ink is at least 0.7 times as wide as it is tall."""
    rows, cols = np.flatnonzero(canvas.max(axis=1) > 0.3), np.flatnonzero(canvas.max(axis=0) > 0.3)
    return len(cols) > 0 and cols[-1] - cols[0] >= 0.7 * (rows[-1] - rows[0])


def _join_two(images: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray | None:
    """Two random digits of ``images`` joined in ``style`` (ink in [0, 1]), or None when the
    result is not at least 0.7 times as wide as it is tall."""
    pair = _pair(images, "pair:touching" if style == "digit+part" else style, rng)
    canvas = pair.canvas
    if style == "digit+part":  # cut through one digit of a touching pair
        keep = rng.uniform(0.45, 0.7)
        if rng.random() < 0.5:  # digit a and the left part of b
            canvas = canvas[:, : pair.b_left + max(2, int(keep * pair.b.shape[1]))]
        else:  # the right part of a and digit b
            canvas = canvas[:, pair.a_left + int((1 - keep) * pair.a.shape[1]) :]
    return canvas if _wide_enough(canvas) else None


CUT_STYLES = ("pair:touching", "pair:overlapping")
CUT_NEIGHBOUR_INK = 0.3  # at most this share of the neighbour's ink stays with the digit
CUT_DIGIT_INK = 0.85  # at least this share of the digit's own ink is kept


def cut_digits(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0) -> SynthSet:
    """``n`` pictures of one digit cut out of a touching or overlapping pair, with a piece of its
    neighbour: labelled as that digit.

    Reading a number, the app cuts between digits whose strokes touch or cross
    (``npcnn.digits.numbers``), and a cut leaves a little of one digit with the other.  These
    teach the network that a digit with up to ``CUT_NEIGHBOUR_INK`` of its neighbour's ink is
    still that digit, where ``joined_digits`` teaches that a digit with 45-70% of its neighbour
    is not a digit.  The cut is straight, between the middle of the digit and 0.2 digit heights
    past its edge, the digit left or right of it at random, and keeps at least
    ``CUT_DIGIT_INK`` of the digit's own ink.  ``images`` (N, 28, 28) uint8 and ``labels``: pass
    only training digits.  Styles ``CUT_STYLES`` in turn.  Seeded; not cached.
    """
    _check(n, 0.0)
    labels = np.asarray(labels)
    if len(labels) != len(images):
        raise ValueError(f"need a label per image: {len(images)} images, {len(labels)} labels")
    rng = np.random.default_rng([seed, 4])
    pictures, digits, styles = [], [], []
    for k in range(n):
        style = CUT_STYLES[k % len(CUT_STYLES)]
        cut = _cut_one(images, style, rng)
        while cut is None:
            cut = _cut_one(images, style, rng)
        canvas, index = cut
        pictures.append(_frame(canvas))
        digits.append(int(labels[index]))
        styles.append(f"cut:{style.split(':')[1]}")
    stack = np.stack(pictures) if pictures else _empty()
    return SynthSet(stack, np.array(digits, dtype=np.int64), np.array(styles, dtype=str))


def _ink_left_of(glyph: np.ndarray, columns: int) -> float:
    """The share of ``glyph``'s ink in its first ``columns`` columns."""
    return float(glyph[:, : max(0, columns)].sum() / max(glyph.sum(), 1e-6))


def _cut_one(
    images: np.ndarray, style: str, rng: np.random.Generator
) -> tuple[np.ndarray, int] | None:
    """One digit of a random pair cut out with a piece of its neighbour, and its index in
    ``images``; None when the cut drawn keeps too little of the digit or too much of the
    neighbour."""
    pair = _pair(images, style, rng)
    strip = 0.2 * pair.height
    if rng.random() < 0.5:  # keep a, the left digit
        cut = int(rng.uniform(pair.a_left + pair.a.shape[1] / 2, pair.a_right + strip))
        kept = _ink_left_of(pair.a, cut - pair.a_left)
        neighbour = _ink_left_of(pair.b, cut - pair.b_left)
        canvas, index = pair.canvas[:, :cut], pair.first
    else:  # keep b, the right digit
        cut = int(rng.uniform(pair.b_left - strip, pair.b_left + pair.b.shape[1] / 2))
        kept = 1 - _ink_left_of(pair.b, cut - pair.b_left)
        neighbour = 1 - _ink_left_of(pair.a, cut - pair.a_left)
        canvas, index = pair.canvas[:, max(0, cut) :], pair.second
    if kept < CUT_DIGIT_INK or neighbour > CUT_NEIGHBOUR_INK:
        return None
    return canvas, index


def concatenate(*parts: SynthSet) -> SynthSet:
    """Several sets as one, in order."""
    return SynthSet(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))


def main(argv: list[str] | None = None) -> int:
    """``python -m npcnn.digits.synth --digits N --non-digits N [--seed S] [--out sheet.png]``:
    generate (or read from the cache), say how long it took, and optionally write a contact
    sheet of the first images."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--digits", type=int, default=2000)
    parser.add_argument("--non-digits", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--out", help="write a PNG contact sheet here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    data = concatenate(
        synthetic_digits(args.digits, args.seed, cache=not args.no_cache),
        non_digits(args.non_digits, args.seed, cache=not args.no_cache),
    )
    seconds = time.perf_counter() - started
    print(f"{len(data):,} images in {seconds:.1f} s ({len(data) / max(seconds, 1e-9):.0f} img/s)")
    styles, counts = np.unique(data.styles, return_counts=True)
    print(", ".join(f"{s} {c}" for s, c in zip(styles, counts, strict=True)))
    if args.out:
        rows = []
        for label in range(NOT_A_DIGIT + 1):
            picked = data.images[data.labels == label][:24]
            picked = np.concatenate([picked, np.zeros((24 - len(picked), 28, 28), np.uint8)])
            rows.append(np.concatenate(list(picked), axis=1))
        Image.fromarray(np.concatenate(rows)).save(args.out)
        print(f"wrote {args.out} (one row per label 0-10)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
