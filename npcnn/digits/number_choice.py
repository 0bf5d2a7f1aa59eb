"""Which reading of a number to trust when the two readers disagree: a small learned chooser.

The app reads a number two ways: the number reader's sliding window (``number_windows``) and
recognition-driven segmentation (``numbers``).  Each is right where the other fails - the windows
on touching and overlapping digits, segmentation on digits that stand apart - and on the
development set a reading that always took the right one of the two would be right about 96% of
the time, against 93% for either alone.  The windows' own confidence is a poor judge of which to
take, so when the windows are unsure and the two disagree, this module decides with a logistic
regression on what both readings say about themselves and how the other network reads each of
them - the digit model the windows' digits, the number reader segmentation's (``FEATURES``)::

    P(segmentation is the right one) = sigmoid(b + sum_i w_i (x_i - mean_i) / scale_i)

fitted by ``tune_number_chooser.py`` on development number pictures (never the test set) where
the two readings differ and exactly one is right, and saved as JSON beside the weights
(``CHOOSER_FILE``), with the versions of the networks it was fitted for.

The fitting is Newton's method on the L2-regularised log-loss (iteratively reweighted least
squares): with ``p = sigmoid(Z w)``, the gradient is ``Z^T (p - y) / n + lambda w`` and the Hessian
``Z^T diag(p (1 - p)) Z / n + lambda I``; a handful of steps reach the optimum, which is unique
because the loss is convex.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from npcnn.digits.numbers import NumberReading
from npcnn.errors import ModelFileError

CHOOSER_FILE = "number_chooser.json"  # beside the digit model's weights
# The windows' reading is kept without a second look when its confidence (the product of its
# digits' probabilities) is at least WINDOW_TRUST and each of its digits' probability at least
# DIGIT_GATE; otherwise segmentation reads the picture too.  Without a chooser only WINDOW_TRUST
# counts (and the more confident reading wins): the rule tuned before the chooser.
WINDOW_TRUST = 0.5
DIGIT_GATE = 0.9
# The chooser is fitted on the pictures whose windows' confidence is under FIT_GATE: more of them
# than the app asks it about (about 70% of development pictures against 25%), and the fit is
# better for it (development seeds 1 and 7: 93.83% and 94.50% exact against 93.58% and 94.25%)
FIT_GATE = 0.9
NOT_A_DIGIT = 10

FEATURES = (
    "log_windows_confidence",  # log of the product of the windows' digit probabilities
    "log_segments_confidence",  # the same for segmentation's reading
    "length_difference",  # digits read by the windows minus digits read by segmentation
    "digit_model_log_probability",  # sum over the windows' digits of log P(that digit) given by
    # the digit model to each digit's own crop, framed alone
    "digit_model_refusal",  # the largest P(not a digit) of the digit model on those crops
    "digit_model_disagreement",  # share of the windows' digits the digit model reads otherwise
    "segments_refusal",  # the largest P(not a digit) among segmentation's digits
    "windows_widest_box",  # the widest width / height of the windows' digit boxes
    "segments_widest_box",  # the same for segmentation's boxes
    "windows_no_digit",  # the largest P(no digit) of the reader at the windows' digits
    "windows_trusted",  # 1 when the windows' confidence is at least 0.5 (the old rule's limit)
    "reader_log_probability",  # sum over segmentation's digits of log P(that digit) given by the
    # number reader to a window centred on each of them
    "reader_no_digit",  # the largest P(no digit) of the reader at segmentation's digits
)


def needs_second_look(by_windows: NumberReading) -> bool:
    """Whether the app should also read the picture by segmentation and let the chooser decide:
    the windows' reading is unsure as a whole, or of one of its digits."""
    least = min(float(d.probabilities[d.digit]) for d in by_windows.digits)
    return by_windows.confidence < WINDOW_TRUST or least < DIGIT_GATE


def _log(p: float) -> float:
    return math.log(max(p, 1e-9))


def _widest(boxes: list[tuple[int, int, int, int]]) -> float:
    return max(((x1 - x0) / max(y1 - y0, 1) for x0, y0, x1, y1 in boxes), default=0.0)


