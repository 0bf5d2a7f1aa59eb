"""Optimiser updates: Adam's step on one parameter array, in place, in one pass over memory."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import JIT, run


@njit(parallel=True, **JIT)
def _adam_update(w, g, m, v, b1, one_minus_b1, b2, one_minus_b2, step_size, eps_hat, keep):
    for i in prange(w.size):
        mi = b1 * m[i] + one_minus_b1 * g[i]
        vi = b2 * v[i] + one_minus_b2 * (g[i] * g[i])
        m[i] = mi
        v[i] = vi
        w[i] = w[i] * keep - step_size * mi / (np.sqrt(vi) + eps_hat)


def adam_update(
    w: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    beta1: float,
    beta2: float,
    step_size: float,
    eps_hat: float,
    decay: float,
) -> None:
    """One Adam step in place, in one pass over memory (see ``numpy_ref.adam_update``)."""
    t = w.dtype.type
    constants = (beta1, 1 - beta1, beta2, 1 - beta2, step_size, eps_hat, 1 - decay)
    flat_g = np.ascontiguousarray(g).reshape(-1)
    flat = (w.reshape(-1), flat_g, m.reshape(-1), v.reshape(-1))
    run(_adam_update, w.size, *flat, *map(t, constants))
