"""Shared helpers of the benchmarks: FLOP counting, timing, memory, command-line plumbing.

What we count as a FLOP (the usual convention of CNN papers and of PyTorch's profilers):
one multiply-add is 2 FLOPs, and only the matrix products are counted::

    Conv2D forward  2 * N * OH * OW * F * C * k * k
    Dense forward   2 * N * in * out
    training        3 x forward for each of these (forward, weight gradient, input gradient)

Bias additions, activations, pooling, BatchNorm, the loss and the optimiser step are not counted
(they are memory-bound, not arithmetic-bound).  Both npcnn and PyTorch skip the input gradient of
the first layer, so "3 x forward" slightly over-counts the work either does; the figure is meant
to compare with the GEMM speed of the machine, not to be exact to the last percent.

Timing: a few warm-up calls (JIT compilation, buffer allocation, caches), then every call is
timed on its own with ``time.perf_counter`` and we report the median, which ignores the odd call
slowed by another process.  Peak memory is the maximum resident set size of this process so far
(``resource.getrusage``), which includes the Python interpreter and the libraries (~100 MB).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

ARCHES = ("keras-small", "lenet-plus", "shipped", "wide")  # wide: the shipped model since v3


def forward_flops(model: Any, batch: int) -> int:
    """Forward-pass FLOPs of an npcnn ``Sequential`` for ``batch`` images (see module docstring)."""
    from npcnn.layers import Conv2D, Dense

    total = 0
    for layer, out_shape in zip(model.layers, model.output_shapes, strict=True):
        if isinstance(layer, Conv2D):
            f, oh, ow = out_shape
            k = layer.kernel_size
            total += 2 * batch * oh * ow * f * layer.in_channels * k * k
        elif isinstance(layer, Dense):
            total += 2 * batch * layer.in_features * layer.out_features
    return total


def training_flops(model: Any, batch: int) -> int:
    """FLOPs of one training step: 3 x the forward pass (see module docstring)."""
    return 3 * forward_flops(model, batch)


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    """Seconds taken by each of ``repeats`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return timings


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mib() -> float:
    """The most memory this process has held so far (resident set size), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def random_batch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 28x28 float32 images in [0, 1] and random labels (speed needs no real data)."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def use_cold_numba_cache() -> str:
    """Point Numba's on-disk cache at a fresh folder, so the next import compiles from scratch."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="npcnn-numba-cache-")
    os.environ["NUMBA_CACHE_DIR"] = folder
    return folder


def import_npcnn(backend: str, threads: int | None) -> tuple[Any, float]:
    """Import npcnn with ``backend``, set the thread count; returns (module, import seconds)."""
    os.environ["NPCNN_BACKEND"] = backend
    started = time.perf_counter()
    import npcnn

    seconds = time.perf_counter() - started
    npcnn.set_backend(backend)
    npcnn.set_threads(threads)
    return npcnn, seconds


def add_alternation_options(parser: Any, contenders: str) -> None:
    """The options of a benchmark that times two ``contenders`` (e.g. "checkout", "framework")
    in alternating blocks: the model, backend, threads and batch, how many blocks and timed
    calls per block, and the output (plus ``--malloc-default``, ``add_memory_option``)."""
    parser.add_argument("--arch", default="keras-small", choices=ARCHES)
    parser.add_argument("--backend", default="numba", choices=["numpy", "numba"])
    parser.add_argument("--threads", type=int, default=2, help="maths threads for both")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--rounds", type=int, default=5, help=f"alternating blocks per {contenders}"
    )
    parser.add_argument("--batches", type=int, default=8, help="timed training steps per block")
    parser.add_argument(
        "--singles", type=int, default=100, help="timed 1-image predictions per block"
    )
    parser.add_argument(
        "--bulks", type=int, default=2, help="timed 1,000-image predictions per block"
    )
    parser.add_argument("--skip-infer", action="store_true", help="training only")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_memory_option(parser)


def add_memory_option(parser: Any) -> None:
    """``--malloc-default``: measure training without the memory setting ``fit`` makes."""
    parser.add_argument(
        "--malloc-default",
        action="store_true",
        help="leave glibc's malloc as it is (Sequential.fit keeps freed memory for reuse)",
    )


def memory_as_in_fit(npcnn: Any, args: Any) -> bool:
    """Set glibc's ``malloc`` as ``Sequential.fit`` does before it trains
    (``npcnn.settings.keep_freed_memory_for_reuse``), unless ``args.malloc_default``.

    Every training run has that setting, and the benchmarks time ``train_step`` directly, without
    ``fit``: without it, glibc hands the big arrays of each step back to the kernel and the next
    step faults them in again, zero-filled (measured: a NumPy Winograd forward pass 39 ms instead
    of 18 ms).  Returns whether the setting is in force.
    """
    if getattr(args, "malloc_default", False):
        return False
    return npcnn.settings.keep_freed_memory_for_reuse()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def report(result: dict[str, Any], as_json: bool, order: list[str] | None = None) -> None:
    """Print ``result`` as JSON or as an aligned two-column table."""
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=False))
        return
    keys = order or list(result)
    width = max(len(k) for k in keys)
    for key in keys:
        value = result[key]
        if isinstance(value, float):
            value = f"{value:,.3f}" if value < 100 else f"{value:,.0f}"
        print(f"{key:<{width}}  {value}")
