"""Winograd's 3x3 convolution: the NumPy version equals im2col + GEMM, the Numba kernels equal
it, both backends really use it for training-sized batches, its float32 rounding error stays
within a measured bound, and its gradients are the true gradients (finite differences in
float64).  Images are channels-last ``(N, H, W, C)``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npcnn import kernels
from npcnn.errors import ConfigError
from npcnn.kernels import numpy_ref, winograd
from npcnn.layers import Conv2D

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


def by_im2col(x, grad_y, w_ext, pad, input_grad=True):
    """``(y, [dW_mat | db], dx)`` by the NumPy im2col + GEMM convolution."""
    y = numpy_ref.im2col_conv2d_forward(x, w_ext, 3, 1, pad)
    return (y, *numpy_ref.im2col_conv2d_backward(x, grad_y, w_ext, 3, 1, pad, input_grad))


@given(conv3x3_problems(), st.sampled_from([2, 4]))
def test_numpy_winograd_equals_im2col(problem, m):
    """F(2x2, 3x3) and F(4x4, 3x3) give im2col's outputs and gradients (float64)."""
    x, w_ext, grad_y, pad = problem
    y, expected_ext, expected_x = by_im2col(x, grad_y, w_ext, pad)
    assert_close(winograd.conv3x3_forward(x, w_ext, pad, m), y, 1e-12)
    grad_ext, grad_x = winograd.conv3x3_backward(x, grad_y, w_ext, pad, m)
    assert_close(grad_ext, expected_ext, 1e-12)
    assert_close(grad_x, expected_x, 1e-12)
    grad_ext, none = winograd.conv3x3_backward(x, grad_y, w_ext, pad, m, input_grad=False)
    assert_close(grad_ext, expected_ext, 1e-12)
    assert none is None


@needs_numba
@given(conv3x3_problems(), st.sampled_from([np.float32, np.float64]), st.booleans())
def test_numba_winograd_equals_numpy(problem, dtype, input_grad):
    """The Numba F(4x4, 3x3) kernels give the NumPy F(4x4, 3x3) results, in the input's dtype
    (no silent float64)."""
    from npcnn.kernels.numba import winograd as numba_winograd

    x, w_ext, grad_y, pad = (a.astype(dtype) if isinstance(a, np.ndarray) else a for a in problem)
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    y = numba_winograd.winograd_conv2d_forward(x, w_ext, pad)
    assert_close(y, winograd.conv3x3_forward(x, w_ext, pad, 4), rtol)
    grad_ext, grad_x = numba_winograd.winograd_conv2d_backward(x, grad_y, w_ext, pad, input_grad)
    expected_ext, expected_x = winograd.conv3x3_backward(x, grad_y, w_ext, pad, 4)
    assert_close(grad_ext, expected_ext, rtol)
    if input_grad:
        assert_close(grad_x, expected_x, rtol)
    else:
        assert grad_x is None


@pytest.mark.parametrize(("size", "pad"), [(14, 1), (10, 0), (7, 1)])
def test_backend_uses_winograd_for_training_batches(backend, size, pad, monkeypatch):
    """A batch of 32 images with 32 channels takes the Winograd path on either backend, and still
    gives im2col's result (float32, the dtype training uses)."""
    rng = np.random.default_rng(size)
    x = rng.standard_normal((32, size, size, 32)).astype(np.float32)
    w_ext = (0.1 * rng.standard_normal((32, 9 * 32 + 1))).astype(np.float32)
    assert winograd.use_winograd(32, 32, 32, 3, 1)
    assert not winograd.use_winograd(1, 32, 32, 3, 1)  # one drawing: im2col
    assert not winograd.use_winograd(32, 32, 32, 3, 2)  # strided: im2col
    assert not winograd.use_winograd(32, 1, 32, 3, 1)  # a first layer: not worth it
    calls = []
    original = winograd.filter_transform
    monkeypatch.setattr(winograd, "filter_transform", lambda *a: calls.append(a) or original(*a))
    if backend == "numba":
        from npcnn.kernels.numba import winograd as numba_winograd

        monkeypatch.setattr(numba_winograd, "filter_transform", winograd.filter_transform)
    y = kernels.conv2d_forward(x, w_ext, 3, 1, pad)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    grad_ext, grad_x = kernels.conv2d_backward(x, grad_y, w_ext, 3, 1, pad)
    assert calls, "the Winograd path was not taken"
    expected = by_im2col(x, grad_y, w_ext, pad)
    for actual, wanted in zip((y, grad_ext, grad_x), expected, strict=True):
        assert_close(actual, wanted, 2e-5)


