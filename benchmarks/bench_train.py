"""Training throughput: forward + backward + Adam step on batches of 128 float32 images.

    python benchmarks/bench_train.py --arch keras-small --backend numba [--threads 2] [--json]

Prints ``train_img_per_s`` (batch size / median seconds per step over ``--batches`` timed steps
after ``--warmup`` untimed ones), the effective GFLOP/s (see ``benchmarks/common.py`` for what is
counted), the time of the very first step (which includes Numba's JIT compilation or its loading
from the on-disk cache; ``--cold-cache`` forces a fresh compile) and the peak resident memory.
"""

from __future__ import annotations

import argparse
import time

from common import (
    ARCHES,
    add_memory_option,
    import_npcnn,
    machine,
    median,
    memory_as_in_fit,
    peak_rss_mib,
    random_batch,
    report,
    time_calls,
    training_flops,
    use_cold_numba_cache,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", default="keras-small", choices=ARCHES)
    p.add_argument("--backend", default="numba", choices=["numpy", "numba"])
    p.add_argument("--threads", type=int, default=0, help="maths threads (0 = every core)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=30, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--cold-cache", action="store_true", help="compile Numba kernels from scratch")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_memory_option(p)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.cold_cache:
        use_cold_numba_cache()
    npcnn, import_s = import_npcnn(args.backend, args.threads or None)
    kept = memory_as_in_fit(npcnn, args)
    from npcnn.digits import architectures

    model = architectures.build(args.arch, seed=0)
    optimizer = npcnn.Adam(1e-3)
    x, y = random_batch(args.batch_size)

    def step() -> None:
        model.train_step(x, y, optimizer)

    started = time.perf_counter()
    step()  # JIT compilation (or loading it from the cache), first allocations
    first_step_s = time.perf_counter() - started
    timings = time_calls(step, args.batches, warmup=args.warmup)
    seconds = median(timings)
    result = {
        "arch": args.arch,
        "backend": npcnn.get_backend(),
        "threads": args.threads or machine()["cpu_count"],
        "batch_size": args.batch_size,
        "train_img_per_s": args.batch_size / seconds,
        "train_ms_per_batch": seconds * 1e3,
        "train_gflop_per_s": training_flops(model, args.batch_size) / seconds / 1e9,
        "gflop_per_batch": training_flops(model, args.batch_size) / 1e9,
        "import_s": import_s,
        "first_step_s": first_step_s,
        "peak_rss_mib": peak_rss_mib(),
        "malloc_as_in_fit": kept,
        "machine": machine(),
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
