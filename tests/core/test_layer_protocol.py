"""One layer protocol: layers infer their input sizes, every backward takes ``input_grad``, the
ReLU/MaxPool reordering is named and exact, and bad shapes raise npcnn's own errors."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import npcnn
from npcnn.layers import LAYER_TYPES, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from npcnn.model import relu_then_max_pool


def test_layers_infer_their_input_sizes_and_summary_shows_them():
    model = npcnn.Sequential(
        [Conv2D(8, 3), BatchNorm(), ReLU(), MaxPool2D(2), Flatten(), Dense(10)],
        input_shape=(3, 12, 12),
    )
    conv, norm, dense = model.layers[0], model.layers[1], model.layers[5]
    assert conv.in_channels == 3 and conv.params["W"].shape == (8, 3, 3, 3)
    assert norm.num_features == 8 and norm.params["gamma"].shape == (8,)
    assert dense.in_features == 8 * 5 * 5 and dense.params["W"].shape == (200, 10)
    text = model.summary(print_fn=lambda _: None)
    assert "(None, 8, 10, 10)" in text and "(None, 200)" in text and "(None, 10)" in text


def test_explicit_and_inferred_forms_build_the_same_model():
    explicit = npcnn.Sequential(
        [Conv2D(1, 4, 3), BatchNorm(4), ReLU(), Flatten(), Dense(4 * 6 * 6, 3)],
        input_shape=(1, 8, 8), seed=5,
    )  # fmt: skip
    inferred = npcnn.Sequential(
        [Conv2D(4, 3), BatchNorm(), ReLU(), Flatten(), Dense(3)], input_shape=(1, 8, 8), seed=5
    )
    keywords = npcnn.Sequential(
        [Conv2D(in_channels=1, out_channels=4, kernel_size=3), BatchNorm(num_features=4), ReLU(),
         Flatten(), Dense(in_features=144, out_features=3)],
        input_shape=(1, 8, 8), seed=5,
    )  # fmt: skip
    for other in (inferred, keywords):
        assert [layer.config() for layer in other.layers] == [
            layer.config() for layer in explicit.layers
        ]
        for (name, a, _), (_, b, _) in zip(explicit.parameters(), other.parameters(), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_a_model_without_input_shape_is_built_by_its_first_input():
    model = npcnn.Sequential([Conv2D(4, 3), ReLU(), Flatten(), Dense(2)])
    assert not model.built
    with pytest.raises(npcnn.ShapeError, match="built"):
        model.summary()
    assert model.predict(np.zeros((3, 2, 7, 7), np.float32)).shape == (3, 2)
    assert model.input_shape == (2, 7, 7) and model.layers[0].in_channels == 2
    with pytest.raises(npcnn.ShapeError, match="expected inputs of shape"):
        model.predict(np.zeros((1, 1, 7, 7), np.float32))


def test_every_layer_has_the_same_backward_signature():
    for name, cls in LAYER_TYPES.items():
        parameters = list(inspect.signature(cls.backward).parameters)
        assert parameters == ["self", "grad_out", "input_grad"], name


@pytest.mark.parametrize(
    ("layers", "shape"), [([Conv2D(3, 3)], (2, 6, 6)), ([Dense(4)], (7,))], ids=["conv", "dense"]
)
def test_a_first_layer_may_skip_the_input_gradient(backend, layers, shape):
    model = npcnn.Sequential(layers, input_shape=shape)
    x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
    out = model.forward(x, training=True)
    full = model.backward(np.ones_like(out))
    grads = {name: g.copy() for name, _, g in model.parameters()}
    assert full is not None and full.shape == x.shape
    model.forward(x, training=True)
    assert model.backward(np.ones_like(out), input_grad=False) is None
    for name, _, g in model.parameters():
        np.testing.assert_array_equal(g, grads[name], err_msg=name)


def test_relu_then_max_pool_is_named_and_changes_nothing(backend):
    assert relu_then_max_pool(ReLU(), MaxPool2D(2))
    assert not relu_then_max_pool(MaxPool2D(2), ReLU())
    assert not relu_then_max_pool(ReLU(), Dropout(0.1))
    layers = [Conv2D(4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(3)]
    model = npcnn.Sequential(layers, input_shape=(1, 9, 9), dtype=np.float64)
    assert model.execution_order() == [0, 2, 1, 3, 4]
    x = np.random.default_rng(1).standard_normal((5, 1, 9, 9))
    # forward reorders; activations runs the listed order: the same logits.
    np.testing.assert_allclose(model.forward(x), model.activations(x)[-1][1], rtol=1e-12)
    errors = npcnn.gradcheck.check_model(model, x, np.arange(5) % 3)
    assert max(errors.values()) < 1e-6, errors


def test_bad_shapes_and_settings_raise_npcnn_errors_that_are_value_errors():
    cases = [
        lambda: npcnn.Sequential([Conv2D(3, 4, 3)], input_shape=(1, 8, 8)),
        lambda: npcnn.Sequential([Conv2D(4, 9)], input_shape=(1, 8, 8)),
        lambda: npcnn.Sequential([Dense(4)], input_shape=(1, 8, 8)),
        lambda: npcnn.Sequential([MaxPool2D(4)], input_shape=(1, 2, 2)),
        lambda: Conv2D(1, 2, padding="same"),
        lambda: Conv2D(),
        lambda: Dropout(1.5),
        lambda: npcnn.SoftmaxCrossEntropy(label_smoothing=2.0),
    ]
    for case in cases:
        with pytest.raises(npcnn.NpcnnError) as info:
            case()
        assert isinstance(info.value, ValueError)


def test_inspect_is_one_forward_and_one_backward(backend):
    model = npcnn.Sequential(
        [Conv2D(4, 3), BatchNorm(), ReLU(), MaxPool2D(2), Flatten(), Dense(3)],
        input_shape=(1, 8, 8), dtype=np.float64,
    )  # fmt: skip
    x = np.random.default_rng(2).random((2, 1, 8, 8))
    seen = inspect_calls(model)
    result = model.inspect(x)
    assert seen == {"forward": 6, "backward": 6}
    np.testing.assert_allclose(result.logits, model.forward(x), rtol=1e-12)
    assert [name for name, _ in result.activations] == [layer.name for layer in model.layers]
    winners = result.logits.argmax(axis=1)
    np.testing.assert_array_equal(result.class_index, winners)
    for i, winner in enumerate(winners):
        expected = model.input_gradient(x[i : i + 1], int(winner))
        np.testing.assert_allclose(result.input_gradient[i : i + 1], expected, rtol=1e-10)


def inspect_calls(model: npcnn.Sequential) -> dict[str, int]:
    """Count the layers' forward and backward calls from now on."""
    counts = {"forward": 0, "backward": 0}
    for layer in model.layers:
        for kind in counts:
            original = getattr(layer, kind)

            def counted(*args, _original=original, _kind=kind, **kwargs):
                counts[_kind] += 1
                return _original(*args, **kwargs)

            setattr(layer, kind, counted)
    return counts
