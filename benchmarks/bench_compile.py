"""How long the Numba kernels take to compile: what a fresh install pays once, before the kernel
cache on disk is filled (the app's first start, a fresh clone's test run).

    python benchmarks/bench_compile.py [--tree DIR ...] [--runs 2] [--dtype float32 float64]

Each measurement runs in a new process with an empty cache directory (``NUMBA_CACHE_DIR``) and
times the first call of Winograd's forward and backward kernels (``kernels/numba/winograd.py``)
in each ``--dtype``, or of the app's ``Recogniser.warm_up`` with the shipped networks (every
kernel a request uses, Winograd's float32 pair among them).  With several ``--tree`` checkouts
(before and after a change) the runs alternate between them, and the medians are printed side by
side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Run in the child process, inside the checkout being measured.
CHILD = """
import json, sys, time
import numpy as np
import npcnn
from npcnn.kernels.numba import winograd

npcnn.set_backend("numba")
npcnn.set_threads(1)
figures = {}
for name in sys.argv[1:]:
    dtype = np.dtype(name)
    rng = np.random.default_rng(0)
    x = rng.random((4, 8, 8, 32)).astype(dtype)
    w_ext = rng.random((32, 9 * 32 + 1)).astype(dtype)
    started = time.perf_counter()
    y = winograd.winograd_conv2d_forward(x, w_ext, 1)
    figures[f"winograd forward {name}"] = time.perf_counter() - started
    started = time.perf_counter()
    winograd.winograd_conv2d_backward(x, y, w_ext, 1, True)
    figures[f"winograd backward {name}"] = time.perf_counter() - started
print(json.dumps(figures))
"""

# The app's warm-up, in a process of its own (its kernels all compiled there).
WARM_UP = """
import json, time
import npcnn
from npcnn.digits.recogniser import Recogniser

npcnn.set_threads(1)
recogniser = Recogniser.from_file("weights/mnist_cnn.npz")
started = time.perf_counter()
recogniser.warm_up()
print(json.dumps({"app warm-up (every kernel a request uses)": time.perf_counter() - started}))
"""


def fresh_process(tree: Path, code: str, *args: str) -> dict[str, float]:
    """Run ``code`` in ``tree`` in a new process with an empty kernel cache: its figures."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(tree)}
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(tree: Path, dtypes: list[str]) -> dict[str, float]:
    """Seconds per step in ``tree``, each part from an empty cache."""
    return {**fresh_process(tree, CHILD, *dtypes), **fresh_process(tree, WARM_UP)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tree", type=Path, nargs="+", default=[ROOT], help="checkouts to compare")
    p.add_argument("--runs", type=int, default=2, help="fresh-cache runs per checkout")
    p.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])
    args = p.parse_args()
    results: dict[Path, list[dict[str, float]]] = {tree: [] for tree in args.tree}
    for run in range(args.runs):
        for tree in args.tree:
            results[tree].append(measure(tree.resolve(), args.dtype))
            print(f"run {run + 1}, {tree}: {results[tree][-1]}", file=sys.stderr)
    steps = list(results[args.tree[0]][0])
    print(f"first-call seconds, medians of {args.runs} fresh-cache runs")
    print(f"{'step':48s}" + "".join(f"{str(tree)[-24:]:>26s}" for tree in args.tree))
    for step in steps:
        row = [float(np.median([r[step] for r in results[tree]])) for tree in args.tree]
        print(f"{step:48s}" + "".join(f"{value:26.1f}" for value in row))


if __name__ == "__main__":
    main()
