"""Optimisers against hand-computed updates; schedules' shapes; state round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from npcnn.optimizers import SGD, Adam, CosineLR, OneCycleLR, StepLR, schedule_named


def test_adam_first_steps_match_the_paper():
    w = np.array([1.0, -2.0])
    g = np.array([0.5, -0.1])
    adam = Adam(lr=0.1)
    adam.step([w], [g])
    # After one step with bias correction, m_hat = g and v_hat = g^2: the step is lr * sign(g).
    np.testing.assert_allclose(w, [1.0 - 0.1, -2.0 + 0.1], rtol=1e-6)
    m = 0.1 * g
    v = 0.001 * g**2
    g2 = np.array([0.2, 0.3])
    m = 0.9 * m + 0.1 * g2
    v = 0.999 * v + 0.001 * g2**2
    expected = w - 0.1 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    adam.step([w], [g2])
    np.testing.assert_allclose(w, expected, rtol=1e-7)


def test_adamw_decays_weights_without_gradient():
    w = np.array([2.0])
    Adam(lr=0.1, weight_decay=0.5).step([w], [np.zeros(1)])
    assert w[0] == pytest.approx(2.0 * (1 - 0.05))


def test_sgd_momentum():
    w = np.array([1.0])
    sgd = SGD(lr=0.1, momentum=0.9)
    sgd.step([w], [np.array([1.0])])
    sgd.step([w], [np.array([1.0])])
    assert w[0] == pytest.approx(1.0 - 0.1 - (0.9 * 0.1 + 0.1))


def test_optimizer_state_round_trip():
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal(5)
    w2 = w1.copy()
    a, b = Adam(lr=0.01), Adam(lr=0.01)
    for _ in range(3):
        g = rng.standard_normal(5)
        a.step([w1], [g])
    b.load_state_dict(a.state_dict())
    w2[:] = w1
    g = rng.standard_normal(5)
    a.step([w1], [g])
    b.step([w2], [g])
    np.testing.assert_array_equal(w1, w2)


def test_schedules():
    step = StepLR(1.0, step_size=10, gamma=0.5)
    assert [step(0), step(9), step(10), step(25)] == [1.0, 1.0, 0.5, 0.25]
    cos = CosineLR(1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(60) == pytest.approx(0.55) and cos(110) == pytest.approx(0.1)
    one = OneCycleLR(1.0, total_steps=100, pct_start=0.2, div=10, final_div=100)
    assert one(0) == pytest.approx(0.1) and one(20) == pytest.approx(1.0)
    assert one(100) == pytest.approx(0.01)
    lrs = [one(t) for t in range(101)]
    assert max(lrs) == pytest.approx(1.0) and all(math.isfinite(v) for v in lrs)


def test_schedules_by_name():
    assert schedule_named("constant", 0.1, 100) is None
    one = schedule_named("onecycle", 1.0, 100)
    assert one(20) == pytest.approx(1.0) and one(0) < 0.1 and one(99) < 0.01
    step = schedule_named("step", 1.0, 100)
    assert [step(t) for t in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    )
    cosine = schedule_named("cosine", 1.0, 100)
    assert cosine(10) == pytest.approx(1.0) and cosine(100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="onecycle"):
        schedule_named("linear", 1.0, 100)
