"""CTC loss: the probability it sums equals the sum over every alignment, enumerated one by
one; its gradient equals finite differences (float64); it stays finite for huge logits and long
sequences; impossible or malformed inputs are refused."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npcnn.errors import ConfigError, ShapeError
from npcnn.gradcheck import numerical_gradient, relative_error
from npcnn.losses import CTCLoss, log_softmax

BLANK = 2  # three classes: 0, 1 and the blank


def collapse(path: tuple[int, ...], blank: int) -> list[int]:
    """What an alignment reads: repeats merged, then blanks removed."""
    read, previous = [], None
    for k in path:
        if k != previous and k != blank:
            read.append(k)
        previous = k
    return read


def brute_force_log_p(logits: np.ndarray, labels: list[int], blank: int) -> float:
    """log of the sum, over all C**T alignments that read ``labels``, of their probability."""
    steps, classes = logits.shape
    log_y = log_softmax(logits)
    total = 0.0
    for path in itertools.product(range(classes), repeat=steps):
        if collapse(path, blank) == labels:
            total += np.exp(sum(log_y[t, k] for t, k in enumerate(path)))
    return float(np.log(total))


label_sequences = st.lists(st.integers(0, 1), max_size=3)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(label_sequences, min_size=1, max_size=3),
    st.integers(0, 2**31 - 1),
    st.integers(5, 6),
)
def test_probability_is_the_sum_over_all_alignments(labels, seed, steps):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), steps, 3)) * 2
    shortest = [
        max(1, len(seq) + sum(a == b for a, b in zip(seq, seq[1:], strict=False))) for seq in labels
    ]
    lengths = np.array([rng.integers(low, steps + 1) for low in shortest])
    ctc = CTCLoss(blank=BLANK)
    loss = ctc(logits, labels, lengths)
    expected = [
        brute_force_log_p(logits[n, : lengths[n]], seq, BLANK) for n, seq in enumerate(labels)
    ]
    np.testing.assert_allclose(ctc.log_probability(), expected, rtol=1e-10)
    assert loss == pytest.approx(-np.mean(expected), rel=1e-10)


@pytest.mark.parametrize(
    "labels, lengths",
    [
        ([[0, 1], [1, 1], []], None),
        ([[0], [1, 0, 1], [0, 0]], [5, 6, 4]),
        ([[1, 1, 1], [0], [0, 1, 0]], [6, 3, 6]),
    ],
)
def test_gradient_matches_finite_differences(labels, lengths):
    rng = np.random.default_rng(len(labels[1]))
    logits = rng.normal(size=(3, 6, 3)) * 1.5
    ctc = CTCLoss(blank=BLANK)
    ctc(logits, labels, lengths)
    analytic = ctc.backward()
    numeric = numerical_gradient(lambda: ctc(logits, labels, lengths), logits)
    assert relative_error(analytic, numeric) < 1e-6
    if lengths is not None:  # steps past a sequence's end take no part
        for n, length in enumerate(lengths):
            assert not analytic[n, length:].any()


def test_huge_logits_and_long_sequences_stay_finite():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 400, 11)) * 1e4  # each step all but certain of one class
    labels = [list(rng.integers(0, 10, 30)), [3, 3, 3]]
    ctc = CTCLoss(blank=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = ctc(logits, labels)
        grad = ctc.backward()
    assert np.isfinite(loss) and np.isfinite(grad).all()
    # each step's gradient is a softmax minus an occupancy, both summing to 1 (the loss, about
    # 5e6 here, costs the log-space sums some of their float64 digits)
    np.testing.assert_allclose(grad.sum(axis=2), 0.0, atol=1e-6)


def test_a_confident_right_alignment_costs_almost_nothing():
    logits = np.full((1, 5, 3), -20.0)
    for t, k in enumerate([0, 2, 0, 1, 1]):  # reads 0 0 1
        logits[0, t, k] = 20.0
    ctc = CTCLoss(blank=BLANK)
    assert ctc(logits, [[0, 0, 1]]) < 1e-6
    assert ctc(logits, [[0, 1]]) > 10.0  # the blank between the 0s is what makes two of them


def test_the_steps_needed_count_a_blank_between_equal_labels():
    assert CTCLoss.steps_needed([]) == 0
    assert CTCLoss.steps_needed([0, 1, 0]) == 3
    assert CTCLoss.steps_needed([1, 1, 1]) == 5
    assert CTCLoss.steps_needed("4711") == 5  # any sequence: a number's digit string too


def test_impossible_and_malformed_inputs_are_refused():
    ctc = CTCLoss(blank=BLANK)
    logits = np.zeros((1, 3, 3))
    with pytest.raises(ShapeError, match="needs at least 4 steps"):
        ctc(logits, [[0, 0, 1]])  # two equal labels need a blank between them
    with pytest.raises(ShapeError):
        ctc(logits[0], [[0]])  # not (N, T, C)
    with pytest.raises(ShapeError):
        ctc(logits, [[0], [1]])  # two label sequences for one row
    with pytest.raises(ConfigError, match="except the blank"):
        ctc(logits, [[BLANK]])
    with pytest.raises(ConfigError):
        ctc(logits, [[5]])
