"""Tune the number reader's weights on the DEVELOPMENT number set (never on the test set).

The ink, atoms, candidates and the network's probabilities of every dev picture are computed once
and kept; each setting of the reading's weights then re-runs only the priors and the dynamic
programme (``numbers.choose_reading``), milliseconds per picture.  Settings that change the atoms
or candidates (``--fix MAX_ATOMS=4``, seam parameters) are applied before the cache is built.

    python benchmarks/tune_numbers.py                      # figures with the current weights
    python benchmarks/tune_numbers.py --search             # coordinate search over WEIGHTS
    python benchmarks/tune_numbers.py --fix SEAM_DRIFT=0.3 --search
    python benchmarks/tune_numbers.py --failures /tmp/fails.png   # a contact sheet of misreadings

Prints exact-number accuracy overall and per category.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import npcnn  # noqa: E402
from npcnn.digits import numbers  # noqa: E402
from npcnn.digits.errors import ImageError  # noqa: E402
from npcnn.digits.number_set import CATEGORIES, number_set  # noqa: E402
from npcnn.digits.preprocess import find_ink  # noqa: E402
from npcnn.digits.recogniser import Recogniser, open_picture  # noqa: E402

# The weights searched, each with the values tried (the current value is always tried too)
WEIGHTS = {
    "DIGIT_BIAS": [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0],
    "CUT_WEIGHT": [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0],
    "GAP_WEIGHT": [1.0, 2.0, 4.0, 6.0, 8.0],
    "SKIP_COST": [-0.5, -1.0, -1.5, -2.5, -4.0],
    "WIDE_RATIO": [0.9, 1.0, 1.2, 1.4],
    "WIDE_SCALE": [0.2, 0.3, 0.4, 0.6, 1.0],
    "SHORT_RATIO": [0.35, 0.45, 0.55],
    "SHORT_SCALE": [0.1, 0.15, 0.25],
}


@dataclass
class Case:
    """One dev picture, read up to the network: its candidates and their probabilities."""

    text: str
    category: str
    candidates: numbers.Candidates | None  # None: no ink found
    probabilities: np.ndarray | None
    sizes: np.ndarray | None  # (N, 3): each candidate's width, height and inner gap (px)


def build_cases(recogniser: Recogniser, pictures: list) -> list[Case]:
    """Every picture read up to (and including) the network's one predict."""
    cases = []
    for picture in pictures:
        try:
            ink = find_ink(open_picture(picture.png()))
            found = numbers.number_candidates(ink)
        except ImageError:
            cases.append(Case(picture.text, picture.category, None, None, None))
            continue
        atoms = found.atoms.atoms
        sizes = np.array(
            [
                (b[2] - b[0], b[3] - b[1], numbers._inner_gap(atoms[i:j]))
                for b, (i, j) in zip(found.boxes, found.spans, strict=True)
            ],
            dtype=np.float64,
        )
        probabilities = recogniser.model.predict(found.images[:, None])
        cases.append(Case(picture.text, picture.category, found, probabilities, sizes))
    return cases


def read(case: Case) -> str:
    """The case's reading with the module's current weights (priors recomputed from them)."""
    if case.candidates is None:
        return ""
    line = case.candidates.atoms.line_height
    case.candidates.priors = np.array(
        [
            numbers.segment_prior(w, h, line) - numbers.GAP_WEIGHT * gap / line
            for w, h, gap in case.sizes
        ]
    )
    try:
        return numbers.choose_reading(case.candidates, case.probabilities).number
    except ImageError:
        return ""


def score(cases: list[Case]) -> dict[str, float]:
    """Exact-number accuracy overall ("all") and per category."""
    right: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for case in cases:
        ok = read(case) == case.text
        for key in ("all", case.category):
            right[key][0] += ok
            right[key][1] += 1
    return {key: hits / total for key, (hits, total) in right.items()}


def show(label: str, result: dict[str, float]) -> None:
    row = " ".join(f"{c[:5]} {100 * result.get(c, 0):5.1f}" for c in CATEGORIES)
    print(f"{label:<28} all {100 * result['all']:5.1f} | {row}", flush=True)


def search(cases: list[Case], rounds: int) -> None:
    """Coordinate search: each weight in turn set to its best value, the others held."""
    best = score(cases)["all"]
    for _ in range(rounds):
        changed = False
        for name, values in WEIGHTS.items():
            current = getattr(numbers, name)
            for value in sorted(set(values) | {current}):
                setattr(numbers, name, value)
                result = score(cases)
                show(f"{name}={value}", result)
                if result["all"] > best + 1e-9:
                    best, current, changed = result["all"], value, True
            setattr(numbers, name, current)
            print(f"-> {name} = {current} (all {100 * best:.1f}%)", flush=True)
        if not changed:
            break
    print("best:", {name: getattr(numbers, name) for name in WEIGHTS})


