"""Softmax and cross-entropy, fused into one numerically stable loss.

For logits ``z`` (one row per example) and the true class ``y``::

    softmax(z)_k = exp(z_k) / sum_j exp(z_j)
    loss         = -log softmax(z)_y = logsumexp(z) - z_y

``exp`` of a large logit overflows, so we subtract the row maximum ``m`` first — it cancels:
``logsumexp(z) = m + log(sum_j exp(z_j - m))``.  Every ``z_j - m <= 0``, so nothing overflows and
the largest term is exactly ``exp(0) = 1``, so the log never sees zero.

The gradient of the mean loss over a batch of ``N`` has the well-known simple form
``dL/dz = (softmax(z) - onehot(y)) / N``.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, ShapeError


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax(z)`` along the last axis, computed stably (finite for logits of any size)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis; rows sum to 1; ``softmax(z + c) == softmax(z)``."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


class SoftmaxCrossEntropy:
    """Mean cross-entropy of integer labels under ``softmax(logits)``.

    ``label_smoothing`` ``s`` trains towards ``(1 - s) * onehot + s / K`` instead of the one-hot
    target, which discourages over-confident logits.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError("label_smoothing must be in [0, 1)")
        self.label_smoothing = label_smoothing

    def _targets(self, labels: np.ndarray, num_classes: int, dtype: np.dtype) -> np.ndarray:
        targets = np.zeros((labels.shape[0], num_classes), dtype=dtype)
        targets[np.arange(labels.shape[0]), labels] = 1.0
        s = self.label_smoothing
        return targets * (1.0 - s) + s / num_classes if s else targets

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """The mean loss; remembers the probabilities for ``backward``."""
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
            raise ShapeError("labels must be a vector with one integer class per row of logits")
        log_p = log_softmax(logits)
        targets = self._targets(labels, logits.shape[1], logits.dtype)
        self._cache = (np.exp(log_p), targets)
        return float(-(targets * log_p).sum() / logits.shape[0])

    def backward(self) -> np.ndarray:
        """dL/dlogits ``= (softmax - targets) / N``."""
        probs, targets = self._cache
        return (probs - targets) / probs.dtype.type(probs.shape[0])

    __call__ = forward
