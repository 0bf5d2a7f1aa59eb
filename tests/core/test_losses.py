"""Softmax and cross-entropy: normalised, shift-invariant, finite for huge logits, exact."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from npcnn.losses import SoftmaxCrossEntropy, log_softmax, softmax

logit_rows = arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(2, 12)),
    elements=st.floats(-1e4, 1e4, allow_nan=False),
)


@given(logit_rows)
def test_softmax_rows_sum_to_one_and_stay_finite(logits):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings either
        p = softmax(logits)
        log_p = log_softmax(logits)
    assert np.isfinite(p).all() and np.isfinite(log_p).all()
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)


@given(logit_rows, st.floats(-1e3, 1e3))
def test_softmax_is_shift_invariant(logits, shift):
    np.testing.assert_allclose(softmax(logits + shift), softmax(logits), atol=1e-9)


def test_cross_entropy_is_exact_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
    loss = SoftmaxCrossEntropy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loss(logits, np.array([0, 1])) == 0.0  # log(1 + e^-1e4 + e^-2e4) underflows to 0
        # The wrong class: the loss is exactly the logit gap, 2e4 (a naive softmax gives inf/NaN).
        assert loss(logits, np.array([1, 0])) == pytest.approx(2e4)
        grad = loss.backward()
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [-0.5, 0.5, 0.0]], atol=1e-12)


def test_cross_entropy_matches_the_definition():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, 5))
    labels = rng.integers(0, 5, 7)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.log(p[np.arange(7), labels]).mean()
    assert SoftmaxCrossEntropy()(logits, labels) == pytest.approx(expected, rel=1e-12)


def test_label_smoothing_targets():
    loss = SoftmaxCrossEntropy(label_smoothing=0.1)
    logits = np.zeros((1, 4))
    assert loss(logits, np.array([2])) == pytest.approx(np.log(4))
    _, targets = loss._cache
    np.testing.assert_allclose(targets, [[0.025, 0.025, 0.925, 0.025]])


def test_float32_stays_float32():
    logits = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    loss = SoftmaxCrossEntropy()
    loss(logits, np.arange(4))
    assert loss.backward().dtype == np.float32
    assert softmax(logits).dtype == np.float32


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="one integer class per row"):
        SoftmaxCrossEntropy()(np.zeros((3, 4)), np.array([0, 1]))
