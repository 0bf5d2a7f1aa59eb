"""Property tests of the kernels: im2col and col2im are adjoint, convolution equals the textbook
definition, max-pool backward conserves gradient mass, and every Numba kernel equals its NumPy
reference on random shapes.  Kernels take channels-last ``(N, H, W, C)`` images."""

from __future__ import annotations

import inspect
from types import ModuleType

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from npcnn import kernels
from npcnn.errors import ConfigError
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
    x = np.random.default_rng(seed).standard_normal((n, h, w, c))
    return x, k, stride, pad


def as_strided_copy(x: np.ndarray) -> np.ndarray:
    """The same values as a non-contiguous view (every other element of a bigger array)."""
    bigger = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), dtype=x.dtype)
    bigger[..., ::2] = x
    return bigger[..., ::2]


@given(conv_problems(), st.integers(0, 2**32 - 1))
def test_im2col_and_col2im_are_adjoint(backend, problem, seed):
    """<im2col(x), y> == <x, col2im(y)> for all x and y."""
    x, k, stride, pad = problem
    cols = kernels.im2col(x, k, k, stride, pad)
    assert cols.shape[1] == k * k * x.shape[3]
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
    x = x.transpose(0, 3, 1, 2)  # the layer takes (N, C, H, W)
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
    x = np.random.default_rng(seed).standard_normal((n, h, w, c))
    return x, size, stride


@given(pool_problems())
def test_maxpool_forward_is_the_window_maximum(backend, problem):
    x, size, stride = problem
    out, argmax = kernels.maxpool_forward(x, size, stride)
    n, oh, ow, c = out.shape
    for i in range(oh):
        for j in range(ow):
            window = x[:, i * stride : i * stride + size, j * stride : j * stride + size, :]
            np.testing.assert_array_equal(out[:, i, j, :], window.max(axis=(1, 2)))
    assert argmax.max() < size * size
    np.testing.assert_array_equal(kernels.maxpool_values(x, size, stride), out)


@given(pool_problems(), st.integers(0, 2**32 - 1))
def test_maxpool_backward_conserves_gradient_mass(backend, problem, seed):
    """Each output gradient goes to exactly one input: the sums agree, and only arg-maxes get any."""
    x, size, stride = problem
    x = x.transpose(0, 3, 1, 2)  # the layer takes (N, C, H, W)
    layer = MaxPool2D(size, stride)
    out = layer.forward(x)
    grad = np.random.default_rng(seed).random(out.shape) + 0.1  # positive, so nothing cancels
    grad_x = layer.backward(grad)
    assert grad_x.sum() == pytest.approx(grad.sum(), rel=1e-12)
    receivers = grad_x != 0
    assert receivers.sum() <= out.size
    # An input that received gradient is the maximum of some window containing it.
    assert np.isin(x[receivers], out).all()


@given(pool_problems(), st.integers(0, 2**32 - 1))
def test_maxpool_layer_predicting_gives_the_training_output_and_gradient(backend, problem, seed):
    """A prediction keeps the maxima alone (``maxpool_values``); a backward after it (as in
    ``Sequential.inspect``) finds their positions and routes the gradient as training does."""
    x, size, stride = problem
    x = x.transpose(0, 3, 1, 2)
    layer = MaxPool2D(size, stride)
    trained_out = layer.forward(x, training=True)
    grad = np.random.default_rng(seed).standard_normal(trained_out.shape)
    trained_grad = layer.backward(grad)
    np.testing.assert_array_equal(layer.forward(x, training=False), trained_out)
    np.testing.assert_array_equal(layer.backward(grad), trained_grad)


@pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")
@given(conv_problems(), st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_numba_im2col_col2im_equal_numpy(problem, strided, dtype):
    from npcnn.kernels import numba as numba_kernels

    x, k, stride, pad = problem
    x = x.astype(dtype)
    if strided:
        x = as_strided_copy(x)
    cols = numpy_ref.im2col(x, k, k, stride, pad)
    fast = numba_kernels.im2col(x, k, k, stride, pad)
    assert fast.dtype == cols.dtype == dtype
    np.testing.assert_array_equal(fast, cols)
    np.testing.assert_allclose(
        numba_kernels.col2im(cols, x.shape, k, k, stride, pad),
        numpy_ref.col2im(cols, x.shape, k, k, stride, pad),
        rtol=1e-5 if dtype == np.float32 else 1e-12,
        atol=1e-5 if dtype == np.float32 else 1e-12,
    )


@pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")
@given(pool_problems(), st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_numba_maxpool_equals_numpy(problem, strided, dtype):
    from npcnn.kernels import numba as numba_kernels

    x, size, stride = problem
    x = x.astype(dtype)
    if strided:
        x = as_strided_copy(x)
    out_ref, arg_ref = numpy_ref.maxpool_forward(x, size, stride)
    out, arg = numba_kernels.maxpool_forward(x, size, stride)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(numba_kernels.maxpool_values(x, size, stride), out_ref)
    np.testing.assert_array_equal(numpy_ref.maxpool_values(x, size, stride), out_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    grad = np.random.default_rng(0).standard_normal(out.shape).astype(dtype)
    np.testing.assert_allclose(
        numba_kernels.maxpool_backward(grad, arg, x.shape, size, stride),
        numpy_ref.maxpool_backward(grad, arg_ref, x.shape, size, stride),
        rtol=1e-6,
        atol=1e-6,
    )


@given(pool_problems(), st.integers(1, 2048), st.integers(0, 2**32 - 1))
def test_numpy_maxpool_in_chunks_of_images_equals_one_chunk(problem, budget, seed):
    """The NumPy pooling steps through the batch a few images at a time (``POOL_CHUNK_BYTES``):
    the same output, window index and gradient as in one step."""
    x, size, stride = problem
    default = numpy_ref.POOL_CHUNK_BYTES
    try:
        numpy_ref.POOL_CHUNK_BYTES = 1 << 40  # one step
        out, argmax = numpy_ref.maxpool_forward(x, size, stride)
        grad = np.random.default_rng(seed).standard_normal(out.shape)
        grad_x = numpy_ref.maxpool_backward(grad, argmax, x.shape, size, stride)
        numpy_ref.POOL_CHUNK_BYTES = budget  # often one image a step
        out_c, argmax_c = numpy_ref.maxpool_forward(x, size, stride)
        values_c = numpy_ref.maxpool_values(x, size, stride)
        grad_x_c = numpy_ref.maxpool_backward(grad, argmax, x.shape, size, stride)
    finally:
        numpy_ref.POOL_CHUNK_BYTES = default
    np.testing.assert_array_equal(out_c, out)
    np.testing.assert_array_equal(values_c, out)
    np.testing.assert_array_equal(argmax_c, argmax)
    np.testing.assert_array_equal(grad_x_c, grad_x)


def test_maxpool_ties_pick_the_first_maximum(backend):
    x = np.ones((1, 2, 2, 1))
    _, argmax = kernels.maxpool_forward(x, 2, 2)
    assert argmax[0, 0, 0, 0] == 0


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    reach=st.floats(0.0, 12.0),
)
def test_bilinear_sampling_reads_as_scipy_does_with_zeros_outside(
    backend, seed, n, height, width, reach
):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    images = rng.random((n, height, width), dtype=np.float32)
    rows = rng.uniform(-reach, height - 1 + reach, (n, 4, 5))
    cols = rng.uniform(-reach, width - 1 + reach, (n, 4, 5))
    rows[:, 0, 0], cols[:, 0, 0] = 0.0, 0.0  # the corners and edges exactly, too
    rows[:, 0, 1], cols[:, 0, 1] = height - 1, width - 1
    out = kernels.sample_bilinear(images, rows, cols)
    for i in range(n):
        expected = ndimage.map_coordinates(
            images[i], [rows[i], cols[i]], order=1, mode="grid-constant", cval=0.0
        )
        np.testing.assert_allclose(out[i], expected, atol=1e-6)


def test_bilinear_sampling_at_whole_points_returns_the_pixels_exactly(backend):
    images = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    rows, cols = np.meshgrid(np.arange(28.0), np.arange(28.0), indexing="ij")
    rows, cols = np.broadcast_to(rows, (3, 28, 28)), np.broadcast_to(cols, (3, 28, 28))
    np.testing.assert_array_equal(kernels.sample_bilinear(images, rows, cols), images)
    far = kernels.sample_bilinear(images, rows + 40, cols - 40)
    np.testing.assert_array_equal(far, np.zeros_like(images))


@pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]))
def test_numba_bilinear_sampling_equals_numpy(seed, dtype):
    from npcnn.kernels import numba as numba_kernels

    rng = np.random.default_rng(seed)
    images = rng.random((3, 7, 9)).astype(dtype)
    rows, cols = rng.uniform(-4, 11, (2, 3, 5, 6))
    rows[0, 0, :3] = [0.0, 6.0, 1e9]  # edges, and far away
    np.testing.assert_array_equal(
        numba_kernels.sample_bilinear(images, rows, cols),
        numpy_ref.sample_bilinear(images, rows, cols),
    )


