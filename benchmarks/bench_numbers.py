"""How fast the app reads a whole number: ``POST /api/predict_number`` on 6-digit numbers.

Pictures: 1000 x 300 px, dark on white, six MNIST training digits 150-200 px high side by side
(gaps from -10 px, touching or overlapping, to 40 px).  Each request goes through the Flask test
client of ``app.create_app`` (the whole app: request parsing, decoding, the reading, JSON), one at
a time, after a warm-up; we report p50 and p90 of the request's wall time.  Then each stage of the
reading is timed on its own, on the same pictures:

    decode      bytes -> Pillow image (``open_picture``)
    ink         steps 1-4 (``find_ink``): background, polarity, clean ink
    atoms       connected pieces and seam cuts (``numbers.find_atoms``)
    framing     every candidate digit framed like MNIST (``numbers.number_candidates``)
    network     ONE ``model.predict`` of all candidates
    search      the dynamic programming over the cuts, and the runner-up (``choose_reading``)

and, with a number reader beside the model (``weights/number_reader.npz``), the window reading
(``number_windows.read_number``), which the app tries first:

    windows     the line scaled, and every window cut and framed
    reader      ONE ``predict`` of all windows by the number reader (BatchNorm folded in)
    runs        the digits found in the runs of windows, their boxes and framed images

``segmented`` is the share of pictures whose window reading was unsure
(``Recogniser.looks_twice``), for which the app without a sequence head also runs the
segmentation above.  With the sequence head (``weights/number_sequence.npz``), the app reads
every number by ``Recogniser.read_sequence`` instead:

    sequence_windows    the same windows
    sequence_networks   both readers on every window, and the head over their features
    sequence_search     the best path, the digits' boxes and framed images

    python benchmarks/bench_numbers.py [--weights PATH] [--pictures 20] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from common import ROOT, machine, report
from PIL import Image

import npcnn
from npcnn.digits import number_windows, numbers
from npcnn.digits.number_set import digit_sources, scaled_digit
from npcnn.digits.preprocess import find_ink
from npcnn.digits.recogniser import open_picture


def six_digit_pictures(count: int, seed: int = 0) -> list[tuple[bytes, str]]:
    """``count`` PNG pictures 1000 x 300 of 6-digit numbers, and their text."""
    images, labels, _, _ = digit_sources("dev")
    rng = np.random.default_rng(seed)
    pictures = []
    for _ in range(count):
        ink = np.zeros((300, 1000), np.float32)
        height = int(rng.integers(150, 201))
        glyphs, text = [], ""
        for k in rng.integers(len(labels), size=6):
            glyphs.append(scaled_digit(images[k], height))
            text += str(int(labels[k]))
        gaps = rng.integers(-10, 41, size=5)
        width = sum(g.shape[1] for g in glyphs) + int(gaps.sum())
        x = max(0, (1000 - width) // 2)
        for glyph, gap in zip(glyphs, [*gaps, 0], strict=True):
            w = min(glyph.shape[1], 1000 - x)
            y = (300 - glyph.shape[0]) // 2
            region = ink[y : y + glyph.shape[0], x : x + w]
            np.maximum(region, glyph[:, :w], out=region)
            x = min(999, x + glyph.shape[1] + int(gap))
        buffer = io.BytesIO()
        Image.fromarray((255 - 255 * ink).astype(np.uint8)).save(buffer, format="PNG")
        pictures.append((buffer.getvalue(), text))
    return pictures


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=str(ROOT / "weights" / "mnist_cnn.npz"))
    parser.add_argument("--pictures", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import app as app_module  # the app's own factory (sets one maths thread, as served)

    client = app_module.create_app(args.weights).test_client()
    recogniser = client.application.extensions["npcnn"]
    pictures = six_digit_pictures(args.pictures)

    def post(data: bytes) -> dict:
        files = {"image": (io.BytesIO(data), "number.png", "image/png")}
        response = client.post("/api/predict_number", data=files)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    for data, _ in pictures[:3]:
        post(data)  # warm-up
    wall, right = [], 0
    for _ in range(args.repeats):
        for data, text in pictures:
            started = time.perf_counter()
            answer = post(data)
            wall.append(1000.0 * (time.perf_counter() - started))
            right += answer["number"] == text

    stages: dict[str, list[float]] = {
        k: [] for k in ("decode", "ink", "atoms", "framing", "network", "search")
    }
    reader = recogniser.number_reader
    if reader is not None:
        stages |= {"windows": [], "reader": [], "runs": []}
    head = recogniser.sequence_head
    if head is not None:
        stages |= {"sequence_windows": [], "sequence_networks": [], "sequence_search": []}
    candidates_per_picture, windows_per_picture, unsure = [], [], 0
    for _ in range(args.repeats):
        for data, _ in pictures:
            t0 = time.perf_counter()
            picture = open_picture(data)
            t1 = time.perf_counter()
            ink = find_ink(picture)
            t2 = time.perf_counter()
            candidates = numbers.number_candidates(ink)
            t3 = time.perf_counter()
            probabilities = recogniser.model.predict(candidates.images[:, None])
            t4 = time.perf_counter()
            reading = numbers.choose_reading(candidates, probabilities)
            stages["decode"].append(1000.0 * (t1 - t0))
            stages["ink"].append(1000.0 * (t2 - t1))
            stages["network"].append(1000.0 * (t4 - t3))
            for name in ("atoms", "framing", "search"):
                stages[name].append(1000.0 * reading.timings[name])
            candidates_per_picture.append(len(candidates.spans))
            if reader is not None:
                by_windows = number_windows.reading_from_windows(ink, recogniser.read_windows(ink))
                stages["windows"].append(1000.0 * by_windows.timings["windows"])
                stages["reader"].append(1000.0 * by_windows.timings["network"])
                stages["runs"].append(1000.0 * by_windows.timings["search"])
                windows_per_picture.append(by_windows.timings["window_count"])
                unsure += recogniser.looks_twice(by_windows)
            if head is not None:
                by_sequence = recogniser.read_sequence(ink)
                for stage, timing in (("windows", "windows"), ("networks", "network"),
                                      ("search", "search")):  # fmt: skip
                    stages[f"sequence_{stage}"].append(1000.0 * by_sequence.timings[timing])
    result = {
        "pictures": f"{len(pictures)} x 1000x300, 6 digits",
        "requests": len(wall),
        "p50_ms": round(statistics.median(wall), 2),
        "p90_ms": round(percentile(wall, 90), 2),
        "exact_numbers": f"{right}/{len(wall)}",
        **{f"{k}_ms_p50": round(statistics.median(v), 2) for k, v in stages.items()},
        "candidates_p50": statistics.median(candidates_per_picture),
        **(
            {
                "windows_p50": statistics.median(windows_per_picture),
                "segmented": f"{unsure}/{len(windows_per_picture)}",
            }
            if reader is not None
            else {}
        ),
        "backend": npcnn.get_backend(),
        "weights": args.weights,
        "cpu_count": machine().get("cpu_count"),
    }
    report(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
