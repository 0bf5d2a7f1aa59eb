"""Optimisers (Adam, SGD with momentum) and learning-rate schedules.

An optimiser updates a list of parameter arrays in place from their gradients:
``step(params, grads)`` with both lists in the same order.  Its per-parameter state (moments)
is kept in lists of arrays, which ``state_dict``/``load_state_dict`` save and restore, so a
resumed training run continues exactly.

A schedule is any callable ``schedule(step) -> learning rate``; ``Sequential.fit`` calls it before
every update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from . import kernels


class Optimizer:
    """Shared bookkeeping: the learning rate, the step counter, save/restore of the state."""

    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        self.lr = lr
        self.t = 0  # number of updates done
        self.state: dict[str, list[np.ndarray]] = {name: [] for name in self.state_names}

    def _ensure_state(self, params: Sequence[np.ndarray]) -> None:
        for name in self.state_names:
            if len(self.state[name]) != len(params):
                self.state[name] = [np.zeros_like(p) for p in params]

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that capture the optimiser completely (for checkpoints)."""
        out: dict[str, np.ndarray] = {"t": np.array(self.t), "lr": np.array(self.lr)}
        for name, arrays in self.state.items():
            for i, a in enumerate(arrays):
                out[f"{name}.{i}"] = a
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        self.lr = float(state["lr"])
        for name in self.state_names:
            count = sum(1 for key in state if key.startswith(name + "."))
            self.state[name] = [np.array(state[f"{name}.{i}"]) for i in range(count)]


class SGD(Optimizer):
    """Stochastic gradient descent with (optionally Nesterov) momentum and L2 weight decay::

    v <- momentum * v - lr * (g + weight_decay * w)        w <- w + v
    """

    state_names = ("velocity",)

    def __init__(
        self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0, nesterov=False
    ) -> None:
        super().__init__(lr)
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        self._ensure_state(params)
        self.t += 1
        for w, g, v in zip(params, grads, self.state["velocity"], strict=True):
            if self.weight_decay:
                g = g + self.weight_decay * w
            v *= self.momentum
            v -= self.lr * g
            if self.nesterov:
                w += self.momentum * v - self.lr * g
            else:
                w += v


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction and optional decoupled weight decay (AdamW)::

    m <- b1 * m + (1 - b1) * g            v <- b2 * v + (1 - b2) * g^2
    m_hat = m / (1 - b1^t)                v_hat = v / (1 - b2^t)
    w <- w - lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * w)
    """

    state_names = ("m", "v")

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        self._ensure_state(params)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # Fold both bias corrections into one step size: lr * sqrt(1 - b2^t) / (1 - b1^t).
        step_size = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        eps_hat = self.eps * math.sqrt(1 - b2**self.t)
        decay = self.lr * self.weight_decay
        for w, g, m, v in zip(params, grads, self.state["m"], self.state["v"], strict=True):
            # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= decay w + step m / (sqrt v + eps)
            kernels.adam_update(w, g, m, v, b1, b2, step_size, eps_hat, decay)


class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` updates."""

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.base_lr, self.step_size, self.gamma = base_lr, step_size, gamma

    def __call__(self, step: int) -> float:
        return self.base_lr * self.gamma ** (step // self.step_size)


class CosineLR:
    """Linear warm-up for ``warmup_steps``, then a cosine decay from ``base_lr`` to ``min_lr``
    at ``total_steps``::

        lr(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi * progress)) / 2
    """

    def __init__(
        self, base_lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0
    ) -> None:
        self.base_lr, self.total_steps = base_lr, total_steps
        self.warmup_steps, self.min_lr = warmup_steps, min_lr

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


class OneCycleLR:
    """The one-cycle policy (Smith, 2018): warm up from ``max_lr / div`` to ``max_lr`` over the
    first ``pct_start`` of training, then anneal with a cosine to ``max_lr / final_div``."""

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.25,
        div: float = 25.0,
        final_div: float = 1e3,
    ) -> None:
        self.max_lr, self.total_steps, self.pct_start = max_lr, total_steps, pct_start
        self.div, self.final_div = div, final_div

    def __call__(self, step: int) -> float:
        up = max(int(self.total_steps * self.pct_start), 1)
        lo, hi, end = self.max_lr / self.div, self.max_lr, self.max_lr / self.final_div
        if step < up:
            return lo + (hi - lo) * 0.5 * (1 - math.cos(math.pi * step / up))
        progress = min((step - up) / max(self.total_steps - up, 1), 1.0)
        return end + (hi - end) * 0.5 * (1 + math.cos(math.pi * progress))


SCHEDULES = ("onecycle", "cosine", "step", "constant")


def schedule_named(name: str, lr: float, total_steps: int) -> Callable[[int], float] | None:
    """The schedule ``name`` (one of ``SCHEDULES``) for ``total_steps`` updates peaking at ``lr``.

    ``onecycle``: warm up over the first 20%, then cosine-anneal (``OneCycleLR``); ``cosine``:
    from ``lr`` to 0 after a short warm-up; ``step``: ``lr`` for the first half, then x0.1 every
    quarter (x0.1 at 50%, x0.01 at 75%); ``constant``: None (the optimiser keeps ``lr``).
    """
    if name == "onecycle":
        return OneCycleLR(lr, total_steps, pct_start=0.2)
    if name == "cosine":
        return CosineLR(lr, total_steps, warmup_steps=min(200, total_steps // 10))
    if name == "step":
        quarter = max(total_steps // 4, 1)
        return lambda step: StepLR(lr, quarter, 0.1)(max(step - total_steps // 4, 0))
    if name == "constant":
        return None
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
