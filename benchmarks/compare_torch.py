"""npcnn against PyTorch on the same CPU, the same threads, the same model, in one run.

    /work/torchvenv/bin/python benchmarks/compare_torch.py --arch keras-small --threads 2

PyTorch is never a dependency of npcnn: run this with a Python that has both (see
``benchmarks/README.md`` for the separate venv).  Without PyTorch it says so and exits 0.

What is compared (float32, batch 128, random images, Adam, ``--threads`` maths threads each):

- training: forward + cross-entropy + backward + Adam step, ``train_img_per_s``;
- one-image prediction latency (softmax included), ``infer1_ms``;
- 1,000-image prediction, ``infer1000_img_per_s`` (npcnn's ``predict(x)``, PyTorch in one batch).

Each framework runs in a worker process of its own, with its own default settings (both use
OpenMP, and one process can hold only one OpenMP runtime, which npcnn sets to sleep rather than spin
when idle).  The workers take turns, block by block (npcnn, PyTorch, npcnn, ...), so that drift of
the machine (other processes, clock speed) hits both alike; each figure is the median over every
timed call of all its blocks.  The PyTorch model is built from the npcnn one, layer by layer, with
the same weights, and its logits must match npcnn's before anything is timed.  Ratios are
npcnn speed / PyTorch speed: above 1 means npcnn is faster.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from common import add_alternation_options, machine, median, memory_as_in_fit, random_batch

TASKS = ("train", "infer1", "infer1000")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_alternation_options(p, "framework")
    p.add_argument("--worker", choices=["npcnn", "torch"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- the PyTorch model
def torch_twin(model, torch):
    """The same architecture in PyTorch, with a copy of the npcnn weights."""
    from npcnn import layers as L

    nn = torch.nn
    modules = []
    shape = model.input_shape
    for layer, out_shape in zip(model.layers, model.output_shapes, strict=True):
        if isinstance(layer, L.Conv2D):
            m = nn.Conv2d(
                layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.pad
            )
            m.weight.data = torch.from_numpy(layer.params["W"].copy())
            m.bias.data = torch.from_numpy(layer.params["b"].copy())
        elif isinstance(layer, L.Dense):
            m = nn.Linear(layer.in_features, layer.out_features)
            m.weight.data = torch.from_numpy(np.ascontiguousarray(layer.params["W"].T))
            m.bias.data = torch.from_numpy(layer.params["b"].copy())
        elif isinstance(layer, L.BatchNorm):
            kind = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            m = kind(layer.num_features, eps=layer.eps, momentum=1 - layer.momentum)
            m.weight.data = torch.from_numpy(layer.params["gamma"].copy())
            m.bias.data = torch.from_numpy(layer.params["beta"].copy())
            m.running_mean.data = torch.from_numpy(layer.buffers["running_mean"].copy())
            m.running_var.data = torch.from_numpy(layer.buffers["running_var"].copy())
        elif isinstance(layer, L.MaxPool2D):
            m = nn.MaxPool2d(layer.size, layer.stride)
        elif isinstance(layer, L.ReLU):
            m = nn.ReLU()
        elif isinstance(layer, L.Flatten):
            m = nn.Flatten()
        elif isinstance(layer, L.Dropout):
            m = nn.Dropout(layer.rate)
        else:
            raise TypeError(f"no PyTorch twin for {layer!r}")
        modules.append(m)
        shape = out_shape
    return nn.Sequential(*modules)


# ----------------------------------------------------------------------------- the workers
def npcnn_tasks(args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    """The three timed calls, npcnn's way."""
    os.environ["NPCNN_BACKEND"] = args.backend
    import npcnn
    from npcnn.digits import architectures

    npcnn.set_threads(args.threads)
    memory_as_in_fit(npcnn, args)  # as Sequential.fit does before training
    model = architectures.build(args.arch, seed=0)
    optimizer = npcnn.Adam(1e-3)
    x, y = random_batch(args.batch_size)
    x1000, _ = random_batch(1000, seed=1)
    one = x1000[:1].copy()
    return {
        "train": lambda: model.train_step(x, y, optimizer),
        "infer1": lambda: model.predict(one),
        "infer1000": lambda: model.predict(x1000),
    }


