"""The strokes of each digit, as a person draws them, and a pen to draw them onto a picture:
shared by the API and browser tests."""

from __future__ import annotations

from PIL import Image, ImageDraw

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) as fractions of the picture

# Strokes of each digit in a 0..1 box (x right, y down), in the order a person draws them.
DIGIT_STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [[(0.5, 0.0), (0.2, 0.15), (0.1, 0.5), (0.2, 0.85), (0.5, 1.0), (0.8, 0.85), (0.9, 0.5),
         (0.8, 0.15), (0.5, 0.0)]],
    1: [[(0.35, 0.15), (0.55, 0.0), (0.55, 1.0)]],
    2: [[(0.1, 0.25), (0.3, 0.03), (0.65, 0.0), (0.88, 0.2), (0.8, 0.45), (0.1, 1.0),
         (0.95, 1.0)]],
    3: [[(0.15, 0.1), (0.5, 0.0), (0.85, 0.15), (0.8, 0.4), (0.45, 0.5), (0.85, 0.6),
         (0.9, 0.85), (0.5, 1.0), (0.1, 0.9)]],
    4: [[(0.6, 0.0), (0.05, 0.65), (0.95, 0.65)], [(0.65, 0.3), (0.65, 1.0)]],
    5: [[(0.2, 0.0), (0.15, 0.45), (0.55, 0.4), (0.85, 0.6), (0.85, 0.85), (0.5, 1.0),
         (0.1, 0.9)], [(0.2, 0.0), (0.85, 0.0)]],
    6: [[(0.75, 0.0), (0.35, 0.25), (0.12, 0.65), (0.25, 0.95), (0.6, 1.0), (0.85, 0.75),
         (0.7, 0.5), (0.35, 0.52), (0.15, 0.7)]],
    7: [[(0.05, 0.0), (0.95, 0.0), (0.4, 1.0)]],
    8: [[(0.5, 0.5), (0.2, 0.3), (0.3, 0.05), (0.7, 0.05), (0.8, 0.3), (0.5, 0.5), (0.15, 0.72),
         (0.3, 0.97), (0.7, 0.97), (0.85, 0.72), (0.5, 0.5)]],
    9: [[(0.85, 0.25), (0.6, 0.02), (0.25, 0.1), (0.2, 0.35), (0.5, 0.5), (0.85, 0.3)],
        [(0.85, 0.1), (0.8, 1.0)]],
}  # fmt: skip


def draw_strokes(image: Image.Image, digit: int, box: Box, width: float, ink) -> None:
    """Draw ``digit`` onto ``image`` inside ``box``, with a round pen ``width`` times the
    picture's shorter side, in the colour ``ink``."""
    draw = ImageDraw.Draw(image)
    w, h = image.size
    x0, y0, x1, y1 = box
    pen = max(1, round(width * min(w, h)))
    for stroke in DIGIT_STROKES[digit]:
        points = [(w * (x0 + (x1 - x0) * x), h * (y0 + (y1 - y0) * y)) for x, y in stroke]
        draw.line(points, fill=ink, width=pen, joint="curve")
        for x, y in points:
            r = pen / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
