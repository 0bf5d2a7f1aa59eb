"""Two checkouts of npcnn side by side: did a change make training (or prediction) faster?

    git archive HEAD~1 | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    python benchmarks/compare_trees.py /tmp/before . --arch lenet-plus --threads 2 --rounds 5
    python benchmarks/compare_trees.py . . --backend numpy --second-backend numba   # backends

Each checkout runs in a worker process of its own (its ``npcnn`` first on ``sys.path``, its own
Numba cache), and the workers take turns, block by block, exactly as in ``compare_torch.py``:
drift of a shared machine hits both alike.  Prints the medians of training images/s, one-image
prediction ms and 1,000-image prediction images/s, and the ratio second / first (above 1: the
second checkout is faster).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import add_alternation_options, median

TASKS = ("train", "infer1", "infer1000")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("trees", nargs=2, help="two checkouts of the repository: before, after")
    add_alternation_options(p, "checkout")
    p.add_argument(
        "--second-backend", choices=["numpy", "numba"], help="the second's (default: --backend)"
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)  # the checkout this worker imports
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        sys.path.insert(0, args.worker)  # this checkout's npcnn, not the one installed
        import compare_torch

        args.worker = "npcnn"
        return compare_torch.worker(args)
    import compare_torch

    roots = [str(Path(tree).resolve()) for tree in args.trees]
    backends = [args.backend, args.second_backend or args.backend]
    worker_argv = [
        *roots,
        f"--arch={args.arch}",
        f"--threads={args.threads}",
        f"--batch-size={args.batch_size}",
        *(["--malloc-default"] if args.malloc_default else []),
    ]
    workers = []
    for root, backend in zip(roots, backends, strict=True):
        process = subprocess.Popen(
            [sys.executable, __file__, *worker_argv, f"--backend={backend}", "--worker", root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the worker for {root} failed to start")
        workers.append(process)
    counts = {"train": args.batches, "infer1": args.singles, "infer1000": args.bulks}
    tasks = ["train"] if args.skip_infer else list(TASKS)
    timings = {task: [[], []] for task in tasks}
    try:
        for task in tasks:
            for _ in range(args.rounds):
                for k, process in enumerate(workers):
                    timings[task][k] += compare_torch.ask(process, task, counts[task])
    finally:
        for process in workers:
            process.stdin.close()
            process.wait()
    per_call = {
        "train": lambda s: args.batch_size / s,
        "infer1": lambda s: s * 1e3,
        "infer1000": lambda s: 1000 / s,
    }
    result: dict[str, object] = {"arch": args.arch, "backends": backends, "trees": roots}
    for task in tasks:
        first, second = (per_call[task](median(t)) for t in timings[task])
        faster = first / second if task == "infer1" else second / first
        result[task] = {"first": first, "second": second, "second_speedup": faster}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.arch}, {args.threads} thread(s), {args.rounds} alternating rounds")
    for label, root, backend in zip(("first:", "second:"), roots, backends, strict=True):
        print(f"  {label:<8}{root} ({backend})")
    labels = {"train": "training img/s", "infer1": "1-image ms", "infer1000": "1000-image img/s"}
    print(f"{'':<18} {'first':>10} {'second':>10} {'second speed / first':>22}")
    for task in tasks:
        row = result[task]
        print(
            f"{labels[task]:<18} {row['first']:>10,.2f} {row['second']:>10,.2f} "
            f"{row['second_speedup']:>21.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
