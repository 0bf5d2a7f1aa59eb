"""Winograd's 3x3 convolution: the NumPy version equals im2col + GEMM, the Numba kernels equal
both, the Numba backend really uses it for training-sized batches, and its gradients are the
true gradients (finite differences in float64).  Images are channels-last ``(N, H, W, C)``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npcnn import kernels
from npcnn.errors import ConfigError
from npcnn.kernels import numpy_ref, winograd

HAVE_NUMBA = "numba" in kernels.available_backends()
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")


@st.composite
def conv3x3_problems(draw, max_channels: int = 4):
    """A random ``(x, w_ext, grad_y, pad)`` for a 3x3 stride-1 convolution; odd and even sizes,
    so that the last row and column of 2x2 (or 4x4) output tiles sometimes overhang."""
    pad = draw(st.integers(0, 2))
    h = draw(st.integers(max(1, 3 - 2 * pad), 11))
    w = draw(st.integers(max(1, 3 - 2 * pad), 11))
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, max_channels))
    f = draw(st.integers(1, max_channels))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, h, w, c))
    w_ext = rng.standard_normal((f, 9 * c + 1))
    grad_y = rng.standard_normal((n, h + 2 * pad - 2, w + 2 * pad - 2, f))
    return x, w_ext, grad_y, pad


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    """Equal up to ``rtol`` of the largest value (sums of many terms: an absolute scale)."""
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(actual - expected).max() <= rtol * scale


@given(conv3x3_problems(), st.sampled_from([2, 4]))
def test_numpy_winograd_equals_im2col(problem, m):
    """F(2x2, 3x3) and F(4x4, 3x3) give im2col's outputs and gradients (float64)."""
    x, w_ext, grad_y, pad = problem
    assert_close(
        winograd.conv3x3_forward(x, w_ext, pad, m),
        numpy_ref.conv2d_forward(x, w_ext, 3, 1, pad),
        1e-12,
    )
    grad_ext, grad_x = winograd.conv3x3_backward(x, grad_y, w_ext, pad, m)
    expected_ext, expected_x = numpy_ref.conv2d_backward(x, grad_y, w_ext, 3, 1, pad)
    assert_close(grad_ext, expected_ext, 1e-12)
    assert_close(grad_x, expected_x, 1e-12)


@needs_numba
@given(conv3x3_problems(), st.sampled_from([np.float32, np.float64]), st.booleans())
def test_numba_winograd_equals_numpy(problem, dtype, input_grad):
    """The Numba kernels give the NumPy results, in the input's dtype (no silent float64)."""
    from npcnn.kernels.numba import winograd as numba_winograd

    x, w_ext, grad_y, pad = (a.astype(dtype) if isinstance(a, np.ndarray) else a for a in problem)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    y = numba_winograd.winograd_conv2d_forward(x, w_ext, pad)
    assert_close(y, numpy_ref.conv2d_forward(x, w_ext, 3, 1, pad), rtol)
    grad_ext, grad_x = numba_winograd.winograd_conv2d_backward(x, grad_y, w_ext, pad, input_grad)
    expected_ext, expected_x = winograd.conv3x3_backward(x, grad_y, w_ext, pad, 2)
    assert_close(grad_ext, expected_ext, rtol)
    if input_grad:
        assert_close(grad_x, expected_x, rtol)
    else:
        assert grad_x is None


@needs_numba
@settings(max_examples=10)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(14, 1), (10, 0), (7, 1)]))
def test_numba_backend_uses_winograd_for_training_batches(seed, size_and_pad):
    """A batch of 32 images with 32 channels takes the Winograd path, and still gives im2col's
    result (float32, the dtype training uses)."""
    from npcnn.kernels import numba as numba_kernels
    from npcnn.kernels.numba.winograd import use_winograd

    size, pad = size_and_pad
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((32, size, size, 32)).astype(np.float32)
    w_ext = (0.1 * rng.standard_normal((32, 9 * 32 + 1))).astype(np.float32)
    assert use_winograd(32, 32, 32, 3, 1)
    assert not use_winograd(1, 32, 32, 3, 1)  # one drawing: im2col
    assert not use_winograd(32, 32, 32, 3, 2)  # strided: im2col
    y = numba_kernels.conv2d_forward(x, w_ext, 3, 1, pad)
    assert_close(y, numpy_ref.conv2d_forward(x, w_ext, 3, 1, pad), 1e-5)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    grad_ext, grad_x = numba_kernels.conv2d_backward(x, grad_y, w_ext, 3, 1, pad)
    expected_ext, expected_x = numpy_ref.conv2d_backward(x, grad_y, w_ext, 3, 1, pad)
    assert_close(grad_ext, expected_ext, 1e-5)
    assert_close(grad_x, expected_x, 1e-5)


@needs_numba
def test_winograd_gradients_match_finite_differences():
    """Directional derivatives of L = <conv(x, W), R> along random directions, in float64:
    (L(p + e d) - L(p - e d)) / 2e must equal <grad, d> for the weights, the bias and x."""
    from npcnn.kernels import numba as numba_kernels
    from npcnn.kernels.numba.winograd import use_winograd

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 9, 9, 32))
    w_ext = 0.1 * rng.standard_normal((32, 9 * 32 + 1))
    pad = 1
    assert use_winograd(32, 32, 32, 3, 1)
    r = rng.standard_normal((32, 9, 9, 32))

    def loss(x_: np.ndarray, w_: np.ndarray) -> float:
        return float(np.vdot(numba_kernels.conv2d_forward(x_, w_, 3, 1, pad), r))

    grad_ext, grad_x = numba_kernels.conv2d_backward(x, r, w_ext, 3, 1, pad)
    eps = 1e-6
    for _ in range(3):
        d_w = rng.standard_normal(w_ext.shape)
        numeric = (loss(x, w_ext + eps * d_w) - loss(x, w_ext - eps * d_w)) / (2 * eps)
        assert numeric == pytest.approx(np.vdot(grad_ext, d_w), rel=1e-7)
        d_x = rng.standard_normal(x.shape)
        numeric = (loss(x + eps * d_x, w_ext) - loss(x - eps * d_x, w_ext)) / (2 * eps)
        assert numeric == pytest.approx(np.vdot(grad_x, d_x), rel=1e-7)


def test_filter_transform_and_gradient_are_adjoint():
    """<U(W), dU> == <W, filter_gradient(dU)>: the filter gradient is the transform's adjoint."""
    rng = np.random.default_rng(1)
    for m in (2, 4):
        w_ext = rng.standard_normal((5, 9 * 3 + 1))
        u = winograd.filter_transform(w_ext, m)
        grad_u = rng.standard_normal(u.shape)
        assert np.vdot(u, grad_u) == pytest.approx(
            np.vdot(w_ext[:, :-1], winograd.filter_gradient(grad_u, m))
        )


def test_unsupported_tile_size_is_a_clear_error():
    with pytest.raises(ValueError, match="use 2 or 4"):
        winograd.matrices(3, np.float32)
    with pytest.raises(ConfigError, match="use 2 or 4"):
        winograd.matrices(3, np.float32)
