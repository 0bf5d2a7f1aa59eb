"""When does Winograd F(4x4, 3x3) beat im2col + GEMM?  The data behind ``use_winograd``
(``npcnn/kernels/winograd.py``).

    python benchmarks/winograd_crossover.py [--backend numba|numpy] [--threads 2] [--repeats 21]

Times a backend's two ways of computing a 3x3, stride-1 convolution, forward and backward, for
the convolution shapes of the reference models (lenet-plus: 28x28 32->32, 14x14 32->64 and
64->64; keras-small: 13x13 32->64 valid; shipped: 12x12 32->64 and 10x10 64->64; and narrower
ones) and for batches from 1 to 128 images.  Prints the time ratio Winograd / im2col (below 1:
Winograd is faster), medians of ``--repeats`` calls measured side by side.  The NumPy backend's
Winograd is ``kernels/winograd.py`` (F(2x2, 3x3) is shown too); the Numba one is F(4x4, 3x3).
"""

from __future__ import annotations

import argparse

import numpy as np
from common import add_memory_option, import_npcnn, median, memory_as_in_fit, time_calls

# (input size, in channels, out channels, padding)
SHAPES = [
    (28, 32, 32, 1),
    (13, 32, 64, 0),
    (14, 32, 64, 1),
    (14, 64, 64, 1),
    (12, 32, 64, 0),
    (10, 64, 64, 0),
    (28, 16, 16, 1),
    (28, 8, 8, 1),
]
BATCHES = (1, 4, 16, 32, 128)


def calls(backend: str, x, w_ext, grad_y, pad) -> dict:
    """The backend's two (or, for NumPy, three) ways, forward and backward."""
    if backend == "numba":
        from npcnn.kernels.numba import conv, winograd

        return {
            "im2col": (
                lambda: conv.im2col_conv2d_forward(x, w_ext, 3, 1, pad),
                lambda: conv.im2col_conv2d_backward(x, grad_y, w_ext, 3, 1, pad),
            ),
            "F4": (
                lambda: winograd.winograd_conv2d_forward(x, w_ext, pad),
                lambda: winograd.winograd_conv2d_backward(x, grad_y, w_ext, pad),
            ),
        }
    from npcnn.kernels import numpy_ref, winograd

    ways = {
        "im2col": (
            lambda: numpy_ref.im2col_conv2d_forward(x, w_ext, 3, 1, pad),
            lambda: numpy_ref.im2col_conv2d_backward(x, grad_y, w_ext, 3, 1, pad),
        )
    }
    for m in (2, 4):
        ways[f"F{m}"] = (
            lambda m=m: winograd.conv3x3_forward(x, w_ext, pad, m),
            lambda m=m: winograd.conv3x3_backward(x, grad_y, w_ext, pad, m),
        )
    return ways


def winograd_over_im2col(backend: str, x, w_ext, grad_y, pad, repeats: int) -> list[float]:
    """Median time of each Winograd over im2col + GEMM: forward, backward, for each tile size."""
    times = {
        (way, step): median(time_calls(call, repeats))
        for way, pair in calls(backend, x, w_ext, grad_y, pad).items()
        for step, call in zip(("forward", "backward"), pair, strict=True)
    }
    ways = sorted({way for way, _ in times} - {"im2col"})
    return [
        times[(way, step)] / times[("im2col", step)]
        for way in ways
        for step in ("forward", "backward")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba", choices=["numba", "numpy"])
    parser.add_argument("--threads", type=int, default=2, help="maths threads (0 = every core)")
    parser.add_argument("--repeats", type=int, default=21, help="timed calls per measurement")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help="images")
    add_memory_option(parser)
    args = parser.parse_args()
    memory_as_in_fit(import_npcnn(args.backend, args.threads or None)[0], args)

    rng = np.random.default_rng(0)
    print(
        f"Winograd / im2col time, {args.backend} backend, {args.threads} thread(s); "
        "below 1 = Winograd wins"
    )
    ways = ["F2", "F4"] if args.backend == "numpy" else ["F4"]
    columns = " ".join(f"{way + ' ' + step:>11}" for way in ways for step in ("fwd", "bwd"))
    print(f"{'size':>4} {'C':>3} {'F':>3} {'pad':>3} {'images':>6} {columns}")
    for size, c, f, pad in SHAPES:
        for n in args.batches:
            x = rng.standard_normal((n, size, size, c)).astype(np.float32)
            w_ext = (0.1 * rng.standard_normal((f, 9 * c + 1))).astype(np.float32)
            out = size + 2 * pad - 2
            grad_y = rng.standard_normal((n, out, out, f)).astype(np.float32)
            ratios = winograd_over_im2col(args.backend, x, w_ext, grad_y, pad, args.repeats)
            cells = " ".join(f"{ratio:>11.2f}" for ratio in ratios)
            print(f"{size:>4} {c:>3} {f:>3} {pad:>3} {n:>6} {cells}")


if __name__ == "__main__":
    main()
