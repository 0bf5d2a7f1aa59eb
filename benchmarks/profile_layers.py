"""Where does a training step spend its time?  Per layer (forward, backward) and per kernel.

    python benchmarks/profile_layers.py --arch keras-small --backend numba [--threads 1]

Part 1 times every layer's ``forward(training=True)`` and ``backward`` inside real training steps
(the first layer skips its input gradient, as ``train_step`` does), plus the loss and the Adam step.
Part 2 times each kernel on its own with the shapes it sees in this model: im2col, the three GEMMs
of every convolution (with their GFLOP/s), col2im, pooling, ReLU, BatchNorm, Adam.  Medians of
``--repeats`` runs after a warm-up.  Use it to pick the next optimisation by measurement.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from common import (
    ARCHES,
    add_memory_option,
    import_npcnn,
    median,
    memory_as_in_fit,
    random_batch,
    time_calls,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", default="keras-small", choices=ARCHES)
    p.add_argument("--backend", default="numba", choices=["numpy", "numba"])
    p.add_argument("--threads", type=int, default=0, help="maths threads (0 = every core)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=15)
    add_memory_option(p)
    return p.parse_args()


def profile_layers(npcnn, model, x, y, repeats: int) -> None:
    """Part 1: milliseconds per layer, forward and backward, inside real training steps."""
    from npcnn.layers import Conv2D, Dense

    optimizer = npcnn.Adam(1e-3)
    loss_fn = npcnn.SoftmaxCrossEntropy()
    for _ in range(3):
        model.train_step(x, y, optimizer, loss_fn)
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        step_started = time.perf_counter()
        out = x
        order = model.execution_order()  # a ReLU before a MaxPool2D runs after it
        for i in order:
            started = time.perf_counter()
            out = model.layers[i].forward(out, training=True)
            times[f"f{i}"].append(time.perf_counter() - started)
        started = time.perf_counter()
        loss_fn.forward(out, y)
        grad = loss_fn.backward()
        times["loss"].append(time.perf_counter() - started)
        for i in reversed(order):
            layer = model.layers[i]
            started = time.perf_counter()
            if i == order[0] and isinstance(layer, (Conv2D, Dense)):
                layer.backward(grad, input_grad=False)
            else:
                grad = layer.backward(grad)
            times[f"b{i}"].append(time.perf_counter() - started)
        started = time.perf_counter()
        params = [p for _, p, _ in model.parameters()]
        optimizer.step(params, [g for _, _, g in model.parameters()])
        times["adam"].append(time.perf_counter() - started)
        times["step"].append(time.perf_counter() - step_started)
    total = median(times["step"]) * 1e3
    print(f"\n== per layer (ms, median of {repeats}; one step = {total:.2f} ms) ==")
    print(f"{'layer':<16} {'output shape':<18} {'forward':>8} {'backward':>9} {'share':>6}")
    for i, (layer, shape) in enumerate(zip(model.layers, model.output_shapes, strict=True)):
        f, b = median(times[f"f{i}"]) * 1e3, median(times[f"b{i}"]) * 1e3
        print(f"{layer.name:<16} {str(shape):<18} {f:8.2f} {b:9.2f} {100 * (f + b) / total:5.1f}%")
    for name in ("loss", "adam"):
        t = median(times[name]) * 1e3
        print(f"{name:<16} {'':<18} {t:8.2f} {'':>9} {100 * t / total:5.1f}%")


def conv_path(layer, n: int) -> str:
    """Which algorithm the active backend uses for this convolution on ``n`` images."""
    from npcnn.kernels import winograd

    c, f, k = layer.in_channels, layer.out_channels, layer.kernel_size
    if winograd.use_winograd(n, c, f, k, layer.stride):
        return f"Winograd F({winograd.WINOGRAD_TILE}x{winograd.WINOGRAD_TILE}, 3x3)"
    return "im2col + GEMM"


def kernel_timings(layer, x_in: np.ndarray, timed) -> None:
    """Time the kernels of one layer on its real input ``x_in`` (calls ``timed(name, fn)``)."""
    from npcnn import kernels
    from npcnn.layers import BatchNorm, Conv2D, MaxPool2D, ReLU, channels_last

    tag = layer.name
    if isinstance(layer, Conv2D):
        xl = channels_last(x_in)
        k, s, p, f = layer.kernel_size, layer.stride, layer.pad, layer.out_channels
        cols = kernels.im2col(xl, k, k, s, p)  # the whole batch at once, for the kernel timings
        cols_ext = np.ones((len(cols), cols.shape[1] + 1), dtype=cols.dtype)  # + bias column
        w_ext = layer._extended_weights()
        w_mat = w_ext[:, :-1]
        g = np.random.default_rng(0).standard_normal((cols.shape[0], f)).astype(cols.dtype)
        gemm = 2.0 * cols.shape[0] * cols.shape[1] * f
        timed(f"{tag} im2col {cols.shape}", lambda: kernels.im2col(xl, k, k, s, p, out=cols_ext))
        timed(f"{tag} GEMM forward (+ bias)", lambda: cols_ext @ w_ext.T, gemm)
        timed(f"{tag} GEMM dW (+ db)", lambda: g.T @ cols_ext, gemm)
        timed(f"{tag} GEMM dcols", lambda: g @ w_mat, gemm)
        timed(f"{tag} col2im", lambda: kernels.col2im(cols, xl.shape, k, k, s, p))
        path = conv_path(layer, len(x_in))
        timed(f"{tag} forward: {path}", lambda: layer.forward(x_in, training=True), gemm)
        y = layer.forward(x_in, training=True)
        timed(f"{tag} backward: {path}", lambda: layer.backward(y), 2 * gemm)
    elif isinstance(layer, MaxPool2D):
        xl = channels_last(x_in)
        size, stride = layer.size, layer.stride
        pooled, arg = kernels.maxpool_forward(xl, size, stride)
        gp = np.ones_like(pooled)
        timed(f"{tag} forward", lambda: kernels.maxpool_forward(xl, size, stride))
        timed(f"{tag} backward", lambda: kernels.maxpool_backward(gp, arg, xl.shape, size, stride))
    elif isinstance(layer, ReLU):
        y = kernels.relu_forward(x_in)
        timed(f"{tag} forward", lambda: kernels.relu_forward(x_in))
        timed(f"{tag} backward", lambda: kernels.relu_backward(y, y))
    elif isinstance(layer, BatchNorm):
        table = layer._as_table(x_in)
        mean, var = kernels.column_mean_var(table)
        inv = 1 / np.sqrt(var + 1e-5)
        gamma, beta = layer.params["gamma"], layer.params["beta"]
        timed(f"{tag} mean/var", lambda: kernels.column_mean_var(table))
        timed(f"{tag} normalise", lambda: kernels.batchnorm_forward(table, mean, inv, gamma, beta))
        timed(
            f"{tag} backward",
            lambda: kernels.batchnorm_backward(table, table, mean, inv, gamma, True),
        )


def profile_kernels(npcnn, model, x, repeats: int) -> None:
    """Part 2: each kernel on its own, with this model's shapes."""
    rows = []

    def timed(name: str, fn, flops: float = 0.0) -> None:
        ms = median(time_calls(fn, repeats, warmup=2)) * 1e3
        rows.append((name, ms, flops / ms / 1e6 if flops else None))

    out = x
    for i in model.execution_order():
        kernel_timings(model.layers[i], out, timed)
        out = model.layers[i].forward(out, training=True)
    params = [p.copy() for _, p, _ in model.parameters()]
    grads = [np.ones_like(p) for p in params]
    optimizer = npcnn.Adam(1e-3)
    timed("adam step (all parameters)", lambda: optimizer.step(params, grads))
    print(f"\n== per kernel (ms, median of {repeats}) ==")
    for name, ms, gflops in rows:
        extra = f"{gflops:7.1f} GFLOP/s" if gflops else ""
        print(f"{name:<44} {ms:8.3f}  {extra}")


def main() -> None:
    args = parse_args()
    npcnn, _ = import_npcnn(args.backend, args.threads or None)
    kept = memory_as_in_fit(npcnn, args)
    from npcnn.digits import architectures

    model = architectures.build(args.arch, seed=0)
    x, y = random_batch(args.batch_size)
    print(
        f"{args.arch}, backend {npcnn.get_backend()}, threads {args.threads or 'all'}, "
        f"batch {args.batch_size}, malloc as in fit: {kept}"
    )
    profile_layers(npcnn, model, x, y, args.repeats)
    profile_kernels(npcnn, model, x, args.repeats)


if __name__ == "__main__":
    main()