def reading_features(
    by_windows: NumberReading,
    by_segments: NumberReading | None,
    digit_model_probabilities: np.ndarray,
    reader_probabilities: np.ndarray | None,
) -> np.ndarray:
    """``FEATURES`` of one picture, float64 ``(len(FEATURES),)``.

    Each reading is also read by the other network: ``digit_model_probabilities`` (D, 11) are
    the digit model's probabilities for the image of each of the windows' D digits
    (``NumberDigit.image``), ``reader_probabilities`` (S, 11) the number reader's for a window
    centred on each of segmentation's S digits (``number_windows.windows_at_boxes``).
    ``by_segments`` and ``reader_probabilities`` are None when segmentation found nothing to
    read."""
    windows_digits = [d.digit for d in by_windows.digits]
    dm = np.asarray(digit_model_probabilities, dtype=np.float64)
    reader = np.array([d.probabilities for d in by_windows.digits], dtype=np.float64)
    if by_segments is None or not by_segments.digits or reader_probabilities is None:
        segments_length, segments_confidence, segments_refusal, segments_boxes = 0, 0.0, 0.0, []
        reader_log_probability, reader_no_digit = _log(0.0), 1.0
    else:
        segments_length = len(by_segments.digits)
        segments_confidence = by_segments.confidence
        segments_refusal = max(float(d.probabilities[NOT_A_DIGIT]) for d in by_segments.digits)
        segments_boxes = [d.box for d in by_segments.digits]
        by_reader = np.asarray(reader_probabilities, dtype=np.float64)
        reader_log_probability = sum(
            _log(by_reader[k, d.digit]) for k, d in enumerate(by_segments.digits)
        )
        reader_no_digit = float(by_reader[:, NOT_A_DIGIT].max())
    return np.array(
        [
            _log(by_windows.confidence),
            _log(segments_confidence),
            len(windows_digits) - segments_length,
            sum(_log(dm[k, d]) for k, d in enumerate(windows_digits)),
            dm[:, NOT_A_DIGIT].max(),
            1.0 - float(np.mean(dm[:, :NOT_A_DIGIT].argmax(axis=1) == windows_digits)),
            segments_refusal,
            _widest([d.box for d in by_windows.digits]),
            _widest(segments_boxes),
            reader[:, NOT_A_DIGIT].max(),
            float(by_windows.confidence >= 0.5),
            reader_log_probability,
            reader_no_digit,
        ]
    )


@dataclass(frozen=True)
class Chooser:
    """A fitted chooser: standardisation (``mean``, ``scale``), ``weights`` and ``bias`` of the
    logistic regression over ``features``, and the versions of the digit model and number reader
    it was fitted for (``fitted_for``)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    fitted_for: dict[str, str]

    def probability_segments_right(self, x: np.ndarray) -> float:
        """P(segmentation's reading is the right one | features ``x``)."""
        z = (np.asarray(x, dtype=np.float64) - np.array(self.mean)) / np.array(self.scale)
        logit = float(z @ np.array(self.weights) + self.bias)
        return 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0

    def prefers_segments(self, x: np.ndarray) -> bool:
        """Whether to take segmentation's reading rather than the windows'."""
        return self.probability_segments_right(x) > 0.5

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Chooser:
        """Read a chooser saved by ``save``; a missing, malformed or mismatched file raises
        ``ModelFileError``."""
        try:
            data = json.loads(Path(path).read_text())
            chooser = cls(
                features=tuple(data["features"]),
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
                weights=tuple(float(v) for v in data["weights"]),
                bias=float(data["bias"]),
                fitted_for={str(k): str(v) for k, v in data["fitted_for"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ModelFileError(f"cannot read the number chooser {path}: {error}") from None
        if chooser.features != FEATURES:
            raise ModelFileError(
                f"the number chooser {path} was fitted on other features: {chooser.features}"
            )
        sizes = {len(chooser.mean), len(chooser.scale), len(chooser.weights)}
        if sizes != {len(FEATURES)} or not all(s > 0 for s in chooser.scale):
            raise ModelFileError(f"the number chooser {path} is malformed")
        return chooser


def fit_chooser(
    x: np.ndarray, segments_right: np.ndarray, fitted_for: dict[str, str], l2: float = 0.01
) -> Chooser:
    """Fit the logistic regression by Newton's method (see the module's docstring).

    ``x`` (n, len(FEATURES)): the features of pictures where the readings differ and exactly one
    is right; ``segments_right`` (n,): 1 where segmentation's is the right one."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(segments_right, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need (n >= 2, {len(FEATURES)}) features and n labels, got {x.shape}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = l2 * np.eye(z.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -700, 700)))
        gradient = z.T @ (p - y) / len(y) + penalty @ w
        hessian = (z * (p * (1 - p))[:, None]).T @ z / len(y) + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return Chooser(
        FEATURES,
        tuple(mean.tolist()),
        tuple(scale.tolist()),
        tuple(w[:-1].tolist()),
        float(w[-1]),
        dict(fitted_for),
    )
