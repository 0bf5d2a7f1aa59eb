"""Time im2col and col2im: the NumPy reference against the Numba kernels (chapter 2 of the guide).

    python examples/time_im2col.py [--batch 128] [--threads 2] [--repeats 30]

For the layer shapes of the shipped model (a 5x5 convolution of the 28x28 digits, a 3x3 one of
12x12x32 maps, a padded 3x3 one), prints the median time of each kernel in each backend and the
ratio.  Run it on an idle machine: other work on the cores distorts the numbers.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

import npcnn
from npcnn.kernels import numpy_ref

try:
    from npcnn.kernels import numba as numba_jit
except ImportError:  # Numba is optional
    numba_jit = None

# (label, (H, W, C), kernel, stride, pad)
CASES = [
    ("5x5 conv of 28x28x1", (28, 28, 1), 5, 1, 0),
    ("3x3 conv of 12x12x32", (12, 12, 32), 3, 1, 0),
    ("3x3 'same' conv of 14x14x32", (14, 14, 32), 3, 1, 1),
]


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up (and, for Numba, compile or load from the cache)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    if numba_jit is None:
        raise SystemExit("Numba is not installed: there is nothing to compare with")
    threads = npcnn.set_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"batch {args.batch}, float32, {threads} thread(s), median of {args.repeats} runs")
    print(f"{'case':30s} {'kernel':7s} {'numpy ms':>9s} {'numba ms':>9s} {'ratio':>6s}")
    for label, (h, w, c), k, stride, pad in CASES:
        x = rng.random((args.batch, h, w, c), dtype=np.float32)
        cols = numpy_ref.im2col(x, k, k, stride, pad)
        assert np.array_equal(cols, numba_jit.im2col(x, k, k, stride, pad))
        grad_cols = rng.random(cols.shape, dtype=np.float32)
        times = {
            (name, backend.__name__): median_seconds(
                partial(getattr(backend, name), *inputs, k, k, stride, pad), args.repeats
            )
            for name, inputs in (("im2col", (x,)), ("col2im", (grad_cols, x.shape)))
            for backend in (numpy_ref, numba_jit)
        }
        for name in ("im2col", "col2im"):
            slow, fast = times[name, numpy_ref.__name__], times[name, numba_jit.__name__]
            print(f"{label:30s} {name:7s} {1e3 * slow:9.2f} {1e3 * fast:9.2f} {slow / fast:5.1f}x")


if __name__ == "__main__":
    main()
