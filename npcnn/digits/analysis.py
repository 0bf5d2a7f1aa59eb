"""Look inside a trained model: what its first layer learned, what it looks at, where it fails.

    python -m npcnn.digits.analysis [--weights weights/mnist_cnn.npz] [--out docs/images]

writes these pictures (PNG) into ``--out``:

=====================  ===============================================================================
``filters.png``        the first convolution layer's filters, one small image per filter
``feature_maps.png``   one test digit and what each of those filters makes of it (the feature maps)
``saliency.png``       one test digit per class and the gradient of the predicted class's score with
                       respect to every input pixel (``model.input_gradient``): a saliency map,
                       raw and averaged over noisy copies (SmoothGrad)
``confusion_matrix.png``  how often each true digit (row) was predicted as each digit (column)
``misclassified.png``  the test digits the model gets wrong, with its answer and confidence
``training_curves.png``   loss and accuracy per epoch, when ``MODEL_CARD.json`` beside the weights
                       holds the training history (``train_model.py`` writes it); error rates on
                       a log scale
=====================  ===============================================================================

Every function that draws takes a model (or arrays) and a path, so you can call them yourself::

    from npcnn.digits.analysis import plot_filters
    plot_filters(npcnn.load("weights/mnist_cnn.npz"), "filters.png")

The figures are drawn with matplotlib's object-oriented API (``matplotlib.figure.Figure``), which
renders off-screen with the Agg backend: no window, no display needed, and the pyplot state of a
notebook you call these from is left alone.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from npcnn.digits.errors import DataError
from npcnn.errors import NpcnnError
from npcnn.io import load_model
from npcnn.layers import BatchNorm, Conv2D, Dropout, ReLU
from npcnn.model import Sequential

MNIST_SHAPE = (1, 28, 28)
PICTURES = (
    "filters.png",
    "feature_maps.png",
    "saliency.png",
    "confusion_matrix.png",
    "misclassified.png",
)
CURVES = "training_curves.png"


# --------------------------------------------------------------------------- the numbers
def as_image_batch(images: np.ndarray) -> np.ndarray:
    """Digits as the model's input: float32 ``(N, 1, 28, 28)`` in [0, 1].

    Accepts uint8 (0..255) or float (0..1) arrays shaped ``(28, 28)``, ``(N, 28, 28)`` or
    ``(N, 1, 28, 28)``.
    """
    x = np.asarray(images)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255)
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1:] != MNIST_SHAPE:
        raise NpcnnError(
            f"expected digits shaped (N, 1, 28, 28), (N, 28, 28) or (28, 28), got {x.shape}"
        )
    return x


def first_conv(model: Sequential) -> tuple[int, Conv2D]:
    """The index and the layer of the model's first ``Conv2D``; ``NpcnnError`` if it has none."""
    for index, layer in enumerate(model.layers):
        if isinstance(layer, Conv2D):
            return index, layer
    raise NpcnnError("the model has no Conv2D layer, so it has no filters or feature maps to show")


def feature_maps(model: Sequential, image: np.ndarray) -> tuple[str, np.ndarray]:
    """What the first convolution's filters make of one digit: ``(layers, maps (F, H, W))``.

    We take the output of the first ``Conv2D`` *after* the element-wise layers that follow it
    (BatchNorm, ReLU, Dropout), i.e. exactly what the next layer (pooling) sees: with a ReLU, a map
    is bright where its filter found its pattern and black where it did not.  ``layers`` names the
    layers applied, e.g. ``"conv2d → batchnorm → relu"``.
    """
    start, _ = first_conv(model)
    end = start
    while end + 1 < len(model.layers) and isinstance(
        model.layers[end + 1], (BatchNorm, ReLU, Dropout)
    ):
        end += 1
    _, maps = model.activations(as_image_batch(image)[:1])[end]
    return " → ".join(layer.name for layer in model.layers[start : end + 1]), maps[0]


def saliency_map(model: Sequential, image: np.ndarray) -> tuple[int, np.ndarray]:
    """``(predicted class, d score[predicted] / d pixel as a (28, 28) array)`` for one digit.

    The score is the logit (before softmax).  A positive value says: a little more ink on this pixel
    would raise the score of the predicted digit; a negative one: it would lower it.
    """
    x = as_image_batch(image)[:1]
    predicted = int(model.predict_logits(x).argmax(axis=1)[0])
    return predicted, model.input_gradient(x, predicted)[0, 0]


