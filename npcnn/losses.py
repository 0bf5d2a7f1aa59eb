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

from collections.abc import Sequence

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


class CTCLoss:
    """Connectionist temporal classification (Graves et al., 2006): the loss of a label *sequence*
    given one score vector per time step, when nobody says which steps belong to which label.

    ``logits`` ``(N, T, C)``: at each of ``T`` steps, scores for ``C`` classes, one of which is
    the ``blank`` ("no label here").  An *alignment* picks one class per step; it reads as the
    label sequence left after merging repeats and removing blanks (``a a - b - b`` reads ``a b
    b``).  ``P(labels | x)`` is the sum over every alignment reading ``labels`` of the product of
    its steps' softmax probabilities, and the loss is its negative log, averaged over the batch.

    The sum is computed by dynamic programming over the *extended* sequence ``l'`` = the labels
    with a blank before, between and after them (length ``S = 2L + 1``).  With ``y_t(k)`` the
    probability of class ``k`` at step ``t``, the forward variable ``alpha_t(s)`` (all alignment
    prefixes ending at step ``t`` in state ``s``) is::

        alpha_0(0) = y_0(blank),  alpha_0(1) = y_0(l'_1)
        alpha_t(s) = y_t(l'_s) [alpha_{t-1}(s) + alpha_{t-1}(s-1) + skip_s alpha_{t-1}(s-2)]

    where ``skip_s`` allows jumping over a blank only between two *different* labels (between
    two equal labels the blank is what separates them).  The backward variable ``beta_t(s)``
    is the same from the end, ``P = alpha_{T-1}(S-1) + alpha_{T-1}(S-2)``, and for any ``t``,
    ``alpha_t(s) beta_t(s) / y_t(l'_s)`` is the probability of the alignments passing through
    state ``s`` at step ``t``.  The gradient of ``-log P`` with respect to the logits is then::

        dL/dz_t(k) = y_t(k) - (1 / P) sum_{s: l'_s = k} alpha_t(s) beta_t(s) / y_t(l'_s)

    Everything is computed in log space (``logaddexp``), in float64, so long sequences of small
    probabilities never underflow.  Sequences of the batch may have different ``lengths`` (steps
    at and after a sequence's length are ignored: their gradient is zero).
    """

    def __init__(self, blank: int) -> None:
        self.blank = blank

    @staticmethod
    def steps_needed(labels: Sequence[object]) -> int:
        """The fewest steps an alignment of ``labels`` takes: one per label, and a blank between
        two equal labels."""
        return len(labels) + sum(a == b for a, b in zip(labels, labels[1:], strict=False))

    def _extended(self, labels: list[list[int]], num_classes: int) -> np.ndarray:
        longest = max((len(seq) for seq in labels), default=0)
        extended = np.full((len(labels), 2 * longest + 1), self.blank, dtype=np.intp)
        for n, seq in enumerate(labels):
            if any(not 0 <= k < num_classes or k == self.blank for k in seq):
                raise ConfigError(f"labels must be classes 0..{num_classes - 1} except the blank")
            extended[n, 1 : 2 * len(seq) : 2] = seq
        return extended

    def forward(
        self,
        logits: np.ndarray,
        labels: list[list[int]],
        lengths: np.ndarray | None = None,
    ) -> float:
        """The mean of ``-log P(labels[n] | logits[n])`` over the batch; remembers what
        ``backward`` needs."""
        if logits.ndim != 3 or len(labels) != logits.shape[0]:
            raise ShapeError("logits must be (N, T, C) with one label sequence per row")
        n_seq, steps, num_classes = logits.shape
        lengths = np.full(n_seq, steps) if lengths is None else np.asarray(lengths, dtype=np.intp)
        labels = [list(map(int, seq)) for seq in labels]
        for seq, length in zip(labels, lengths, strict=True):
            needed = self.steps_needed(seq)
            if not 1 <= length <= steps or needed > length:
                raise ShapeError(
                    f"a sequence of {len(seq)} labels ({needed - len(seq)} repeated) needs at "
                    f"least {needed} steps, got {length}"
                )
        extended = self._extended(labels, num_classes)
        states = extended.shape[1]
        log_y = log_softmax(logits.astype(np.float64))
        rows = np.arange(n_seq)
        # emit[n, t, s] = log y_t(l'_s) of sequence n
        emit = log_y[rows[:, None, None], np.arange(steps)[None, :, None], extended[:, None, :]]
        skip = np.zeros((n_seq, states), dtype=bool)
        skip[:, 2:] = (extended[:, 2:] != self.blank) & (extended[:, 2:] != extended[:, :-2])
        ends = np.array([2 * len(seq) for seq in labels])  # the last state of each sequence

        def shift(a: np.ndarray, by: int) -> np.ndarray:
            out = np.full_like(a, -np.inf)
            if by > 0:
                out[:, by:] = a[:, :-by]
            else:
                out[:, :by] = a[:, -by:]
            return out

        alpha = np.full((n_seq, steps, states), -np.inf)
        alpha[:, 0, 0] = emit[:, 0, 0]
        if states > 1:
            alpha[:, 0, 1] = emit[:, 0, 1]
        for t in range(1, steps):
            a = alpha[:, t - 1]
            two_back = np.where(skip, shift(a, 2), -np.inf)
            alpha[:, t] = np.logaddexp(np.logaddexp(a, shift(a, 1)), two_back) + emit[:, t]
        beta = np.full((n_seq, steps, states), -np.inf)
        final = np.full((n_seq, states), False)  # where an alignment may end
        final[rows, ends] = True
        final[rows, np.maximum(ends - 1, 0)] = True
        skip_from = shift(skip.astype(np.float64), -2) > 0  # s -> s + 2 allowed
        for t in range(steps - 1, -1, -1):
            if t < steps - 1:
                b = beta[:, t + 1]
                two_on = np.where(skip_from, shift(b, -2), -np.inf)
                beta[:, t] = np.logaddexp(np.logaddexp(b, shift(b, -1)), two_on) + emit[:, t]
            start = final & (t == lengths - 1)[:, None]
            beta[:, t] = np.where(start, emit[:, t], beta[:, t])
        last = alpha[rows, lengths - 1]  # (N, S): each sequence's last step
        log_p = np.logaddexp.reduce(np.where(final, last, -np.inf), axis=1)
        self._cache = (log_y, alpha, beta, emit, extended, log_p, lengths)
        return float(-log_p.mean())

    def log_probability(self) -> np.ndarray:
        """``log P(labels[n] | logits[n])`` for each sequence of the last ``forward``."""
        return self._cache[5].copy()

    def backward(self) -> np.ndarray:
        """dL/dlogits ``(N, T, C)`` of the mean loss (see the class docstring)."""
        log_y, alpha, beta, emit, extended, log_p, lengths = self._cache
        n_seq, steps, _ = log_y.shape
        through = np.exp(alpha + beta - emit - log_p[:, None, None])  # (N, T, S)
        occupancy = np.zeros_like(log_y)
        rows = np.arange(n_seq)
        for s in range(extended.shape[1]):
            occupancy[rows, :, extended[:, s]] += through[:, :, s]
        grad = np.exp(log_y) - occupancy
        grad[np.arange(steps)[None, :] >= lengths[:, None]] = 0.0
        return grad / n_seq

    __call__ = forward
