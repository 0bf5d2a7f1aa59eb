"""fold_batchnorm: a model with its BatchNorms folded into the layers before them predicts what
the model predicts, the model itself untouched."""

from __future__ import annotations

import numpy as np
import pytest

import npcnn
from npcnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU


def with_trained_statistics(model: npcnn.Sequential, seed: int) -> npcnn.Sequential:
    """Every BatchNorm given running statistics, scales and shifts far from their start (a
    fresh BatchNorm is the identity map, which folding would leave unchanged)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            c = layer.num_features
            layer.buffers["running_mean"][...] = rng.normal(0.0, 2.0, c)
            layer.buffers["running_var"][...] = rng.uniform(0.05, 5.0, c)
            layer.params["gamma"][...] = rng.normal(1.0, 0.8, c)
            layer.params["beta"][...] = rng.normal(0.0, 1.0, c)
    return model


def cnn(dtype: type = np.float64, first: list | None = None) -> npcnn.Sequential:
    """Conv-BN-ReLU-pool, conv-BN-ReLU, dense-BN-ReLU, and whatever ``first`` puts in front."""
    layers = [
        *(first or []),
        Conv2D(6, 3, padding="same"), BatchNorm(), ReLU(), MaxPool2D(2),
        Conv2D(8, 3), BatchNorm(), ReLU(),
        Flatten(), Dense(12), BatchNorm(), ReLU(), Dropout(0.3), Dense(5),
    ]  # fmt: skip
    return with_trained_statistics(npcnn.Sequential(layers, (2, 10, 10), seed=3, dtype=dtype), 4)


def test_the_folded_model_predicts_what_the_model_predicts_in_float64() -> None:
    model = cnn()
    x = np.random.default_rng(0).normal(size=(7, 2, 10, 10))
    folded = npcnn.fold_batchnorm(model)
    np.testing.assert_allclose(
        folded.predict_logits(x), model.predict_logits(x), rtol=1e-12, atol=1e-12
    )
    assert not any(isinstance(layer, BatchNorm) for layer in folded.layers)
    assert len(folded.layers) == len(model.layers) - 3
    assert [layer.name for layer in folded.layers][:3] == ["conv2d", "relu", "maxpool2d"]
    assert folded.output_shapes[-1] == model.output_shapes[-1] == (5,)


def test_folding_in_float32_agrees_to_float32_rounding() -> None:
    model = cnn(np.float32)
    x = np.random.default_rng(1).normal(size=(9, 2, 10, 10)).astype(np.float32)
    folded = npcnn.fold_batchnorm(model)
    assert all(array.dtype == np.float32 for _, array, _ in folded.parameters())
    logits, expected = folded.predict_logits(x), model.predict_logits(x)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_the_model_itself_is_unchanged() -> None:
    model = cnn()
    before = {name: array.copy() for name, array, _ in model.parameters()}
    layer_count = len(model.layers)
    npcnn.fold_batchnorm(model)
    assert len(model.layers) == layer_count
    for name, array, _ in model.parameters():
        np.testing.assert_array_equal(array, before[name])


def test_a_batchnorm_not_after_a_conv_or_dense_layer_stays() -> None:
    """A BatchNorm of the input, or after a ReLU, is not an affine map of a layer's output:
    it stays in the folded model, and the predictions still agree."""
    model = cnn(first=[BatchNorm()])
    relu_first = with_trained_statistics(
        npcnn.Sequential(
            [Conv2D(4, 3), ReLU(), BatchNorm(), Flatten(), Dense(3)],
            (1, 6, 6),
            seed=0,
            dtype=np.float64,
        ),
        seed=2,
    )
    for original, kept in ((model, 1), (relu_first, 1)):
        folded = npcnn.fold_batchnorm(original)
        assert sum(isinstance(layer, BatchNorm) for layer in folded.layers) == kept
        x = np.random.default_rng(5).normal(size=(4, *original.input_shape))
        np.testing.assert_allclose(folded.predict(x), original.predict(x), rtol=1e-12, atol=1e-12)


def test_an_unbuilt_model_is_refused() -> None:
    with pytest.raises(npcnn.ConfigError, match="built"):
        npcnn.fold_batchnorm(npcnn.Sequential([Conv2D(4, 3), BatchNorm()]))
