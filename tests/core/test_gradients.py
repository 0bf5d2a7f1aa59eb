"""Every layer's backward pass, and a whole network through the loss, against finite differences
(float64, central differences): max relative error below 1e-6, on both kernel backends."""

from __future__ import annotations

import numpy as np
import pytest

import npcnn
from npcnn.gradcheck import check_layer, check_model, numerical_gradient, relative_error
from npcnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU

TOLERANCE = 1e-6

LAYER_CASES = [
    pytest.param(lambda: Conv2D(3, 4, 3, padding="same"), (2, 3, 6, 6), id="conv3x3-same"),
    pytest.param(lambda: Conv2D(2, 3, 3, padding="valid"), (2, 2, 7, 6), id="conv3x3-valid"),
    pytest.param(lambda: Conv2D(2, 3, 3, stride=2, padding=1), (2, 2, 7, 7), id="conv3x3-s2-p1"),
    pytest.param(lambda: Conv2D(1, 2, 5, stride=1, padding=2), (3, 1, 6, 5), id="conv5x5-p2"),
    pytest.param(lambda: Conv2D(2, 2, 1), (2, 2, 4, 4), id="conv1x1"),
    pytest.param(lambda: Conv2D(2, 3, 4, stride=3, padding="valid"), (2, 2, 9, 10), id="conv4-s3"),
    pytest.param(lambda: MaxPool2D(2), (2, 3, 6, 6), id="pool2"),
    pytest.param(lambda: MaxPool2D(2), (2, 2, 7, 5), id="pool2-odd"),
    pytest.param(lambda: MaxPool2D(3, stride=2), (2, 2, 7, 7), id="pool3-s2-overlap"),
    pytest.param(lambda: Dense(7, 5), (4, 7), id="dense"),
    pytest.param(lambda: ReLU(), (3, 2, 4, 4), id="relu"),
    pytest.param(lambda: Flatten(), (2, 3, 4, 5), id="flatten"),
    pytest.param(lambda: Dropout(0.4), (5, 12), id="dropout"),
    pytest.param(lambda: BatchNorm(3), (4, 3, 5, 5), id="batchnorm2d"),
    pytest.param(lambda: BatchNorm(6), (8, 6), id="batchnorm1d"),
]


@pytest.mark.parametrize(("make_layer", "shape"), LAYER_CASES)
def test_layer_backward_matches_finite_differences(backend, make_layer, shape):
    errors = check_layer(make_layer(), shape, training=True)
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize(
    ("make_layer", "shape"),
    [
        pytest.param(lambda: BatchNorm(3), (4, 3, 5, 5), id="batchnorm2d-eval"),
        pytest.param(lambda: Dropout(0.5), (4, 6), id="dropout-eval"),
    ],
)
def test_layer_backward_in_eval_mode(backend, make_layer, shape):
    layer = make_layer()
    errors = check_layer(layer, shape, training=False)
    assert max(errors.values()) < TOLERANCE, errors


def small_network(seed: int = 0) -> npcnn.Sequential:
    return npcnn.Sequential(
        [
            Conv2D(1, 3, 3, padding="same"), BatchNorm(3), ReLU(), MaxPool2D(2),
            Conv2D(3, 4, 3, stride=2, padding=1), ReLU(),
            Flatten(), Dropout(0.25), Dense(4 * 2 * 2, 6), BatchNorm(6), ReLU(), Dense(6, 3),
        ],
        input_shape=(1, 8, 8), seed=seed, dtype=np.float64,
    )  # fmt: skip


def test_whole_network_through_the_loss(backend):
    model = small_network()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1, 8, 8))
    y = np.array([0, 2, 1, 2])
    errors = check_model(model, x, y, npcnn.SoftmaxCrossEntropy(label_smoothing=0.1))
    assert set(errors) >= {"x", "0.conv2d.W", "11.dense_1.b"}
    assert max(errors.values()) < TOLERANCE, errors


def test_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((5, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2])
    loss = npcnn.SoftmaxCrossEntropy()
    loss(logits, labels)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda: loss(logits, labels), logits)
    assert relative_error(analytic, numeric) < TOLERANCE


def test_gradcheck_catches_a_wrong_backward():
    """The checker itself must fail a layer whose backward is wrong."""

    class WrongReLU(ReLU):
        def backward(self, grad_out):
            return grad_out  # forgets the mask

    errors = check_layer(WrongReLU(), (3, 10))
    assert errors["x"] > 1e-2


def test_relative_error_definition():
    a = np.array([1.0, -2.0, 0.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a, a + np.array([0.0, 0.02, 0.0])) == pytest.approx(0.01)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0


def test_a_vanishing_gradient_counts_as_agreement_only_when_both_are_tiny():
    assert relative_error(np.full(3, 1e-17), np.full(3, 3e-11)) == 0.0
    assert relative_error(np.zeros(3), np.full(3, 1e-3)) == 1.0