def smooth_saliency_map(
    model: Sequential,
    image: np.ndarray,
    class_index: int,
    samples: int = 256,
    noise: float = 0.2,
    seed: int = 0,
) -> np.ndarray:
    """SmoothGrad: the mean of ``d score[class_index] / d pixel`` over noisy copies of ``image``.

    A ReLU network's gradient jumps from pixel to pixel (every ReLU and max-pool switches on or
    off), so a single saliency map looks speckled.  Averaging the gradients of ``samples`` copies
    with Gaussian noise (standard deviation ``noise``) added keeps what they agree on
    (Smilkov et al., 2017).  Returns a (28, 28) array.
    """
    x = as_image_batch(image)[:1]
    rng = np.random.default_rng(seed)
    noisy = x + rng.normal(0.0, noise, size=(samples, *x.shape[1:])).astype(np.float32)
    return model.input_gradient(noisy, class_index).mean(axis=0)[0]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int = 10) -> np.ndarray:
    """``m[i, j]`` = how many examples of true class ``i`` were predicted as class ``j``."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise NpcnnError(
            f"need two label vectors of one length, got {y_true.shape}, {y_pred.shape}"
        )
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def first_of_each_class(y: np.ndarray, classes: int = 10) -> list[int]:
    """The index of the first example of each class that occurs in ``y``, in class order."""
    y = np.asarray(y)
    return [int(np.flatnonzero(y == c)[0]) for c in range(classes) if (y == c).any()]


# --------------------------------------------------------------------------- the pictures
def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure that renders off-screen (Agg), without touching pyplot."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is in requirements.txt
        raise NpcnnError(
            "npcnn.digits.analysis draws with matplotlib: pip install matplotlib"
        ) from None
    return Figure(figsize=(width, height))


def _save(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _grid(count: int, columns: int) -> tuple[int, int]:
    columns = max(1, min(columns, count))
    return math.ceil(count / columns), columns


def _off(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def plot_filters(model: Sequential, path: str | Path) -> Path:
    """The first convolution layer's filters as small images (red positive, blue negative).

    Each filter has its own colour scale, symmetric around 0 (white), so that its pattern shows
    whatever its size.  Filters over several input channels are shown as their channel mean.
    """
    _, conv = first_conv(model)
    weights = conv.params["W"].mean(axis=1)  # (F, k, k)
    rows, columns = _grid(len(weights), 8)
    fig = _figure(columns * 1.0, rows * 1.05 + 0.6)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for number, (ax, w) in enumerate(zip(axes.flat, weights, strict=False)):
        limit = float(np.abs(w).max()) or 1.0
        ax.imshow(w, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(str(number), fontsize=8, pad=2)
    k = conv.kernel_size
    fig.suptitle(
        f"{conv.name}: {len(weights)} filters of {k}x{k} weights\nred: positive, blue: negative",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.55 / fig.get_figheight())
    return _save(fig, path)


def plot_feature_maps(
    model: Sequential, image: np.ndarray, path: str | Path, label: int | None = None
) -> Path:
    """One digit (first panel) and the feature maps of the first convolution for it."""
    x = as_image_batch(image)[:1]
    name, maps = feature_maps(model, x)
    predicted = int(model.predict(x).argmax())
    rows, columns = _grid(len(maps) + 1, 9)
    fig = _figure(columns * 1.0, rows * 1.05 + 0.6)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(x[0, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    truth = "" if label is None else f"true {label}, "
    axes.flat[0].set_title(f"input\n{truth}pred {predicted}", fontsize=7, pad=2)
    top = float(maps.max()) or 1.0  # one scale for all maps: compare how strongly each fires
    for number, (ax, fmap) in enumerate(zip(axes.flat[1:], maps, strict=False)):
        ax.imshow(
            fmap, cmap="magma", vmin=min(0.0, float(maps.min())), vmax=top, interpolation="nearest"
        )
        ax.set_title(str(number), fontsize=8, pad=2)
    fig.suptitle(
        f"Feature maps of one test digit after {name} ({maps.shape[1]}x{maps.shape[2]} each)"
        "\nbright: the filter's pattern is there (one colour scale for all maps)",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.6 / fig.get_figheight())
    return _save(fig, path)


def plot_saliency(
    model: Sequential, images: np.ndarray, labels: Sequence[int], path: str | Path
) -> Path:
    """For each digit: the digit, its saliency map and its SmoothGrad map (red +, blue -)."""
    x = as_image_batch(images)
    fig = _figure(len(x) * 1.1 + 0.5, 4.6)
    axes = fig.subplots(3, len(x), squeeze=False)
    for column, (image, label) in enumerate(zip(x, labels, strict=True)):
        predicted, grad = saliency_map(model, image)
        smooth = smooth_saliency_map(model, image, predicted)
        axes[0, column].imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[0, column].set_title(f"true {label}\npred {predicted}", fontsize=8, pad=2)
        for row, values in ((1, grad), (2, smooth)):
            # Scale by the 99th percentile, not the maximum: a few extreme pixels would otherwise
            # leave the rest of the map white.
            limit = float(np.percentile(np.abs(values), 99)) or 1.0
            ax = axes[row, column]
            ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.contour(image[0], levels=[0.5], colors="black", linewidths=0.5, alpha=0.7)
        for ax in axes[:, column]:
            _off(ax)
    for row, name in enumerate(("digit", "gradient", "SmoothGrad")):
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(
        "Saliency: d score(predicted digit) / d pixel.  Red: more ink here raises the score; "
        "blue: lowers it.\nBottom: the same, averaged over 256 noisy copies of the digit "
        "(SmoothGrad); black line: the digit's outline; colours scaled per map",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.01, top=0.83, wspace=0.08, hspace=0.12)
    return _save(fig, path)


def plot_confusion_matrix(cm: np.ndarray, path: str | Path) -> Path:
    """The confusion matrix with every count written in; colour shows the errors only."""
    from matplotlib.ticker import MaxNLocator

    cm = np.asarray(cm)
    errors = cm - np.diag(np.diag(cm))
    fig = _figure(5.6, 5.0)
    ax = fig.subplots()
    image = ax.imshow(errors, cmap="Reds", vmin=0, vmax=max(1, int(errors.max())))
    threshold = 0.6 * max(1, int(errors.max()))
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if i == j:
                style = {"color": "tab:blue", "fontweight": "bold"}
            else:
                style = {"color": "white" if errors[i, j] > threshold else "black"}
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, **style)
    ax.set_xticks(range(cm.shape[1]))
    ax.set_yticks(range(cm.shape[0]))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    total = int(cm.sum())
    accuracy = np.trace(cm) / max(total, 1)
    ax.set_title(
        f"Confusion matrix: {total:,} test digits, accuracy {100 * accuracy:.2f}%\n"
        "(blue: correct; red shading: the errors)",
        fontsize=9,
    )
    bar = fig.colorbar(image, ax=ax, shrink=0.8, label="misclassified digits")
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return _save(fig, path)


def plot_misclassified(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probabilities: np.ndarray,
    path: str | Path,
    max_shown: int = 60,
) -> Path:
    """The misclassified digits (the most confident mistakes first), up to ``max_shown``."""
    x = as_image_batch(images)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    confidence = probabilities[wrong, y_pred[wrong]]
    shown = wrong[np.argsort(-confidence, kind="stable")][:max_shown]
    rows, columns = _grid(max(1, len(shown)), 10)
    fig = _figure(columns * 0.9, rows * 1.05 + 0.7)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown, strict=False):
        ax.imshow(x[i, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        p = 100 * probabilities[i, y_pred[i]]
        ax.set_title(f"{y_true[i]}→{y_pred[i]} {p:.0f}%", fontsize=8, pad=2)
    if len(wrong) == 0:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    which = "all" if len(shown) == len(wrong) else f"the {len(shown)} most confident of"
    fig.suptitle(
        f"Misclassified: {which} {len(wrong)} wrong out of {len(y_true):,} test digits\n"
        "true→predicted and the model's confidence",
        fontsize=9,
    )
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - 0.7 / fig.get_figheight(), hspace=0.3
    )
    return _save(fig, path)


def plot_training_curves(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Loss and error rate per epoch, on the (augmented) training data and the validation data.

    Both on a log scale: the error falls from tens of percent to a fraction of one, and a log axis
    shows the whole way.
    """
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    epochs = [h["epoch"] for h in history]
    fig = _figure(9.0, 3.4)
    loss_ax, error_ax = fig.subplots(1, 2)
    for key, label in (("", "training (augmented)"), ("val_", "validation")):
        if all(f"{key}loss" in h and f"{key}accuracy" in h for h in history):
            loss_ax.plot(epochs, [h[f"{key}loss"] for h in history], "o-", ms=3, label=label)
            errors = [100 * (1 - h[f"{key}accuracy"]) for h in history]
            error_ax.plot(epochs, errors, "o-", ms=3, label=label)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss", yscale="log")
    error_ax.set(xlabel="epoch", ylabel="error rate", title="Error rate (100% - accuracy)")
    error_ax.set_yscale("log")
    error_ax.yaxis.set_major_formatter(PercentFormatter(decimals=1))
    for ax in (loss_ax, error_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi=90)