def realistic_problem(n: int, size: int, c: int, f: int, seed: int = 0):
    """Unit-normal images, He-initialised filters (as ``Conv2D`` makes them), small biases and
    unit-normal output gradients: what a convolution sees in training."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, size, size, c))
    filters = rng.standard_normal((f, 9 * c)) * np.sqrt(2 / (9 * c))
    w_ext = np.concatenate([filters, 0.1 * rng.standard_normal((f, 1))], axis=1)
    grad_y = rng.standard_normal((n, size, size, f))
    return x, w_ext, grad_y


F4_FLOAT32_BOUND = 2e-5  # measured 3e-6 to 7e-6 (im2col's own float32 error: 2e-7 to 8e-7)


@pytest.mark.parametrize(("size", "c", "f"), [(28, 32, 32), (14, 64, 64)])
def test_f4_float32_error_is_measured_and_bounded(backend, size, c, f):
    """F(4x4, 3x3) in float32 against im2col in float64, for the shapes of the reference models:
    the largest error of the output and of both gradients, relative to the largest value, stays
    below ``F4_FLOAT32_BOUND`` (and within 30x of im2col's own float32 error)."""
    x, w_ext, grad_y = realistic_problem(32, size, c, f)
    assert winograd.use_winograd(32, c, f, 3, 1)
    exact = by_im2col(x, grad_y, w_ext, 1)
    x32, w32, g32 = (a.astype(np.float32) for a in (x, w_ext, grad_y))
    y = kernels.conv2d_forward(x32, w32, 3, 1, 1)
    winograd_f32 = (y, *kernels.conv2d_backward(x32, g32, w32, 3, 1, 1))
    im2col_f32 = by_im2col(x32, g32, w32, 1)
    for name, actual, im2col, wanted in zip(
        ("y", "dW", "dx"), winograd_f32, im2col_f32, exact, strict=True
    ):
        scale = np.abs(wanted).max()
        error = np.abs(actual - wanted).max() / scale
        baseline = np.abs(im2col - wanted).max() / scale
        assert error < F4_FLOAT32_BOUND, (name, error)
        assert error < 30 * baseline, (name, error, baseline)


def test_winograd_gradients_match_finite_differences(backend):
    """Directional derivatives of L = <conv(x, W), R> along random directions, in float64, on the
    Winograd path of the active backend: (L(p + e d) - L(p - e d)) / 2e must equal <grad, d> for
    the weights (and bias) and for x."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 9, 9, 32))
    w_ext = 0.1 * rng.standard_normal((32, 9 * 32 + 1))
    pad = 1
    assert winograd.use_winograd(32, 32, 32, 3, 1)
    r = rng.standard_normal((32, 9, 9, 32))

    def loss(x_: np.ndarray, w_: np.ndarray) -> float:
        return float(np.vdot(kernels.conv2d_forward(x_, w_, 3, 1, pad), r))

    grad_ext, grad_x = kernels.conv2d_backward(x, r, w_ext, 3, 1, pad)
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


def test_filter_transform_is_g_g_gt():
    """The Kronecker form equals the textbook ``G g G^T`` filter by filter."""
    rng = np.random.default_rng(2)
    w_ext = rng.standard_normal((3, 9 * 2 + 1))
    for m in (2, 4):
        _, g_matrix, _ = winograd.matrices(m, np.float64)
        u = winograd.filter_transform(w_ext, m)  # (a*a, C, F)
        a = m + 2
        for f in range(3):
            for c in range(2):
                g = w_ext[f, :-1].reshape(3, 3, 2)[:, :, c]
                np.testing.assert_allclose(u[:, c, f].reshape(a, a), g_matrix @ g @ g_matrix.T)


def test_backward_reuses_the_transformed_input_kept_by_forward():
    """With ``saved``, forward keeps V and backward uses it (not a recomputed one): the gradients
    equal those computed without it, and a V changed in ``saved`` changes the filter gradient."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 9, 9, 3))
    w_ext = rng.standard_normal((4, 9 * 3 + 1))
    grad_y = rng.standard_normal((2, 9, 9, 4))
    saved: dict[str, list[np.ndarray]] = {}
    y = winograd.conv3x3_forward(x, w_ext, 1, 4, saved)
    np.testing.assert_array_equal(y, winograd.conv3x3_forward(x, w_ext, 1, 4))
    v, _ = winograd.transformed_input(x, 1, 4)
    np.testing.assert_array_equal(np.concatenate(saved["winograd_input"], axis=1), v)
    kept = winograd.conv3x3_backward(x, grad_y, w_ext, 1, 4, True, saved)
    fresh = winograd.conv3x3_backward(x, grad_y, w_ext, 1, 4, True)
    for a, b in zip(kept, fresh, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    saved["winograd_input"] = [2 * part for part in saved["winograd_input"]]
    doubled, _ = winograd.conv3x3_backward(x, grad_y, w_ext, 1, 4, True, saved)
    np.testing.assert_allclose(doubled[:, :-1], 2 * fresh[0][:, :-1])


@given(conv3x3_problems(), st.integers(1, 30), st.booleans())
def test_chunks_of_images_give_the_result_of_one_chunk(problem, chunk_tiles, keep):
    """The NumPy version steps through the batch a few images at a time (``image_chunks``):
    outputs and gradients equal those of the whole batch in one step (float64), with or without
    the transformed input kept between the passes."""
    x, w_ext, grad_y, pad = problem
    default = winograd.CHUNK_TILES
    try:
        winograd.CHUNK_TILES = 10**9  # one step
        whole = (
            winograd.conv3x3_forward(x, w_ext, pad),
            *winograd.conv3x3_backward(x, grad_y, w_ext, pad),
        )
        winograd.CHUNK_TILES = chunk_tiles  # often one image a step
        saved: dict[str, list[np.ndarray]] | None = {} if keep else None
        y = winograd.conv3x3_forward(x, w_ext, pad, 4, saved)
        chunked = y, *winograd.conv3x3_backward(x, grad_y, w_ext, pad, 4, True, saved)
    finally:
        winograd.CHUNK_TILES = default
    for a, b in zip(chunked, whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_image_chunks_cover_the_batch_in_order_and_evenly():
    for n in (1, 2, 3, 17, 128):
        for tiles_per_image in (1, 4, 9, 16, 49):
            chunks = winograd.image_chunks(n, tiles_per_image)
            assert chunks[0].start == 0 and chunks[-1].stop == n
            assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:], strict=False))
            sizes = [c.stop - c.start for c in chunks]
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
            expected = round(n * tiles_per_image / winograd.CHUNK_TILES)
            assert len(chunks) == min(n, max(1, expected))


