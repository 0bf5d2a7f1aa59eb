"""Check back-propagation against finite differences.

A backward pass is easy to get subtly wrong; a numerical derivative is slow but hard to get wrong.
For a scalar function ``f`` the central difference

    df/dx_i  ~  (f(x + eps * e_i) - f(x - eps * e_i)) / (2 * eps)

has an error of order ``eps**2``.  In float64 with ``eps = 1e-6`` it agrees with a correct analytic
gradient to about 1e-9 relative error, while a wrong one is usually off by 1e-2 or more.

To check a layer with output ``y``, we use the scalar ``L = sum(y * R)`` for a fixed random ``R``:
then ``dL/dy = R``, so ``layer.backward(R)`` must equal the numerical gradient of ``L``.

The error reported is ``max|analytic - numeric| / max(max|analytic|, max|numeric|)`` per array
(see ``relative_error``).

Example — check a layer you wrote yourself::

    errors = check_layer(MyLayer(), input_shape=(2, 3, 5, 5))
    assert max(errors.values()) < 1e-6
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import ShapeError
from .layers import Layer
from .losses import SoftmaxCrossEntropy
from .model import Sequential


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` w.r.t. ``x``, which ``f`` reads.

    ``x`` is perturbed in place, one element at a time, and restored.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)  # views of x and grad
    if not np.shares_memory(flat_x, x):
        raise ShapeError("x must be contiguous so that it can be perturbed in place")
    for i in range(flat_x.size):
        original = flat_x[i]
        flat_x[i] = original + eps
        f_plus = f()
        flat_x[i] = original - eps
        f_minus = f()
        flat_x[i] = original
        flat_grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray, zero: float = 1e-7) -> float:
    """``max|a - n| / max(max|a|, max|n|)``.

    When both gradients are below ``zero`` everywhere they agree that the gradient vanishes (as it
    does for a bias followed by BatchNorm, which subtracts it again) and the error is 0: finite
    differences of a zero gradient give round-off noise of about 1e-10, not zero.
    """
    scale = max(float(np.abs(analytic).max(initial=0)), float(np.abs(numeric).max(initial=0)))
    if scale < zero:
        return 0.0
    return float(np.abs(analytic - numeric).max()) / scale


def _fresh_randomness(layer: Layer) -> None:
    """Layers that draw random numbers (Dropout) must draw the same ones on every call."""
    if hasattr(layer, "rng"):
        layer.rng = np.random.default_rng(1234)


def check_layer(
    layer: Layer,
    input_shape: tuple[int, ...],
    training: bool = True,
    seed: int = 0,
    eps: float = 1e-6,
) -> dict[str, float]:
    """Relative errors of ``layer.backward`` for the input ``"x"`` and every parameter.

    The layer is built in float64 for inputs of ``input_shape`` (batch axis first).
    """
    rng = np.random.default_rng(seed)
    layer.build(tuple(input_shape[1:]), rng, np.float64)
    x = rng.standard_normal(input_shape)

    def output() -> np.ndarray:
        _fresh_randomness(layer)
        return layer.forward(x, training=training)

    weights = rng.standard_normal(output().shape)  # R: so that dL/dy = R

    def loss() -> float:
        return float((output() * weights).sum())

    output()
    errors = {"x": relative_error(layer.backward(weights.copy()), numerical_gradient(loss, x, eps))}
    analytic = {name: g.copy() for name, g in layer.grads.items()}
    for name, param in layer.params.items():
        errors[name] = relative_error(analytic[name], numerical_gradient(loss, param, eps))
    return errors


def check_model(
    model: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    loss_fn: SoftmaxCrossEntropy | None = None,
    training: bool = True,
    eps: float = 1e-6,
) -> dict[str, float]:
    """Relative errors of back-propagation through a whole model and its loss.

    Build the model with ``dtype=np.float64``.  Keys: ``"x"`` and each parameter's name.
    """
    loss_fn = loss_fn or SoftmaxCrossEntropy()
    x = np.array(x, dtype=np.float64)

    def loss() -> float:
        for layer in model.layers:
            _fresh_randomness(layer)
        return loss_fn.forward(model.forward(x, training=training), y)

    loss()
    grad_x = model.backward(loss_fn.backward())
    analytic = {name: g.copy() for name, _, g in model.parameters()}
    errors = {"x": relative_error(grad_x, numerical_gradient(loss, x, eps))}
    for name, param, _ in model.parameters():
        errors[name] = relative_error(analytic[name], numerical_gradient(loss, param, eps))
    return errors
