"""A picture of a whole number (e.g. "2026") -> one MNIST-framed crop per digit.

``segment_digits`` runs steps 1-4 (``ink.find_ink``) on the whole picture, groups the ink's
connected pieces into digits, cuts groups too wide for one digit where they hold least ink, and
runs steps 5-8 (``framing``) on each digit.  Each ``DigitCrop`` carries its box in the input
picture's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from npcnn.digits.preprocess.framing import crop_to_ink, normalise_stroke, place_in_frame
from npcnn.digits.preprocess.ink import EIGHT_NEIGHBOURS, InkImage, find_ink


@dataclass(frozen=True)
class DigitCrop:
    """One digit of a number: ``image`` float32 (28, 28) like ``to_mnist`` gives, and ``box``
    ``(x0, y0, x1, y1)`` in the input picture's pixels (x1, y1 exclusive)."""

    image: np.ndarray
    box: tuple[int, int, int, int]


@dataclass
class _Group:
    """Connected pieces believed to form one digit: their labels, bounding box and ink."""

    labels: set[int]
    x0: int
    y0: int
    x1: int
    y1: int
    mass: float

    def merged(self, other: _Group) -> _Group:
        return _Group(
            self.labels | other.labels,
            min(self.x0, other.x0),
            min(self.y0, other.y0),
            max(self.x1, other.x1),
            max(self.y1, other.y1),
            self.mass + other.mass,
        )


def _merge_overlapping(groups: list[_Group], overlap: float = 0.6) -> list[_Group]:
    """Going left to right, each group joins the nearest earlier group whose column range it
    shares for at least ``overlap`` of the narrower one's width: a 5's floating top bar, the two
    strokes of a 4, a 7's crossbar.  Digits side by side share few columns and stay apart."""
    merged: list[_Group] = []
    for group in sorted(groups, key=lambda g: g.x0):
        for k in range(len(merged) - 1, -1, -1):
            other = merged[k]
            shared = min(other.x1, group.x1) - max(other.x0, group.x0)
            if shared >= overlap * min(other.x1 - other.x0, group.x1 - group.x0):
                merged[k] = other.merged(group)
                break
        else:
            merged.append(group)
    return merged


def _split_points(column_ink: np.ndarray, pieces: int) -> list[int]:
    """Where to cut a run of ``pieces`` touching digits, each about ``d = width / pieces`` wide.

    Near each ideal cut ``k d`` (within 0.3 d), take the column with the lowest
    ``ink / max ink + (distance to the ideal / (0.25 d))^2``: a column of little ink (where
    two digits only touch), unless it is far from where a cut should be.
    """
    width, cuts = len(column_ink), []
    digit = width / pieces
    relative = column_ink / max(float(column_ink.max()), 1e-9)
    for k in range(1, pieces):
        ideal = k * digit
        columns = np.arange(
            max(1, int(ideal - 0.3 * digit)), min(width - 1, int(ideal + 0.3 * digit) + 1)
        )
        cost = relative[columns] + ((columns - ideal) / (0.25 * digit)) ** 2
        cuts.append(int(columns[np.argmin(cost)]))
    return cuts


def _typical_digit_width(groups: list[_Group]) -> float:
    """How wide one digit of this number is: the median width of the groups that look like one
    digit (no wider than tall, and not a narrow "1"), kept within [0.5, 0.9] x the line's height;
    0.7 x the height (a usual handwritten digit) when no group looks like one."""
    line_height = max(g.y1 - g.y0 for g in groups)
    singles = [g.x1 - g.x0 for g in groups if 0.4 * line_height <= g.x1 - g.x0 <= (g.y1 - g.y0)]
    width = float(np.median(singles)) if singles else 0.7 * line_height
    return float(np.clip(width, 0.5 * line_height, 0.9 * line_height))


def _count_digits(group: _Group, digit_width: float) -> int:
    """How many touching digits a group holds: 1 unless it is wider than 1.1x its height (few
    single digits are) and than 1.6 digit widths; then ``round(width / digit_width)``."""
    width, height = group.x1 - group.x0, group.y1 - group.y0
    if width <= 1.1 * height or width <= 1.6 * digit_width:
        return 1
    return max(2, round(width / digit_width))


def segment_digits(image: Image.Image | np.ndarray) -> list[DigitCrop]:
    """A picture of a written number (e.g. "2026") -> one ``DigitCrop`` per digit, left to right.

    Steps 1-4 of ``to_mnist`` give clean ink; its connected pieces are merged when they overlap
    strongly in x (``_merge_overlapping``); groups both short and light (dots, specks) are
    dropped; a group too wide for one digit (``_count_digits``) is cut at the columns of least
    ink (``_split_points``); each digit then goes through steps 5-8.  No ink -> ``NoInkError``.
    """
    ink = find_ink(image)
    labels, count = ndimage.label(ink.pixels > 0, structure=EIGHT_NEIGHBOURS)
    masses = ndimage.sum_labels(ink.pixels, labels, index=np.arange(1, count + 1))
    boxes = ndimage.find_objects(labels)
    groups = _merge_overlapping(
        [
            _Group({label}, box[1].start, box[0].start, box[1].stop, box[0].stop, float(mass))
            for label, (box, mass) in enumerate(zip(boxes, masses, strict=True), start=1)
        ]
    )
    tallest = max(g.y1 - g.y0 for g in groups)
    heaviest = max(g.mass for g in groups)
    groups = [g for g in groups if g.y1 - g.y0 >= 0.3 * tallest or g.mass >= 0.15 * heaviest]
    digit_width = _typical_digit_width(groups)
    crops = []
    for group in sorted(groups, key=lambda g: g.x0):
        window = (slice(group.y0, group.y1), slice(group.x0, group.x1))
        pixels = np.where(np.isin(labels[window], list(group.labels)), ink.pixels[window], 0.0)
        cuts = _split_points(pixels.sum(axis=0), _count_digits(group, digit_width))
        edges = [0, *cuts, group.x1 - group.x0]
        for left, right in zip(edges[:-1], edges[1:], strict=True):
            part = np.zeros_like(pixels)
            part[:, left:right] = pixels[:, left:right]
            if part.sum() <= 0:
                continue
            crop, (x0, y0, x1, y1) = crop_to_ink(part)
            box = _to_input_box((x0 + group.x0, y0 + group.y0, x1 + group.x0, y1 + group.y0), ink)
            crops.append(DigitCrop(place_in_frame(normalise_stroke(crop)), box))
    return crops


def _to_input_box(box: tuple[int, int, int, int], ink: InkImage) -> tuple[int, int, int, int]:
    """A box in working pixels -> the same box in the input picture's pixels."""
    x0, y0, x1, y1 = (v * ink.scale for v in box)
    return x0, y0, min(x1, ink.input_size[0]), min(y1, ink.input_size[1])