def test_backend_choice():
    assert kernels.get_backend() in kernels.available_backends()
    with pytest.raises(ValueError, match="unknown NPCNN_BACKEND"):
        kernels.set_backend("cuda")
    with pytest.raises(ConfigError, match="unknown NPCNN_BACKEND"):
        kernels.set_backend("cuda")
    previous = kernels.get_backend()
    try:
        assert kernels.set_backend("numpy") == "numpy"
        assert kernels.get_backend() == "numpy"
        assert kernels.set_backend("auto") == ("numba" if HAVE_NUMBA else "numpy")
    finally:
        kernels.set_backend(previous)


# The pieces numpy_ref.im2col is built from, which the guide shows, and the im2col convolution
# that conv2d_forward/backward choose when Winograd's does not apply (with its one-channel columns):
# public, but not kernels.
REFERENCE_HELPERS = {
    "offset_rows",
    "pad_images",
    "patches_view",
    "im2col_conv2d_forward",
    "im2col_conv2d_backward",
}


def defined_functions(module: ModuleType) -> set[str]:
    """Public callables defined in ``module`` (or, for a package, in its modules)."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", "").startswith(module.__name__)
    }


@pytest.mark.parametrize("name", kernels.available_backends())
def test_every_backend_provides_the_kernel_table_with_the_same_signatures(name):
    """Each name of KERNEL_NAMES, with the reference's signature, and no other public kernel."""
    module = kernels.backend_module(name)
    for kernel in kernels.KERNEL_NAMES:
        expected = inspect.signature(getattr(numpy_ref, kernel))
        assert inspect.signature(getattr(module, kernel)) == expected, (name, kernel)
    helpers = REFERENCE_HELPERS if module is numpy_ref else set()
    assert defined_functions(module) == set(kernels.KERNEL_NAMES) | helpers
    assert len(set(kernels.KERNEL_NAMES)) == len(kernels.KERNEL_NAMES)
    if module is not numpy_ref:
        assert set(module.__all__) == set(kernels.KERNEL_NAMES)


def test_kernel_names_call_the_active_backend(backend):
    module = kernels.backend_module(backend)
    for kernel in kernels.KERNEL_NAMES:
        assert getattr(kernels, kernel) is getattr(module, kernel)


@st.composite
def tables(draw):
    """A random (samples, C) table, like BatchNorm sees, with per-column offsets and scales."""
    rows, c = draw(st.integers(2, 40)), draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offset, scale = rng.standard_normal(c) * 3, rng.random(c) * 2 + 0.1
    return rng.standard_normal((rows, c)) * scale + offset, rng


@pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")
@given(tables(), st.sampled_from([np.float32, np.float64]), st.booleans())
def test_numba_batchnorm_kernels_equal_numpy(problem, dtype, training):
    from npcnn.kernels import numba as numba_kernels

    table, rng = problem
    table = table.astype(dtype)
    c = table.shape[1]
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    mean, var = numba_kernels.column_mean_var(table)
    mean_ref, var_ref = numpy_ref.column_mean_var(table)
    assert mean.dtype == var.dtype == dtype
    np.testing.assert_allclose(mean, mean_ref, **tol)
    np.testing.assert_allclose(var, var_ref, **tol)
    gamma, beta = (rng.standard_normal(c).astype(dtype) for _ in range(2))
    inv_std = (1 / np.sqrt(var_ref + 1e-5)).astype(dtype)
    y = numba_kernels.batchnorm_forward(table, mean_ref, inv_std, gamma, beta)
    # Numba computes x * (gamma inv_std) + (beta - mean gamma inv_std): where y is near 0 those two
    # terms nearly cancel, so the rounding is relative to their size, not to y's.
    terms = max(1, float(np.abs(table * (gamma * inv_std)).max()))
    np.testing.assert_allclose(
        y,
        numpy_ref.batchnorm_forward(table, mean_ref, inv_std, gamma, beta),
        rtol=tol["rtol"],
        atol=tol["atol"] * terms,
    )
    grad = rng.standard_normal(table.shape).astype(dtype)
    fast = numba_kernels.batchnorm_backward(grad, table, mean_ref, inv_std, gamma, training)
    slow = numpy_ref.batchnorm_backward(grad, table, mean_ref, inv_std, gamma, training)
    # dx is a difference of terms that nearly cancel: compare to the size of the terms.
    x_hat = np.abs((table - mean_ref) * inv_std).max()
    scale = len(table) * np.abs(grad).max() * max(1, np.abs(gamma * inv_std).max()) * max(1, x_hat)
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol["rtol"], atol=tol["atol"] * scale)


@pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")
@given(st.integers(0, 2**32 - 1), st.sampled_from([(7,), (3, 4, 2, 2)]), st.booleans())
def test_numba_relu_and_adam_equal_numpy(seed, shape, transposed):
    from npcnn.kernels import numba as numba_kernels

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    if transposed and x.ndim == 4:  # a channels-last view, as layers pass around
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    y = numba_kernels.relu_forward(x)
    np.testing.assert_array_equal(y, numpy_ref.relu_forward(x))
    assert y.strides == x.strides  # the layout is kept
    grad = rng.standard_normal(shape).astype(np.float32)  # a different (contiguous) layout
    np.testing.assert_array_equal(
        numba_kernels.relu_backward(grad, y), numpy_ref.relu_backward(grad, y)
    )
    state = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    state[2] = np.abs(state[2])  # v >= 0
    fast, slow = [a.copy() for a in state], [a.copy() for a in state]
    args = (0.9, 0.999, 1e-3, 1e-8, 1e-4)
    numba_kernels.adam_update(fast[0], grad, fast[1], fast[2], *args)
    numpy_ref.adam_update(slow[0], grad, slow[1], slow[2], *args)
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@given(conv_problems())
def test_im2col_and_col2im_write_into_a_given_buffer(backend, problem):
    """``out=`` gives the same result as a fresh array, in the caller's buffer; im2col leaves
    columns past its own alone."""
    x, k, stride, pad = problem
    cols = kernels.im2col(x, k, k, stride, pad)
    buffer = np.full_like(cols, np.nan)
    assert kernels.im2col(x, k, k, stride, pad, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, cols)
    wider = np.full((len(cols), cols.shape[1] + 1), 7.0)  # Conv2D's extra column of ones
    kernels.im2col(x, k, k, stride, pad, out=wider)
    np.testing.assert_array_equal(wider[:, :-1], cols)
    assert (wider[:, -1] == 7.0).all()
    image = np.full_like(x, np.nan)
    assert kernels.col2im(cols, x.shape, k, k, stride, pad, out=image) is image
    np.testing.assert_allclose(image, kernels.col2im(cols, x.shape, k, k, stride, pad))


@given(conv_problems())
def test_one_channel_offset_rows_are_im2col_transposed(problem):
    """``offset_rows`` (the NumPy backend's one-channel columns) is im2col transposed, plus a row
    of ones; the convolution and its gradients built on it match im2col's per-channel path."""
    x, k, stride, pad = problem
    x = np.ascontiguousarray(x[..., :1])
    rows = numpy_ref.offset_rows(x, k, stride, pad)
    cols = numpy_ref.im2col(x, k, k, stride, pad)
    np.testing.assert_array_equal(rows[:-1], cols.T)
    assert (rows[-1] == 1).all()
    rng = np.random.default_rng(0)
    w_ext = rng.standard_normal((3, k * k + 1))
    y = numpy_ref.conv2d_forward(x, w_ext, k, stride, pad)
    np.testing.assert_allclose(y.reshape(-1, 3), cols @ w_ext[:, :-1].T + w_ext[:, -1])
    grad_y = rng.standard_normal(y.shape)
    grad_ext, _ = numpy_ref.conv2d_backward(x, grad_y, w_ext, k, stride, pad, False)
    g = grad_y.reshape(-1, 3)
    np.testing.assert_allclose(grad_ext[:, :-1], g.T @ cols, atol=1e-12)
    np.testing.assert_allclose(grad_ext[:, -1], g.sum(axis=0))


@pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")
@given(conv_problems(), st.integers(1, 5), st.sampled_from([np.float32, np.float64]), st.booleans())
@example(  # found by hypothesis: an output of 4e-4 summed from terms up to 7 (float32 rounding)
    problem=(
        np.array(
            [[[[-0.80193143, -1.324359, -0.24836162], [0.42044524, 1.13604653, 0.1097064]],
              [[-0.55264732, -0.78478036, 0.74874577], [1.63478304, 0.27276878, -1.23332866]]]]
        ),
        2, 1, 0,
    ),
    filters=2,
    dtype=np.float32,
    input_grad=False,
)  # fmt: skip
def test_numba_conv2d_equals_numpy(problem, filters, dtype, input_grad):
    """The fused Numba convolution (columns, GEMM and col2im per task) equals the NumPy one
    (to float rounding: an absolute tolerance too, as an output near 0 may be the sum of terms
    far larger than itself)."""
    from npcnn.kernels import numba as numba_kernels

    x, k, stride, pad = problem
    x = x.astype(dtype)
    rng = np.random.default_rng(0)
    w_ext = rng.standard_normal((filters, k * k * x.shape[3] + 1)).astype(dtype)
    y = numba_kernels.conv2d_forward(x, w_ext, k, stride, pad)
    expected = numpy_ref.conv2d_forward(x, w_ext, k, stride, pad)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    fast = numba_kernels.conv2d_backward(x, grad_y, w_ext, k, stride, pad, input_grad)
    slow = numpy_ref.conv2d_backward(x, grad_y, w_ext, k, stride, pad, input_grad)
    assert fast[0].dtype == dtype
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-4, atol=1e-4)
    if input_grad:
        np.testing.assert_allclose(fast[1], slow[1], rtol=1e-4, atol=1e-4)
    else:
        assert fast[1] is None and slow[1] is None


@pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")
@pytest.mark.parametrize(("k", "stride", "pad"), [(3, 1, 0), (3, 1, 1), (5, 2, 2)])
def test_numba_one_channel_convolution_of_a_batch_equals_numpy(k, stride, pad):
    """A first layer on a training-sized batch (the parallel, transposed-columns path of the Numba
    backend, with several tasks per thread) equals the NumPy one."""
    from npcnn.kernels import numba as numba_kernels

    rng = np.random.default_rng(k + pad)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    w_ext = rng.standard_normal((8, k * k + 1)).astype(np.float32)
    y = numba_kernels.conv2d_forward(x, w_ext, k, stride, pad)
    np.testing.assert_allclose(
        y, numpy_ref.conv2d_forward(x, w_ext, k, stride, pad), rtol=1e-5, atol=1e-5
    )
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    fast, no_dx = numba_kernels.conv2d_backward(x, grad_y, w_ext, k, stride, pad, False)
    slow, _ = numpy_ref.conv2d_backward(x, grad_y, w_ext, k, stride, pad, False)
    assert no_dx is None
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")
@given(
    st.integers(1, 40),
    st.integers(1, 70),
    st.integers(1, 12),
    st.sampled_from([np.float32, np.float64]),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_numba_dense_equals_numpy(n, n_in, n_out, dtype, input_grad, seed):
    """Dense forward and backward (dW by blocks of input features, dx by rows) equal NumPy's."""
    from npcnn.kernels import numba as numba_kernels

    rng = np.random.default_rng(seed)
    x, w, b, g = (
        rng.standard_normal(shape).astype(dtype)
        for shape in ((n, n_in), (n_in, n_out), (n_out,), (n, n_out))
    )
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        numba_kernels.dense_forward(x, w, b), numpy_ref.dense_forward(x, w, b), **tol
    )
    fast = numba_kernels.dense_backward(x, g, w, input_grad)
    slow = numpy_ref.dense_backward(x, g, w, input_grad)
    for a, e in zip(fast, slow, strict=True):
        if e is None:
            assert a is None
        else:
            assert a.dtype == dtype
            np.testing.assert_allclose(a, e, **tol)