def oracle(case: Case) -> float:
    """The best score of a reading that spells the truth (-inf if the candidates allow none):
    the same dynamic programme as ``best_readings``, each segment's digit forced."""
    found, text = case.candidates, case.text
    atoms = found.atoms.atoms
    n = len(atoms)
    logs = np.log(np.clip(case.probabilities[:, : numbers.NOT_A_DIGIT], 1e-12, 1.0))
    best = np.full((n + 1, len(text) + 1), -np.inf)
    best[0, 0] = 0.0
    for j in range(1, n + 1):
        same = j < n and atoms[j].piece == atoms[j - 1].piece
        cut = numbers.CUT_WEIGHT * atoms[j].cut_cost if same else 0.0
        if atoms[j - 1].small:
            best[j] = np.maximum(best[j], best[j - 1] + numbers.SKIP_COST)
        for k, (i, stop) in enumerate(found.spans):
            if stop != j:
                continue
            step = found.priors[k] + numbers.DIGIT_BIAS - cut
            for t, digit in enumerate(text):
                value = best[i, t] + logs[k, int(digit)] + step
                best[j, t + 1] = max(best[j, t + 1], value)
    return float(best[n, len(text)])


def diagnose(cases: list[Case]) -> None:
    """Why each misreading happened: no way to spell the truth from the candidates
    (segmentation), or a truthful reading that scored lower (the network or the weights)."""
    why: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for case in cases:
        if case.candidates is None or read(case) == case.text:
            continue
        truthful = oracle(case)
        best = numbers.choose_reading(case.candidates, case.probabilities)
        if truthful == -np.inf:
            reason = "no candidates spell it"
        elif truthful < -20:
            reason = "spelt only by rejected candidates"
        else:
            reason = "truth scored lower" if len(best.number) == len(case.text) else "count"
        why[case.category][reason] += 1
    for category, reasons in why.items():
        print(f"{category:<12}", dict(reasons))


def contact_sheet(cases: list[Case], pictures: list, path: str, most: int = 48) -> None:
    """The misread pictures, each with its truth and reading and the boxes of its digits."""
    tiles = []
    for case, picture in zip(cases, pictures, strict=True):
        if case.candidates is None or read(case) == case.text:
            continue
        reading = numbers.choose_reading(case.candidates, case.probabilities)
        image = Image.fromarray(picture.pixels).convert("RGB")
        draw = ImageDraw.Draw(image)
        for digit in reading.digits:
            draw.rectangle(digit.box, outline=(255, 0, 0))
            draw.text((digit.box[0] + 2, digit.box[1] + 2), str(digit.digit), fill=(255, 0, 0))
        image.thumbnail((600, 160))
        tile = Image.new("RGB", (600, 180), "white")
        tile.paste(image, (0, 20))
        ImageDraw.Draw(tile).text(
            (4, 4), f"{case.category}: {case.text} read {reading.number}", fill=(0, 0, 255)
        )
        tiles.append(tile)
        if len(tiles) == most:
            break
    columns = 2
    sheet = Image.new("RGB", (600 * columns, 180 * ((len(tiles) + 1) // columns)), "grey")
    for k, tile in enumerate(tiles):
        sheet.paste(tile, (600 * (k % columns), 180 * (k // columns)))
    sheet.save(path)
    print(f"{len(tiles)} misreadings in {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=str(ROOT / "weights" / "mnist_cnn.npz"))
    parser.add_argument("--count", type=int, default=600, help="dev pictures (default 600)")
    parser.add_argument("--fix", action="append", default=[], help="NAME=VALUE before the cache")
    parser.add_argument("--search", action="store_true", help="coordinate search over WEIGHTS")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--failures", help="save a contact sheet of misreadings to this PNG")
    parser.add_argument("--diagnose", action="store_true", help="why the misreadings happened")
    parser.add_argument("--category", help="only pictures of this category")
    args = parser.parse_args(argv)
    npcnn.set_threads(1)
    for setting in args.fix:
        name, value = setting.split("=")
        setattr(numbers, name, type(getattr(numbers, name))(value))
    recogniser = Recogniser.from_file(args.weights)
    pictures = number_set("dev", args.count)  # the development set only: never tune on test
    if args.category:
        pictures = [p for p in pictures if p.category == args.category]
    cases = build_cases(recogniser, pictures)
    show("current", score(cases))
    if args.search:
        search(cases, args.rounds)
    if args.diagnose:
        diagnose(cases)
    if args.failures:
        contact_sheet(cases, pictures, args.failures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
