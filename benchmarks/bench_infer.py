"""Inference speed: one image (the app's case) and 1,000 images at once (an evaluation).

    python benchmarks/bench_infer.py --arch shipped --backend numba [--threads 2] [--json]

``infer1_ms`` is the median time of ``model.predict(x)`` for one (1, 1, 28, 28) image;
``infer1000_img_per_s`` is 1,000 / the median time of ``model.predict(x)`` for 1,000 images
(``predict`` splits them into its default batches).  Both include the softmax.
"""

from __future__ import annotations

import argparse

from common import (
    ARCHES,
    forward_flops,
    import_npcnn,
    machine,
    median,
    peak_rss_mib,
    random_batch,
    report,
    time_calls,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", default="shipped", choices=ARCHES)
    p.add_argument("--backend", default="numba", choices=["numpy", "numba"])
    p.add_argument("--threads", type=int, default=0, help="maths threads (0 = every core)")
    p.add_argument("--single", type=int, default=200, help="timed one-image predictions")
    p.add_argument("--bulk", type=int, default=10, help="timed 1,000-image predictions")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    npcnn, import_s = import_npcnn(args.backend, args.threads or None)
    from npcnn.digits import architectures

    model = architectures.build(args.arch, seed=0)
    x, _ = random_batch(1000)
    one = x[:1]
    single = median(time_calls(lambda: model.predict(one), args.single, warmup=10))
    bulk = median(time_calls(lambda: model.predict(x), args.bulk, warmup=2))
    result = {
        "arch": args.arch,
        "backend": npcnn.get_backend(),
        "threads": args.threads or machine()["cpu_count"],
        "infer1_ms": single * 1e3,
        "infer1000_img_per_s": len(x) / bulk,
        "infer1000_gflop_per_s": forward_flops(model, len(x)) / bulk / 1e9,
        "import_s": import_s,
        "peak_rss_mib": peak_rss_mib(),
        "machine": machine(),
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