def torch_tasks(args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    """The same three calls in PyTorch, after checking that the twin computes the same logits."""
    import torch

    torch.set_num_threads(args.threads)
    os.environ["NPCNN_BACKEND"] = "numpy"  # npcnn only supplies the architecture and weights
    from npcnn.digits import architectures

    model = architectures.build(args.arch, seed=0)
    twin = torch_twin(model, torch)
    x, y = random_batch(args.batch_size)
    x1000, _ = random_batch(1000, seed=1)
    twin.eval()
    with torch.inference_mode():
        logits = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), logits, rtol=1e-3, atol=1e-3)
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    t1, t1000 = torch.from_numpy(x1000[:1].copy()), torch.from_numpy(x1000)

    def train() -> None:
        twin.train()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(twin(tx), ty).backward()
        optimizer.step()

    def predict(batch):
        twin.eval()
        with torch.inference_mode():
            return torch.softmax(twin(batch), dim=1).numpy()

    return {"train": train, "infer1": lambda: predict(t1), "infer1000": lambda: predict(t1000)}


def worker(args: argparse.Namespace) -> int:
    """Serve blocks of timed calls: read ``task count`` lines, answer a JSON list of seconds."""
    tasks = npcnn_tasks(args) if args.worker == "npcnn" else torch_tasks(args)
    for fn in tasks.values():  # warm-up: JIT, allocations, caches
        for _ in range(3):
            fn()
    print("ready", flush=True)
    for line in sys.stdin:
        task, count = line.split()
        fn = tasks[task]
        fn()  # the first call after the other worker's turn wakes this one's threads
        seconds = []
        for _ in range(int(count)):
            started = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - started)
        print(json.dumps(seconds), flush=True)
    return 0


# ----------------------------------------------------------------------------- the conductor
def start_worker(name: str, argv: list[str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, __file__, *argv, "--worker", name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the {name} worker failed to start")
    return process


def ask(process: subprocess.Popen, task: str, count: int) -> list[float]:
    process.stdin.write(f"{task} {count}\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if importlib.util.find_spec("torch") is None:
        print("PyTorch is not importable here: nothing to compare (see benchmarks/README.md).")
        return 0
    import torch

    worker_argv = [
        f"--arch={args.arch}",
        f"--backend={args.backend}",
        f"--threads={args.threads}",
        f"--batch-size={args.batch_size}",
        *(["--malloc-default"] if args.malloc_default else []),
    ]
    workers = {name: start_worker(name, worker_argv) for name in ("npcnn", "torch")}
    counts = {"train": args.batches, "infer1": args.singles, "infer1000": args.bulks}
    tasks = ["train"] if args.skip_infer else list(TASKS)
    timings = {task: {name: [] for name in workers} for task in tasks}
    try:
        for task in tasks:
            for _ in range(args.rounds):
                for name, process in workers.items():
                    timings[task][name] += ask(process, task, counts[task])
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait()

    def speeds(task: str, per_call: Callable[[float], float]) -> tuple[float, float]:
        return per_call(median(timings[task]["npcnn"])), per_call(median(timings[task]["torch"]))

    result: dict[str, object] = {
        "arch": args.arch,
        "backend": args.backend,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "malloc_as_in_fit": not args.malloc_default,
        "torch": torch.__version__,
    }
    ours, theirs = speeds("train", lambda s: args.batch_size / s)
    result.update(train_img_per_s_npcnn=ours, train_img_per_s_torch=theirs)
    result["train_ratio"] = ours / theirs
    if "infer1" in timings:
        ours, theirs = speeds("infer1", lambda s: s * 1e3)
        result.update(infer1_ms_npcnn=ours, infer1_ms_torch=theirs, infer1_ratio=theirs / ours)
        ours, theirs = speeds("infer1000", lambda s: 1000 / s)
        result.update(infer1000_img_per_s_npcnn=ours, infer1000_img_per_s_torch=theirs)
        result["infer1000_ratio"] = ours / theirs
    result["machine"] = machine()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{args.arch}: npcnn ({args.backend}) vs PyTorch {torch.__version__}, "
        f"{args.threads} thread(s), batch {args.batch_size}, {args.rounds} alternating rounds"
        + ("" if args.malloc_default else ", npcnn's malloc as in fit")
    )
    rows = [
        ("training img/s", "train_img_per_s", "train_ratio"),
        ("1-image predict ms", "infer1_ms", "infer1_ratio"),
        ("1000-image predict img/s", "infer1000_img_per_s", "infer1000_ratio"),
    ]
    print(f"{'':<26} {'npcnn':>10} {'PyTorch':>10} {'npcnn speed / PyTorch':>22}")
    for label, key, ratio in rows:
        if ratio in result:
            a, b = result[f"{key}_npcnn"], result[f"{key}_torch"]
            print(f"{label:<26} {a:>10,.2f} {b:>10,.2f} {result[ratio]:>21.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
