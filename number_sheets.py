"""A human baseline for the project's number pictures: sheets to read by eye, and a scorer.

How hard is ``npcnn.digits.number_set``?  Read a sample yourself and compare with the app::

    python number_sheets.py make --category overlapping --count 30 --out /tmp/sheets
    # look at /tmp/sheets/sheet*.png and write what you read, one number per line, in the
    # order of the labels #0, #1, ... (a line "?" when you cannot read it)
    python number_sheets.py score /tmp/sheets my_readings.txt

``make`` draws ``--count`` pictures of one category at random (``--sample-seed``) from the
first ``--pool`` pictures of a set (``number_set(--set, --pool, --seed)``, the categories in
turn), and writes them ten to a sheet, each scaled to fit 560 x 140 px, with ``key.json`` (the
true numbers and how to make the pictures again; do not look at it before you read).  ``score``
compares your readings with the key and reads the same pictures with the app's
``Recogniser.read_number`` (its default, ``auto``), so both are judged on the very same pictures.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import npcnn
from npcnn.digits.errors import ImageError
from npcnn.digits.number_set import CATEGORIES, SETS, NumberPicture, number_set
from npcnn.digits.recogniser import Recogniser

HERE = Path(__file__).resolve().parent
TILE = (580, 160)  # a picture's place on a sheet: 560 x 140 for the picture, a label above it
PER_SHEET = 10


@dataclass(frozen=True)
class Sample:
    """Which pictures a sheet holds: ``count`` of ``category`` drawn with ``sample_seed`` from
    ``number_set(kind, pool, seed)``."""

    kind: str
    seed: int
    pool: int
    category: str
    count: int
    sample_seed: int

    def pictures(self) -> list[NumberPicture]:
        """The sampled pictures, in sheet order (deterministic)."""
        of_category = [p for p in number_set(self.kind, self.pool, self.seed)
                       if p.category == self.category]  # fmt: skip
        if self.count > len(of_category):
            raise ValueError(
                f"the pool holds only {len(of_category)} {self.category} pictures; "
                f"ask for fewer or raise --pool"
            )
        rng = np.random.default_rng(self.sample_seed)
        return [of_category[k] for k in rng.choice(len(of_category), self.count, replace=False)]


def draw_sheets(pictures: list[NumberPicture]) -> list[Image.Image]:
    """The pictures ten to a sheet, two columns, each labelled ``#index`` above it."""
    sheets = []
    for first in range(0, len(pictures), PER_SHEET):
        sheet = Image.new("L", (2 * TILE[0], TILE[1] * PER_SHEET // 2), 255)
        for j, picture in enumerate(pictures[first : first + PER_SHEET]):
            image = Image.open(io.BytesIO(picture.png())).convert("L")
            image.thumbnail((TILE[0] - 20, TILE[1] - 20))
            x, y = (j % 2) * TILE[0], (j // 2) * TILE[1]
            sheet.paste(image, (x, y + 14))
            ImageDraw.Draw(sheet).text((x + 2, y + 1), f"#{first + j}", fill=0)
        sheets.append(sheet)
    return sheets


def make(sample: Sample, out: Path) -> list[Path]:
    """Write the sheets and ``key.json`` into ``out``; returns the sheets' paths."""
    pictures = sample.pictures()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, sheet in enumerate(draw_sheets(pictures)):
        paths.append(out / f"sheet{k}.png")
        sheet.save(paths[-1])
    key = {"sample": asdict(sample), "numbers": [p.text for p in pictures]}
    (out / "key.json").write_text(json.dumps(key, indent=1))
    return paths


def read_readings(path: Path) -> list[str]:
    """One reading per line, in picture order; empty lines and lines starting with "#" (comments)
    are skipped, and anything but digits in a reading is ignored ("?" -> "")."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    return ["".join(c for c in line if c.isdigit()) for line in lines]


def score(directory: Path, readings_path: Path, recogniser: Recogniser) -> dict:
    """Your readings and the app's against the key: counts, and the pictures either got wrong."""
    key = json.loads((directory / "key.json").read_text())
    sample = Sample(**key["sample"])
    truth = key["numbers"]
    yours = read_readings(readings_path)
    if len(yours) != len(truth):
        raise ValueError(f"{len(yours)} readings for {len(truth)} pictures: one line per picture")
    apps = []
    for picture in sample.pictures():
        try:
            apps.append(recogniser.read_number(picture.png())["number"])
        except ImageError:
            apps.append("")
    misses = [
        {"index": k, "truth": t, "yours": y, "app": a}
        for k, (t, y, a) in enumerate(zip(truth, yours, apps, strict=True))
        if y != t or a != t
    ]
    return {
        "pictures": len(truth),
        "yours_exact": sum(y == t for y, t in zip(yours, truth, strict=True)),
        "app_exact": sum(a == t for a, t in zip(apps, truth, strict=True)),
        "misses": misses,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("make", help="write sheets of pictures to read, and their key")
    making.add_argument("--set", choices=sorted(SETS), default="dev", dest="kind")
    making.add_argument("--seed", type=int, default=7, help="the number set's seed")
    making.add_argument("--pool", type=int, default=1200, help="pictures made (all categories)")
    making.add_argument("--category", choices=CATEGORIES, required=True)
    making.add_argument("--count", type=int, default=30)
    making.add_argument("--sample-seed", type=int, default=11)
    making.add_argument("--out", type=Path, required=True)
    scoring = commands.add_parser("score", help="your readings and the app's against the key")
    scoring.add_argument("directory", type=Path)
    scoring.add_argument("readings", type=Path)
    scoring.add_argument("--weights", default=str(HERE / "weights" / "mnist_cnn.npz"))
    args = parser.parse_args(argv)
    if args.command == "make":
        sample = Sample(
            args.kind, args.seed, args.pool, args.category, args.count, args.sample_seed
        )
        for path in make(sample, args.out):
            print(path)
        return 0
    npcnn.set_threads(1)  # as the app runs
    result = score(args.directory, args.readings, Recogniser.from_file(args.weights))
    n = result["pictures"]
    print(f"you: {result['yours_exact']}/{n} exact; the app: {result['app_exact']}/{n} exact")
    for miss in result["misses"]:
        print(f"  #{miss['index']}: truth {miss['truth']}, you {miss['yours'] or '-'}, "
              f"app {miss['app'] or '-'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
