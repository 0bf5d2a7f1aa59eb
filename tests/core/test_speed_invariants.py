"""What the speed work must never change: results (against a from-the-definitions forward pass),
dtypes (float32 end to end), memory layouts (channels last between layers), and that chunking the
batch or skipping the first layer's input gradient changes nothing but the speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import npcnn
from npcnn import kernels
from npcnn.digits import architectures
from npcnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "mnist_cnn.npz"


def reference_forward(model: npcnn.Sequential, x: np.ndarray) -> np.ndarray:
    """Eval-mode logits computed straight from each layer's definition, in float64, NCHW."""
    out = x.astype(np.float64)
    for layer in model.layers:
        p = {k: v.astype(np.float64) for k, v in {**layer.params, **layer.buffers}.items()}
        if isinstance(layer, Conv2D):
            k, s, pad = layer.kernel_size, layer.stride, layer.pad
            xp = np.pad(out, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            oh = (xp.shape[2] - k) // s + 1
            ow = (xp.shape[3] - k) // s + 1
            y = np.zeros((len(out), layer.out_channels, oh, ow))
            for i in range(k):  # y[n,f,a,b] = b[f] + sum_{c,i,j} W[f,c,i,j] x[n,c,a*s+i,b*s+j]
                for j in range(k):
                    window = xp[:, :, i : i + s * oh : s, j : j + s * ow : s]
                    y += np.einsum("ncab,fc->nfab", window, p["W"][:, :, i, j])
            out = y + p["b"][None, :, None, None]
        elif isinstance(layer, MaxPool2D):
            size, s = layer.size, layer.stride
            oh = (out.shape[2] - size) // s + 1
            ow = (out.shape[3] - size) // s + 1
            windows = [
                out[:, :, i : i + s * oh : s, j : j + s * ow : s]
                for i in range(size)
                for j in range(size)
            ]
            out = np.max(windows, axis=0)
        elif isinstance(layer, BatchNorm):
            shape = (1, -1, 1, 1) if out.ndim == 4 else (1, -1)
            scale = p["gamma"] / np.sqrt(p["running_var"] + layer.eps)
            out = (out - p["running_mean"].reshape(shape)) * scale.reshape(shape)
            out = out + p["beta"].reshape(shape)
        elif isinstance(layer, Dense):
            out = out @ p["W"] + p["b"]
        elif isinstance(layer, ReLU):
            out = np.maximum(out, 0)
        elif isinstance(layer, Flatten):
            out = out.reshape(len(out), -1)
        elif not isinstance(layer, Dropout):
            raise TypeError(layer)
    return out


def with_random_statistics(model: npcnn.Sequential, seed: int = 0) -> npcnn.Sequential:
    """Give every BatchNorm non-trivial parameters and running statistics."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            c = layer.num_features
            layer.params["gamma"][:] = rng.uniform(0.5, 1.5, c)
            layer.params["beta"][:] = rng.normal(0, 0.2, c)
            layer.buffers["running_mean"][:] = rng.normal(0, 0.3, c)
            layer.buffers["running_var"][:] = rng.uniform(0.5, 2.0, c)
    return model


@pytest.mark.parametrize("arch", ["keras-small", "lenet-plus", "shipped"])
def test_predict_equals_the_definitions(backend, arch):
    model = with_random_statistics(architectures.build(arch, seed=1))
    x = np.random.default_rng(2).random((3, 1, 28, 28), dtype=np.float32)
    logits = model.predict_logits(x)
    expected = reference_forward(model, x)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.skipif(not SHIPPED_WEIGHTS.exists(), reason="the shipped model is not trained yet")
def test_the_shipped_weights_predict_as_the_definitions_say(backend):
    model = npcnn.load(SHIPPED_WEIGHTS)
    x = np.random.default_rng(3).random((4, 1, 28, 28), dtype=np.float32)
    expected = reference_forward(model, x)
    probabilities = np.exp(expected - expected.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(x), probabilities, atol=1e-5)


def test_layer_outputs_are_channels_last_views(backend):
    """Between layers, images are (N, C, H, W) views of channels-last memory: no copies."""
    model = architectures.build("shipped")
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    out = x
    for layer in model.layers:
        out = layer.forward(out, training=True)
        if out.ndim == 4:
            assert out.transpose(0, 2, 3, 1).flags.c_contiguous, layer.name


def test_training_keeps_float32_and_contiguous_gradients(backend):
    model = architectures.build("lenet-plus")
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    optimizer = npcnn.Adam()
    model.train_step(x, np.arange(4), optimizer)
    for name, param, grad in model.parameters():
        assert grad.dtype == np.float32 and grad.shape == param.shape, name
        assert grad.flags.c_contiguous and param.flags.c_contiguous, name
    assert all(v.dtype == np.float32 for v in optimizer.state["v"])


@pytest.mark.parametrize("arch", ["keras-small", "shipped"])
@pytest.mark.parametrize("threads", [1, 2])
def test_train_step_gradients_equal_the_full_backward(backend, arch, threads):
    """Skipping the first layer's input gradient changes no parameter gradient, on one thread or
    on two (where the batch of 6 is cut into tasks that are not whole images unless the kernel
    takes care)."""
    npcnn.set_threads(threads)  # the conftest puts the suite's one thread back afterwards
    x = np.random.default_rng(0).random((6, 1, 28, 28), dtype=np.float32)
    y = np.arange(6)
    grads = []
    for full in (True, False):
        model = architectures.build(arch, seed=5)
        loss = npcnn.SoftmaxCrossEntropy()
        logits = model.forward(x, training=True)
        loss.forward(logits, y)
        if full:
            assert model.backward(loss.backward()).shape == x.shape
        else:
            model.backward(loss.backward(), input_grad=False)
        grads.append([g.copy() for _, _, g in model.parameters()])
    for a, b in zip(*grads, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv_chunking_changes_nothing(backend, padding, monkeypatch):
    """Processing the batch an image at a time gives the whole-batch results (up to rounding)."""
    from npcnn.kernels import numpy_ref

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 9, 8)).astype(np.float32)
    results = []
    for chunk_bytes in (1, 1 << 30):
        monkeypatch.setattr(numpy_ref, "CHUNK_BYTES", chunk_bytes)
        if "numba" in kernels.available_backends():
            from npcnn.kernels.numba import _parallel

            monkeypatch.setattr(_parallel, "TASK_BYTES", chunk_bytes)
        layer = Conv2D(3, 4, 3, padding=padding)
        layer.build(x.shape[1:], np.random.default_rng(1))
        y = layer.forward(x, training=True)
        grad_x = layer.backward(np.ones_like(y) + y)
        results.append((y, grad_x, layer.grads["W"], layer.grads["b"]))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_relu_before_a_maxpool_runs_after_it_with_identical_results(backend):
    """maxpool(relu(x)) == relu(maxpool(x)): the swapped order changes no value or gradient."""
    model = npcnn.Sequential(
        [Conv2D(1, 3, 3), ReLU(), MaxPool2D(2), Flatten(), ReLU(), Dense(3 * 3 * 3, 4)],
        input_shape=(1, 8, 8),
        seed=0,
        dtype=np.float64,
    )
    assert model.execution_order() == [0, 2, 1, 3, 4, 5]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 1, 8, 8))
    x[:2] = -np.abs(x[:2])  # whole windows below zero: ties at 0 after the ReLU
    grad = rng.standard_normal((5, 4))
    logits = model.forward(x, training=True)
    grad_x = model.backward(grad)
    swapped = [g.copy() for _, _, g in model.parameters()]
    out = x
    for layer in model.layers:  # the listed order
        out = layer.forward(out, training=True)
    np.testing.assert_array_equal(out, logits)
    back = grad
    for layer in reversed(model.layers):
        back = layer.backward(back)
    np.testing.assert_array_equal(back, grad_x)
    for a, (_, _, b) in zip(swapped, model.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
