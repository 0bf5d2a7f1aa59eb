"""The project's own pictures of whole numbers, with known answers: for tuning and for judging.

Each picture holds a number of 2-8 digits, written left to right in one of six ways
(``CATEGORIES``):

- ``plain``: even gaps of 0.15-0.4 digit heights;
- ``spaced``: uneven gaps, 0.1-1.2 digit heights, different between each pair;
- ``touching``: every pair of neighbours touches (their ink connects);
- ``overlapping``: neighbours' boxes overlap by 8-25% of a digit height (their ink may cross);
- ``mixed``: digit heights vary from 0.6x to 1.0x within the number, on one baseline;
- ``sloping``: the baseline rises or falls by 8-20% of the run along the number.

The digits are MNIST digits (a quarter of them the project's synthetic digits, ``synth``), cut to
their ink and scaled up to 40-120 px high, like a number written on paper or a canvas: dark on
light mostly, light on dark sometimes, with grey paper, a little noise, and now and then specks or
a separate underline.

Three sources of digits, never mixed up (the project's rules: never tune on test data, and tune
on digits the networks did not learn from):

- ``"train"``: the MNIST *training* digits outside the validation split (``train_val_split``, the
  same 5,000 that ``train_model.py`` holds out) and synthetic digits of their own seed: what the
  number reader learns from (``train_number_reader.py``);
- ``"dev"``: the 5,000 digits of that validation split and synthetic digits of another seed: tune
  parameters on this;
- ``"test"``: MNIST *test* digits and synthetic digits of a third seed: report on this only.

``number_set(kind, count, seed)`` is deterministic: the same arguments give the same pictures.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image
from scipy import ndimage

CATEGORIES = ("plain", "spaced", "touching", "overlapping", "mixed", "sloping")
SETS = {"dev": (1, 101), "test": (2, 202)}  # kind -> (default seed, synthetic digits' seed)
TRAIN_SYNTH_SEED = 303  # the synthetic digits of "train"
SYNTH_FRACTION = 0.25  # of the digits are the project's synthetic ones
SYNTH_POOL = 2000  # synthetic digits made (and cached) per set


@dataclass(frozen=True)
class NumberPicture:
    """A picture of a number: ``pixels`` uint8 (H, W) grey, the true ``text`` (e.g. "2026"),
    its ``category`` and each digit's true ink ``boxes`` (x0, y0, x1, y1), exclusive ends."""

    pixels: np.ndarray
    text: str
    category: str
    boxes: tuple[tuple[int, int, int, int], ...]

    def png(self) -> bytes:
        """The picture as PNG bytes, as a browser would upload it."""
        buffer = io.BytesIO()
        Image.fromarray(self.pixels).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


