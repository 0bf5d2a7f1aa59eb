"""When does Winograd F(2x2, 3x3) beat im2col + GEMM?  The data behind ``use_winograd``
(``npcnn/kernels/numba/winograd.py``).

    python benchmarks/winograd_crossover.py [--threads 2] [--repeats 21]

Times the Numba backend's two ways of computing a 3x3, stride-1 convolution, forward and
backward, for the convolution shapes of the reference models (lenet-plus: 28x28 32->32,
14x14 32->64 and 64->64; shipped: 12x12 32->64 and 10x10 64->64; and narrower ones) and for
batches from 1 to 128 images.  Prints the time ratio Winograd / im2col (below 1: Winograd is
faster), medians of ``--repeats`` calls measured side by side.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import import_npcnn, median, time_calls

# (input size, in channels, out channels, padding)
SHAPES = [
    (28, 32, 32, 1),
    (14, 32, 64, 1),
    (14, 64, 64, 1),
    (12, 32, 64, 0),
    (10, 64, 64, 0),
    (28, 16, 16, 1),
    (28, 8, 8, 1),
]
BATCHES = (1, 4, 16, 32, 128)


def winograd_over_im2col(
    x: np.ndarray, w_ext: np.ndarray, grad_y: np.ndarray, pad: int, repeats: int
) -> tuple[float, float]:
    """Median time of Winograd over im2col + GEMM: (forward, backward)."""
    from npcnn.kernels.numba import conv, winograd

    calls = {
        "im2col forward": lambda: conv.im2col_conv2d_forward(x, w_ext, 3, 1, pad),
        "winograd forward": lambda: winograd.winograd_conv2d_forward(x, w_ext, pad),
        "im2col backward": lambda: conv.im2col_conv2d_backward(x, grad_y, w_ext, 3, 1, pad),
        "winograd backward": lambda: winograd.winograd_conv2d_backward(x, grad_y, w_ext, pad),
    }
    times = {name: median(time_calls(call, repeats)) for name, call in calls.items()}
    return tuple(
        times[f"winograd {step}"] / times[f"im2col {step}"] for step in ("forward", "backward")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="maths threads (0 = every core)")
    parser.add_argument("--repeats", type=int, default=21, help="timed calls per measurement")
    args = parser.parse_args()
    import_npcnn("numba", args.threads or None)

    rng = np.random.default_rng(0)
    print(
        f"Winograd / im2col time, numba backend, {args.threads} thread(s); below 1 = Winograd wins"
    )
    print(f"{'size':>4} {'C':>3} {'F':>3} {'pad':>3} {'images':>6} {'forward':>8} {'backward':>8}")
    for size, c, f, pad in SHAPES:
        for n in BATCHES:
            x = rng.standard_normal((n, size, size, c)).astype(np.float32)
            w_ext = (0.1 * rng.standard_normal((f, 9 * c + 1))).astype(np.float32)
            out = size + 2 * pad - 2
            grad_y = rng.standard_normal((n, out, out, f)).astype(np.float32)
            ratios = winograd_over_im2col(x, w_ext, grad_y, pad, args.repeats)
            print(f"{size:>4} {c:>3} {f:>3} {pad:>3} {n:>6} {ratios[0]:>8.2f} {ratios[1]:>8.2f}")


if __name__ == "__main__":
    main()
