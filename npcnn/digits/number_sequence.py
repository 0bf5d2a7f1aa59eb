"""Reading a number's windows as one sequence: a small network over the number readers' views of
every window, trained with CTC on whole numbers.

``number_windows.decode`` turns each window's own opinion into digits with fixed levels (a run of
windows sure that a digit is centred there is one digit).  Where digits overlap, that fails in a
typical way: a "1" drawn through its neighbour gets one or two windows that are only fairly sure,
and it is dropped.  Here a second network, the *sequence head*, reads every window together with
its neighbours and says per window which digit is there, or "blank" (class 10) - and it learns
*where* to say so by itself: it is trained with the CTC loss (``npcnn.losses.CTCLoss``) on the
true digit strings alone, with no position given.

1. **Window features** (``window_features``).  The windows are cut as the number reader cuts
   them (``number_windows.read_line``).  Each of the two readers gives, for each window, its last
   hidden layer (the output of its last ReLU: 128 values) and its log-probabilities (11): ``F`` =
   278 features per window.
2. **Context** (``in_context``).  The head's input for window ``k`` is the features of windows
   ``k - CONTEXT .. k + CONTEXT`` side by side (beyond the line's ends: the features of a window
   without ink).
3. **The head**: ``Dense(HIDDEN) ReLU Dense(HIDDEN) ReLU Dense(11)`` per window.  The features'
   means and scales over the training windows are folded into the first layer when it is saved
   (``fold_standardisation``): ``W (x - m) / s + b = (W / s) x + (b - W m / s)``.
4. **Best path** (``decode``).  The most probable class per window; consecutive windows of the
   same digit are one digit, blanks separate digits (two equal digits need a blank between
   them).  A digit's confidence is its highest probability among its windows.

Trained by ``train_number_sequence.py`` on the project's own number pictures (MNIST training
digits outside the validation split, and synthetic ones) with seeds of their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from npcnn.digits.number_windows import NOT_A_DIGIT, WindowDigit
from npcnn.layers import Dense, Dropout, Layer, ReLU
from npcnn.losses import log_softmax, softmax
from npcnn.model import Sequential

CONTEXT = 4  # windows either side seen with each window (0.4 line heights)
HIDDEN = 256


def head_layers(dropout: float = 0.2) -> list[Layer]:
    """The sequence head: two hidden layers per window (its context stacked), 11 outputs."""
    return [
        Dense(HIDDEN), ReLU(), Dropout(dropout),
        Dense(HIDDEN), ReLU(),
        Dense(NOT_A_DIGIT + 1),
    ]  # fmt: skip


def window_features(readers: Sequence[Sequential], windows: np.ndarray) -> np.ndarray:
    """``(K, F)`` float32: each reader's last hidden layer and log-probabilities for each of the
    ``windows`` ``(K, 1, 28, width)``, side by side."""
    parts = []
    for reader in readers:
        last_relu = max(i for i, layer in enumerate(reader.layers) if isinstance(layer, ReLU))
        logits, hidden = reader.logits_and_features(windows, last_relu)
        parts += [hidden.reshape(len(windows), -1), log_softmax(logits)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def empty_window_features(readers: Sequence[Sequential], width: int) -> np.ndarray:
    """``(F,)``: the features of a window without ink (28 x ``width`` zeros), which stand for
    the windows that are not read and for those beyond a line's ends."""
    return window_features(readers, np.zeros((1, 1, 28, width), np.float32))[0]


def line_features(
    readers: Sequence[Sequential], windows: np.ndarray, kept: np.ndarray, empty: np.ndarray
) -> np.ndarray:
    """``(K, F)`` features of a line's ``windows`` ``(K, 28, width)``: ``window_features`` of
    the ``kept`` ones (ink near their centre), read in one batch; ``empty`` (the features of a
    window without ink) for the others, which are never read."""
    features = np.repeat(empty[None], len(windows), axis=0)
    if kept.any():
        features[kept] = window_features(readers, windows[kept][:, None])
    return features


def in_context(
    sequences: Sequence[np.ndarray], empty: np.ndarray, context: int = CONTEXT
) -> tuple[np.ndarray, int]:
    """The head's input for a batch of feature sequences ``(K_i, F)``: ``(N x T, F x (2 context
    + 1))`` rows, sequence after sequence, each padded to the longest ``T`` with ``empty`` (the
    features of a window without ink), which also stands beyond each line's ends."""
    steps = max(len(s) for s in sequences)
    padded = np.empty((len(sequences), steps + 2 * context, len(empty)), dtype=np.float32)
    padded[:] = empty
    for i, sequence in enumerate(sequences):
        padded[i, context : context + len(sequence)] = sequence
    stacked = np.concatenate([padded[:, j : j + steps] for j in range(2 * context + 1)], axis=2)
    return stacked.reshape(len(sequences) * steps, -1), steps


def head_logits(
    head: Sequential, sequences: Sequence[np.ndarray], empty: np.ndarray
) -> list[np.ndarray]:
    """The head's logits ``(K_i, 11)`` for each feature sequence, in one pass."""
    context = (head.input_shape[0] // len(empty) - 1) // 2
    x, steps = in_context(sequences, empty, context)
    logits = head.predict_logits(x, batch_size=len(x)).reshape(len(sequences), steps, -1)
    return [logits[i, : len(s)] for i, s in enumerate(sequences)]


def decode(logits: np.ndarray) -> list[WindowDigit]:
    """Step 4, best path: ``logits`` (K, 11) -> the digits read, each with its windows
    ``first .. last``, its ``window`` of highest probability, and that window's probabilities."""
    probabilities = softmax(logits.astype(np.float64))
    best = probabilities.argmax(axis=1)
    found: list[WindowDigit] = []
    k = 0
    while k < len(best):
        if best[k] == NOT_A_DIGIT:
            k += 1
            continue
        stop = k
        while stop + 1 < len(best) and best[stop + 1] == best[k]:
            stop += 1
        digit = int(best[k])
        window = k + int(probabilities[k : stop + 1, digit].argmax())
        p = probabilities[window]
        found.append(WindowDigit(digit, float(p[digit]), p, window, k, stop))
        k = stop + 1
    return found


def fold_standardisation(head: Sequential, mean: np.ndarray, scale: np.ndarray) -> None:
    """Make ``head``, trained on standardised inputs ``(x - mean) / scale`` (each of the stacked
    windows' features standardised alike), take raw features ``x``: its first layer's ``W``
    becomes ``W / scale`` and its bias ``b - (mean / scale) @ W``."""
    first = head.layers[0]
    copies = first.params["W"].shape[0] // len(mean)
    mean_all, scale_all = np.tile(mean, copies), np.tile(scale, copies)
    weights = first.params["W"].astype(np.float64)
    first.params["b"][...] = first.params["b"] - (mean_all / scale_all) @ weights
    first.params["W"][...] = weights / scale_all[:, None]