def test_conv_layer_keeps_the_transformed_input_only_when_training(backend):
    """Training keeps V for backward (NumPy backend); prediction keeps nothing."""
    layer = Conv2D(32, 32, 3, padding="same")
    layer.build((32, 8, 8), np.random.default_rng(5))
    x = np.random.default_rng(6).standard_normal((32, 32, 8, 8)).astype(np.float32)
    layer.forward(x, training=False)
    assert layer._saved is None
    layer.forward(x, training=True)
    assert ("winograd_input" in layer._saved) == (backend == "numpy")


def test_bias_position_reaches_every_output_pixel_once():
    """A^T M A with M = e_ξ e_ξ^T at the bias position is a tile of ones: a value added there
    becomes a bias on every output pixel (what ``conv3x3_forward`` relies on)."""
    for m in (2, 4):
        _, _, ka = winograd.kronecker_matrices(m, np.float64)
        np.testing.assert_array_equal(ka[:, winograd.BIAS_POSITION[m]], np.ones(m * m))


def test_overlapping_tiles_are_summed_like_a_loop_over_offsets():
    """``_sum_overlapping_tiles`` (four grouped adds) equals adding each of the a*a tile offsets
    in turn, and leaves nothing uninitialised."""
    rng = np.random.default_rng(3)
    for m in (2, 4):
        a, n, tiles_h, tiles_w, c = m + 2, 2, 3, 4, 5
        grad_d = rng.standard_normal((a, a, n, tiles_h, tiles_w, c))
        expected = np.zeros((n, (tiles_h + 1) * m, (tiles_w + 1) * m, c))
        for i in range(a):
            for j in range(a):
                expected[:, i : i + tiles_h * m : m, j : j + tiles_w * m : m] += grad_d[i, j]
        np.testing.assert_allclose(winograd._sum_overlapping_tiles(grad_d, m), expected)


def test_unsupported_tile_size_is_a_clear_error():
    with pytest.raises(ValueError, match="use 2 or 4"):
        winograd.matrices(3, np.float32)
    with pytest.raises(ConfigError, match="use 2 or 4"):
        winograd.kronecker_matrices(3, np.float32)
