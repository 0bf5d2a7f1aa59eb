"""How close does training come to what this CPU can do?  A roofline-style table.

    python benchmarks/roofline.py [--threads 2] [--arch keras-small lenet-plus shipped]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/roofline.py   # OpenBLAS's choice

The ceiling is the machine's measured single-precision matrix product (SGEMM) speed: NumPy's
``float32`` ``a @ b`` of two 4096 x 4096 matrices with ``--threads`` BLAS threads, the best a
dense, compute-bound kernel reaches here (the median of several calls).  Against it, each
network's effective training speed: the FLOPs of a training step counted as im2col + GEMM would do
them (``benchmarks/common.py``: 3 x the forward multiply-adds) over the median step time.
Winograd's convolutions do fewer multiplications than that count, so a network can reach more than
100% of the ceiling; the figure says how fast training is in units of the machine's GEMM, not how
busy the floating-point units are.

The OpenBLAS variables of the environment (``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``) change
the ceiling (and npcnn's NumPy backend), not the Numba kernels' own loops; the table prints them.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from common import (
    ARCHES,
    add_memory_option,
    import_npcnn,
    median,
    memory_as_in_fit,
    random_batch,
    time_calls,
    training_flops,
)


def sgemm_gflops(threads: int, size: int = 4096, repeats: int = 7) -> float:
    """Median GFLOP/s of NumPy's float32 ``a @ b`` (``size`` x ``size``) on ``threads`` threads."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    with threadpool_limits(threads, user_api="blas"):
        seconds = median(time_calls(lambda: np.matmul(a, b, out=out), repeats, warmup=2))
    return 2 * size**3 / seconds / 1e9


def training_gflops(npcnn, arch: str, batch: int, steps: int) -> tuple[float, float]:
    """(milliseconds per training step, effective GFLOP/s) of ``arch``."""
    from npcnn.digits import architectures

    model = architectures.build(arch, seed=0)
    optimizer = npcnn.Adam(1e-3)
    x, y = random_batch(batch)
    seconds = median(time_calls(lambda: model.train_step(x, y, optimizer), steps, warmup=3))
    return seconds * 1e3, training_flops(model, batch) / seconds / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", nargs="+", default=["keras-small", "lenet-plus"], choices=ARCHES)
    p.add_argument("--backend", nargs="+", default=["numba"], choices=["numba", "numpy"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed training steps per network")
    add_memory_option(p)
    args = p.parse_args()
    npcnn, _ = import_npcnn(args.backend[0], args.threads)
    memory_as_in_fit(npcnn, args)
    environment = {
        k: os.environ.get(k, "(unset)") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    print(
        f"threads {args.threads}, batch {args.batch_size}; "
        + ", ".join(f"{k}={v}" for k, v in environment.items())
    )
    peak = sgemm_gflops(args.threads)
    print(
        f"SGEMM ceiling (NumPy float32 4096x4096 matmul, {args.threads} threads): {peak:.0f} GFLOP/s"
    )
    print(
        f"{'network':<12} {'backend':<7} {'GFLOP/step':>10} {'ms/step':>8} {'GFLOP/s':>8} {'of SGEMM':>9}"
    )
    for backend in args.backend:
        npcnn.set_backend(backend)
        for arch in args.arch:
            from npcnn.digits import architectures

            gflop = training_flops(architectures.build(arch), args.batch_size) / 1e9
            ms, rate = training_gflops(npcnn, arch, args.batch_size, args.steps)
            print(
                f"{arch:<12} {backend:<7} {gflop:>10.2f} {ms:>8.1f} {rate:>8.0f} {rate / peak:>8.0%}"
            )


if __name__ == "__main__":
    main()
