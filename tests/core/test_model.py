"""Sequential: shapes, summary, reproducibility, float32 end to end, and that it really learns."""

from __future__ import annotations

import numpy as np
import pytest

import npcnn
from npcnn.digits import architectures
from npcnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU


def tiny_cnn(seed: int = 0, dtype: type = np.float32) -> npcnn.Sequential:
    return npcnn.Sequential(
        [
            Conv2D(1, 8, 3, padding="same"), BatchNorm(8), ReLU(), MaxPool2D(2),
            Conv2D(8, 16, 3), ReLU(), MaxPool2D(2),
            Flatten(), Dropout(0.2), Dense(16 * 2 * 2, 4),
        ],
        input_shape=(1, 12, 12), seed=seed, dtype=dtype,
    )  # fmt: skip


def bars_dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic 4-class image task: a noisy bar that is horizontal, vertical, or diagonal
    either way, at a random position."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 12, 12), dtype=np.float32) * 0.3
    y = rng.integers(0, 4, n)
    for i in range(n):
        r, c = rng.integers(2, 10, 2)
        t = np.arange(-2, 3)
        if y[i] == 0:
            x[i, 0, r, np.clip(c + t, 0, 11)] = 1
        elif y[i] == 1:
            x[i, 0, np.clip(r + t, 0, 11), c] = 1
        elif y[i] == 2:
            x[i, 0, np.clip(r + t, 0, 11), np.clip(c + t, 0, 11)] = 1
        else:
            x[i, 0, np.clip(r + t, 0, 11), np.clip(c - t, 0, 11)] = 1
    return x, y


def test_a_small_cnn_learns_a_synthetic_task(backend):
    x, y = bars_dataset(1200, seed=0)
    x_test, y_test = bars_dataset(400, seed=1)
    model = tiny_cnn()
    before = model.evaluate(x_test, y_test)["accuracy"]
    history = model.fit(x, y, epochs=4, batch_size=32, optimizer=npcnn.Adam(3e-3), verbose=False)
    after = model.evaluate(x_test, y_test)
    assert before < 0.5
    assert after["accuracy"] >= 0.97, after
    assert history[-1]["loss"] < history[0]["loss"]
    assert len(history) == 4 and "images_per_second" in history[0]


def test_training_is_reproducible_given_a_seed(backend):
    x, y = bars_dataset(200, seed=0)
    runs = []
    for _ in range(2):
        model = tiny_cnn(seed=3)
        model.fit(
            x,
            y,
            epochs=1,
            batch_size=50,
            verbose=False,
            augment=lambda b, r: b + 0.01 * r.random(b.shape, dtype=np.float32),
        )
        runs.append(model.predict(x[:10]))
    np.testing.assert_array_equal(runs[0], runs[1])
    other = tiny_cnn(seed=4)
    assert not np.array_equal(other.predict(x[:10]), runs[0])


def test_predict_returns_probabilities_and_float32(backend):
    model = architectures.build("keras-small")
    x = np.random.default_rng(0).random((7, 1, 28, 28), dtype=np.float32)
    p = model.predict(x, batch_size=3)
    assert p.shape == (7, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    # Batching does not change the answer.
    np.testing.assert_allclose(model.predict(x, batch_size=7), p, rtol=1e-5, atol=1e-6)
    # A single image without the batch axis is accepted.
    assert model.predict(x[0]).shape == (1, 10)


def test_no_silent_float64_anywhere_in_training(backend):
    """float32 in, float32 everywhere: activations, gradients, parameters, optimiser state."""
    model = architectures.build("shipped")
    x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    optimizer = npcnn.Adam()
    model.train_step(x, np.arange(8), optimizer)
    for name, value in model.activations(x):
        assert value.dtype == np.float32, name
    for name, param, grad in model.parameters():
        assert param.dtype == np.float32 and grad.dtype == np.float32, name
    assert all(m.dtype == np.float32 for m in optimizer.state["m"] + optimizer.state["v"])
    assert model.input_gradient(x[:1], 3).dtype == np.float32


def test_reference_architectures_have_the_documented_parameter_counts():
    assert architectures.build("keras-small").parameter_count() == 34_826
    assert architectures.build("lenet-plus").parameter_count() == 467_818


def test_summary_lists_layers_shapes_and_counts():
    lines = []
    text = architectures.build("keras-small").summary(print_fn=lines.append)
    assert lines == [text]
    assert "conv2d (Conv2D)" in text and "(None, 32, 26, 26)" in text and "320" in text
    assert "(None, 64, 11, 11)" in text and "dense (Dense)" in text and "16,010" in text
    assert "Total params: 34,826" in text


def test_input_gradient_is_the_gradient_of_one_logit(backend):
    model = tiny_cnn(dtype=np.float64)
    x = np.random.default_rng(0).random((1, 1, 12, 12))
    grad = model.input_gradient(x, 2)
    i = (0, 0, 5, 6)
    eps = 1e-6
    up, down = x.copy(), x.copy()
    up[i] += eps
    down[i] -= eps
    numeric = (model.forward(up)[0, 2] - model.forward(down)[0, 2]) / (2 * eps)
    assert grad[i] == pytest.approx(numeric, rel=1e-6, abs=1e-9)
    assert np.abs(grad).max() > 0


def test_activations_name_every_layer():
    model = tiny_cnn()
    acts = model.activations(np.zeros((2, 1, 12, 12), np.float32))
    assert [name for name, _ in acts] == [layer.name for layer in model.layers]
    assert acts[0][1].shape == (2, 8, 12, 12)


def test_logits_and_features_come_from_one_ordinary_pass():
    model = tiny_cnn()
    x = np.random.default_rng(3).normal(size=(4, 1, 12, 12)).astype(np.float32)
    listed = dict(model.activations(x))
    for index, layer in enumerate(model.layers):
        if model.execution_order()[index] != index:  # a ReLU fused after its MaxPool
            with pytest.raises(ValueError, match="fused"):
                model.logits_and_features(x, index)
            continue
        logits, features = model.logits_and_features(x, index)
        np.testing.assert_allclose(logits, model.predict_logits(x), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(features, listed[layer.name], rtol=1e-6, atol=1e-6)


def test_wrong_input_shapes_are_rejected():
    model = tiny_cnn()
    with pytest.raises(ValueError, match="expected inputs of shape"):
        model.predict(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="examples"):
        model.fit(np.zeros((3, 1, 12, 12)), np.zeros(2, int), verbose=False)


def test_layers_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="input channels"):
        npcnn.Sequential([Conv2D(3, 4, 3)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="does not fit"):
        npcnn.Sequential([Conv2D(1, 4, 9)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="odd kernel"):
        Conv2D(1, 1, 2, padding="same")