@cache
def digit_sources(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(MNIST images, labels, synthetic images, labels) for ``kind`` "train", "dev" or "test"."""
    from npcnn.digits.data import load_mnist, train_val_split  # loaded only when needed
    from npcnn.digits.synth import synthetic_digits

    if kind not in (*SETS, "train"):
        raise ValueError(f"kind must be 'train', 'dev' or 'test', not {kind!r}")
    (x_train, y_train), (x_test, y_test) = load_mnist()
    if kind == "test":
        images, labels = x_test, y_test
    else:
        # train_val_split's defaults (5,000 images, seed 0) are train_model.py's defaults
        learn, held_out = train_val_split(x_train, y_train)
        images, labels = learn if kind == "train" else held_out
    synth = synthetic_digits(
        SYNTH_POOL, seed=TRAIN_SYNTH_SEED if kind == "train" else SETS[kind][1]
    )
    return images, labels, synth.images, synth.labels


def scaled_digit(image: np.ndarray, height: int) -> np.ndarray:
    """A 28x28 uint8 digit -> its ink as float32 in [0, 1], cropped and scaled to ``height`` px."""
    ink = image.astype(np.float32) / 255.0
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0.1), np.flatnonzero(ink.max(axis=0) > 0.1)
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    width = max(2, round(crop.shape[1] * height / crop.shape[0]))
    scaled = Image.fromarray(crop, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(scaled, dtype=np.float32), 0.0, 1.0)


def _touches(canvas: np.ndarray, glyph: np.ndarray, x: int, y: int) -> bool:
    """Whether ``glyph`` placed at (x, y) touches ink already on ``canvas`` (8-neighbours)."""
    h, w = glyph.shape
    x0, y0 = max(x - 1, 0), max(y - 1, 0)
    region = canvas[y0 : y + h + 1, x0 : x + w + 1] > 0.3
    mine = np.zeros_like(region)
    mine[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = glyph > 0.3
    grown = ndimage.binary_dilation(mine, structure=np.ones((3, 3), bool))
    return bool((grown & region).any())


def place_touching(canvas: np.ndarray, glyph: np.ndarray, right: int, y: int, base: int) -> int:
    """The column at which ``glyph`` (top row ``y``) touches the ink on ``canvas`` that ends at
    column ``right``: slid left from just inside ``right`` until their ink connects, but never
    further in than 0.35 ``base`` (digit heights)."""
    x = right - max(1, int(0.05 * base))
    deepest = right - int(0.35 * base)  # give up overlapping further than this
    while x > deepest and not _touches(canvas, glyph, x, y):
        x -= 1
    return x


def make_number(
    rng: np.random.Generator,
    kind: str,
    category: str,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> NumberPicture:
    """One picture of a number of ``category``, its digits drawn from ``kind``'s sources.

    ``augment`` (training only: ``augment.augmenter``'s function) changes each 28x28 digit before
    it is placed - tilt, slant, stroke, elastic wobble - so that a reader trained on these pictures
    sees each MNIST digit written in more than one way.  The development and test sets use none.
    """
    images, labels, synth_images, synth_labels = digit_sources(kind)
    count = int(rng.integers(2, 9))
    base = int(rng.integers(40, 121))
    glyphs, text = [], ""
    for _ in range(count):
        if rng.random() < SYNTH_FRACTION:
            k = int(rng.integers(len(synth_labels)))
            image, label = synth_images[k], int(synth_labels[k])
        else:
            k = int(rng.integers(len(labels)))
            image, label = images[k], int(labels[k])
        if augment is not None:
            image = _augmented(image, augment, rng)
        scale = rng.uniform(0.6, 1.0) if category == "mixed" else rng.uniform(0.95, 1.05)
        glyphs.append(scaled_digit(image, max(12, round(base * scale))))
        text += str(label)
    slope = rng.uniform(0.08, 0.2) * rng.choice([-1, 1]) if category == "sloping" else 0.0
    even_gap = rng.uniform(0.15, 0.4) * base
    total_width = sum(g.shape[1] for g in glyphs) + count * 1.3 * base
    margin = int(rng.integers(10, 41))
    lift = int(abs(slope) * total_width) + 1
    height = base + lift + 2 * margin + base // 2
    canvas = np.zeros((height, int(total_width) + 2 * margin), np.float32)
    boxes, x = [], margin
    baseline = margin + base + (lift if slope > 0 else 0)
    for index, glyph in enumerate(glyphs):
        h, w = glyph.shape
        y = int(round(baseline - slope * (x - margin))) - h
        if index > 0 and category == "touching":
            x = place_touching(canvas, glyph, boxes[-1][2], y, base)
        elif index > 0 and category == "overlapping":
            x = boxes[-1][2] - int(rng.uniform(0.08, 0.25) * base)
        elif index > 0:
            gap = rng.uniform(0.1, 1.2) * base if category == "spaced" else even_gap
            x = boxes[-1][2] + int(gap)
        y = int(round(baseline - slope * (x - margin))) - h
        region = canvas[y : y + h, x : x + w]
        np.maximum(region, glyph, out=region)
        boxes.append((x, y, x + w, y + h))
    right = max(b[2] for b in boxes) + margin
    canvas = canvas[:, :right]
    underline_y = max(b[3] for b in boxes) + max(3, base // 8)
    if rng.random() < 0.15 and underline_y + 6 < canvas.shape[0]:
        thickness = max(2, base // 15)
        left, stop = boxes[0][0], boxes[-1][2]
        canvas[underline_y : underline_y + thickness, left:stop] = 1.0
    if rng.random() < 0.25:
        for _ in range(int(rng.integers(1, 6))):
            size = int(rng.integers(2, 5))
            sy = int(rng.integers(0, canvas.shape[0] - size))
            sx = int(rng.integers(0, canvas.shape[1] - size))
            canvas[sy : sy + size, sx : sx + size] = 1.0
    return NumberPicture(_paint(canvas, rng), text, category, tuple(boxes))


def _augmented(
    image: np.ndarray,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """A 28x28 uint8 digit changed by ``augment``; the digit itself if the change left no ink."""
    changed = augment(image[None].astype(np.float32) / 255.0, rng)[0]
    if changed.max() <= 0.1:
        return image
    return np.round(changed * 255.0).astype(np.uint8)


def _paint(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink in [0, 1] -> a grey picture: dark ink on light paper (4 in 5), else light on dark,
    with a little noise."""
    paper, pen = float(rng.uniform(190, 255)), float(rng.uniform(0, 60))
    if rng.random() < 0.2:
        paper, pen = float(rng.uniform(0, 60)), float(rng.uniform(190, 255))
    grey = paper + (pen - paper) * ink + rng.normal(0.0, rng.uniform(0, 4), ink.shape)
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def number_set(kind: str = "dev", count: int = 300, seed: int | None = None) -> list[NumberPicture]:
    """``count`` pictures of numbers from ``kind`` "dev" (the held-out MNIST training digits:
    tune on these) or "test" (MNIST test digits: report only), the categories in turn.
    Deterministic: ``seed`` (default: the set's own) fixes everything."""
    if kind not in SETS:
        raise ValueError(f"kind must be one of {sorted(SETS)}, got {kind!r}")
    rng = np.random.default_rng(SETS[kind][0] if seed is None else seed)
    return [make_number(rng, kind, CATEGORIES[i % len(CATEGORIES)]) for i in range(count)]