def training_history(weights: str | Path) -> list[dict[str, float]] | None:
    """The per-epoch history in ``MODEL_CARD.json`` beside ``weights``, if it describes them."""
    card_path = Path(weights).with_name("MODEL_CARD.json")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict) or card.get("file") != Path(weights).name:
        return None
    history = card.get("history")
    if not isinstance(history, list) or not history:
        return None
    if not all(isinstance(h, dict) and {"epoch", "loss", "accuracy"} <= set(h) for h in history):
        return None
    return history


# --------------------------------------------------------------------------- all of it
def inspect_model(
    model: Sequential,
    x_test: np.ndarray,
    y_test: np.ndarray,
    out: str | Path,
    digit_index: int = 0,
    history: Sequence[dict[str, float]] | None = None,
) -> list[Path]:
    """Write every picture for ``model`` and the test set ``(x_test, y_test)`` into ``out``."""
    if model.input_shape != MNIST_SHAPE:
        raise NpcnnError(
            f"npcnn.digits.analysis shows MNIST models (input {MNIST_SHAPE}), not {model.input_shape}"
        )
    x = as_image_batch(x_test)
    y = np.asarray(y_test, dtype=np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise NpcnnError(
            f"need as many labels as test digits (and at least one): {len(x)}, {len(y)}"
        )
    if not 0 <= digit_index < len(x):
        raise NpcnnError(f"digit index {digit_index} is outside the {len(x)} test digits")
    out = Path(out)
    probabilities = model.predict(x, batch_size=500)
    y_pred = probabilities.argmax(axis=1)
    written = [
        plot_filters(model, out / "filters.png"),
        plot_feature_maps(model, x[digit_index], out / "feature_maps.png", int(y[digit_index])),
    ]
    examples = first_of_each_class(y)
    written.append(plot_saliency(model, x[examples], y[examples].tolist(), out / "saliency.png"))
    written.append(plot_confusion_matrix(confusion_matrix(y, y_pred), out / "confusion_matrix.png"))
    written.append(plot_misclassified(x, y, y_pred, probabilities, out / "misclassified.png"))
    if history:
        written.append(plot_training_curves(history, out / CURVES))
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m npcnn.digits.analysis``: draw the pictures of a trained model."""
    parser = argparse.ArgumentParser(
        prog="python -m npcnn.digits.analysis",
        description="Draw what a trained MNIST model learned: first-layer filters, feature maps, "
        "saliency maps, the confusion matrix and the misclassified test digits (PNG files).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--weights", default="weights/mnist_cnn.npz", help="the model file (.npz)")
    parser.add_argument("--out", default="docs/images", help="folder for the PNG files")
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N test images (default: all)"
    )
    parser.add_argument(
        "--digit", type=int, default=0, help="index of the test digit whose feature maps to show"
    )
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        model = load_model(args.weights)
        from .data import load_mnist

        _, (x_test, y_test) = load_mnist()
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
        paths = inspect_model(
            model, x_test, y_test, args.out, args.digit, training_history(args.weights)
        )
    except DataError as error:
        print(f"npcnn.digits.analysis: cannot load MNIST: {error}", file=sys.stderr)
        return 1
    except NpcnnError as error:
        print(f"npcnn.digits.analysis: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
