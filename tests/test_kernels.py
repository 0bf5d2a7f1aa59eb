"""Property tests of the kernels: im2col and col2im are adjoint, convolution equals the textbook
definition, max-pool backward conserves gradient mass, and every Numba kernel equals its NumPy
reference on random shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npcnn import kernels
from npcnn.kernels import numpy_ref
from npcnn.layers import Conv2D, MaxPool2D

HAVE_NUMBA = "numba" in kernels.available_backends()


@st.composite
def conv_problems(draw):
    """A random (x, kernel, stride, pad) whose output is at least 1x1."""
    k = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    pad = draw(st.integers(0, 2))
    h = draw(st.integers(max(1, k - 2 * pad), 9))
    w = draw(st.integers(max(1, k - 2 * pad), 9))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    return x, k, stride, pad


def as_channels_last_view(x: np.ndarray) -> np.ndarray:
    """The same values, stored NHWC: the layout a Conv2D output has."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@given(conv_problems(), st.integers(0, 2**32 - 1))
def test_im2col_and_col2im_are_adjoint(backend, problem, seed):
    """<im2col(x), y> == <x, col2im(y)> for all x and y."""
    x, k, stride, pad = problem
    cols = kernels.im2col(x, k, k, stride, pad)
    y = np.random.default_rng(seed).standard_normal(cols.shape)
    back = kernels.col2im(y, x.shape, k, k, stride, pad)
    assert back.shape == x.shape
    assert np.vdot(cols, y) == pytest.approx(np.vdot(x, back), rel=1e-10, abs=1e-10)


def direct_convolution(x, weights, bias, stride, pad):
    """The definition, with loops: y[n,f,i,j] = b[f] + sum_{c,u,v} W[f,c,u,v] x_pad[n,c,i*s+u,j*s+v]."""
    n, _, h, w = x.shape
    f, _, k, _ = weights.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    y = np.zeros((n, f, oh, ow))
    for b in range(n):
        for o in range(f):
            for i in range(oh):
                for j in range(ow):
                    patch = xp[b, :, i * stride : i * stride + k, j * stride : j * stride + k]
                    y[b, o, i, j] = (patch * weights[o]).sum() + bias[o]
    return y


@given(conv_problems(), st.integers(1, 3))
def test_conv2d_equals_direct_convolution(backend, problem, filters):
    x, k, stride, pad = problem
    layer = Conv2D(x.shape[1], filters, k, stride=stride, padding=pad)
    layer.build(x.shape[1:], np.random.default_rng(0), np.float64)
    layer.params["b"] = np.random.default_rng(1).standard_normal(filters)
    expected = direct_convolution(x, layer.params["W"], layer.params["b"], stride, pad)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-10)


@st.composite
def pool_problems(draw):
    size = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    h, w = draw(st.integers(size, 9)), draw(st.integers(size, 9))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    return x, size, stride


@given(pool_problems())
def test_maxpool_forward_is_the_window_maximum(backend, problem):
    x, size, stride = problem
    out, argmax = kernels.maxpool_forward(x, size, stride)
    n, c, oh, ow = out.shape
    for i in range(oh):
        for j in range(ow):
            window = x[:, :, i * stride : i * stride + size, j * stride : j * stride + size]
            np.testing.assert_array_equal(out[:, :, i, j], window.max(axis=(2, 3)))
    assert argmax.max() < size * size


@given(pool_problems(), st.integers(0, 2**32 - 1))
def test_maxpool_backward_conserves_gradient_mass(backend, problem, seed):
    """Each output gradient goes to exactly one input: the sums agree, and only arg-maxes get any."""
    x, size, stride = problem
    layer = MaxPool2D(size, stride)
    out = layer.forward(x)
    grad = np.random.default_rng(seed).random(out.shape) + 0.1  # positive, so nothing cancels
    grad_x = layer.backward(grad)
    assert grad_x.sum() == pytest.approx(grad.sum(), rel=1e-12)
    receivers = grad_x != 0
    assert receivers.sum() <= out.size
    # An input that received gradient is the maximum of some window containing it.
    assert np.isin(x[receivers], out).all()


@pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")
@given(conv_problems(), st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_numba_im2col_col2im_equal_numpy(problem, channels_last, dtype):
    from npcnn.kernels import numba_jit

    x, k, stride, pad = problem
    x = x.astype(dtype)
    if channels_last:
        x = as_channels_last_view(x)
    cols = numpy_ref.im2col(x, k, k, stride, pad)
    fast = numba_jit.im2col(x, k, k, stride, pad)
    assert fast.dtype == cols.dtype == dtype
    np.testing.assert_array_equal(fast, cols)
    np.testing.assert_allclose(
        numba_jit.col2im(cols, x.shape, k, k, stride, pad),
        numpy_ref.col2im(cols, x.shape, k, k, stride, pad),
        rtol=1e-5 if dtype == np.float32 else 1e-12,
        atol=1e-5 if dtype == np.float32 else 1e-12,
    )


@pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")
@given(pool_problems(), st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_numba_maxpool_equals_numpy(problem, channels_last, dtype):
    from npcnn.kernels import numba_jit

    x, size, stride = problem
    x = x.astype(dtype)
    if channels_last:
        x = as_channels_last_view(x)
    out_ref, arg_ref = numpy_ref.maxpool_forward(x, size, stride)
    out, arg = numba_jit.maxpool_forward(x, size, stride)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    grad = np.random.default_rng(0).standard_normal(out.shape).astype(dtype)
    np.testing.assert_allclose(
        numba_jit.maxpool_backward(grad, arg, x.shape, size, stride),
        numpy_ref.maxpool_backward(grad, arg_ref, x.shape, size, stride),
        rtol=1e-6,
        atol=1e-6,
    )


def test_maxpool_ties_pick_the_first_maximum(backend):
    x = np.ones((1, 1, 2, 2))
    _, argmax = kernels.maxpool_forward(x, 2, 2)
    assert argmax[0, 0, 0, 0] == 0


def test_backend_choice():
    assert kernels.get_backend() in kernels.available_backends()
    with pytest.raises(ValueError, match="unknown NPCNN_BACKEND"):
        kernels.set_backend("cuda")
    previous = kernels.get_backend()
    try:
        assert kernels.set_backend("numpy") == "numpy"
        assert kernels.get_backend() == "numpy"
        assert kernels.set_backend("auto") == ("numba" if HAVE_NUMBA else "numpy")
    finally:
        kernels.set_backend(previous)
