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

This module is the one home of these ideas.  ``train_model.py`` draws its evaluation pictures with
``write_evaluation_plots``, and the app's "what the network looks at" panel uses the array-level
helpers (``feature_maps_from``, ``feature_map_grid``, ``saliency_strength``, ``saliency_overlay``,
``colourise``), so the page, the guide and the training run show the same things.

The figures are drawn with matplotlib's object-oriented API (``matplotlib.figure.Figure``), which
renders off-screen with the Agg backend: no window, no display needed, and the pyplot state of a
notebook you call these from is left alone.  matplotlib is imported only to draw a figure: the
array-level helpers need NumPy alone (the app does not install matplotlib).
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

from npcnn.batching import as_float_images
from npcnn.digits.errors import DataError
from npcnn.errors import ConfigError, NpcnnError, ShapeError
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
    x = as_float_images(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1:] != MNIST_SHAPE:
        raise ShapeError(
            f"expected digits shaped (N, 1, 28, 28), (N, 28, 28) or (28, 28), got {x.shape}"
        )
    return x


def first_conv(model: Sequential) -> tuple[int, Conv2D]:
    """The index and the layer of the model's first ``Conv2D``; ``ConfigError`` if it has none."""
    for index, layer in enumerate(model.layers):
        if isinstance(layer, Conv2D):
            return index, layer
    raise ConfigError("the model has no Conv2D layer, so it has no filters or feature maps to show")


def first_conv_block(model: Sequential) -> slice:
    """The layers whose output we call the *feature maps*: the first ``Conv2D`` and the
    element-wise layers right after it (BatchNorm, ReLU, Dropout), as ``model.layers[block]``.

    Their output is exactly what the next layer (pooling) sees: with a ReLU, a map is bright where
    its filter found its pattern and black where it did not.
    """
    start, _ = first_conv(model)
    stop = start + 1
    while stop < len(model.layers) and isinstance(model.layers[stop], (BatchNorm, ReLU, Dropout)):
        stop += 1
    return slice(start, stop)


def feature_maps_from(
    model: Sequential, activations: Sequence[tuple[str, np.ndarray]]
) -> tuple[str, np.ndarray]:
    """The feature maps of the first example in ``activations`` (``model.activations(x)`` or
    ``model.inspect(x).activations``): ``(layers, maps (F, H, W))``.

    ``layers`` names the layers applied, e.g. ``"conv2d → batchnorm → relu"``.
    """
    block = first_conv_block(model)
    _, maps = activations[block.stop - 1]
    return " → ".join(layer.name for layer in model.layers[block]), maps[0]


def feature_maps(model: Sequential, image: np.ndarray) -> tuple[str, np.ndarray]:
    """What the first convolution's filters make of one digit: ``(layers, maps (F, H, W))``,
    taken after the first convolution's block (``first_conv_block``)."""
    return feature_maps_from(model, model.activations(as_image_batch(image)[:1]))


def feature_map_range(maps: np.ndarray) -> tuple[float, float]:
    """One colour scale for all maps, ``(low, high)``, so that you can compare how strongly each
    filter fires: from 0 (or the lowest value, if negative) to the highest value."""
    low, high = min(0.0, float(maps.min())), float(maps.max())
    return low, high if high > low else low + 1.0


def saliency_map(model: Sequential, image: np.ndarray) -> tuple[int, np.ndarray]:
    """``(predicted class, d score[predicted] / d pixel as a (28, 28) array)`` for one digit.

    The score is the logit (before softmax).  A positive value says: a little more ink on this pixel
    would raise the score of the predicted digit; a negative one: it would lower it.  One forward
    and one backward pass (``model.inspect``).
    """
    seen = model.inspect(as_image_batch(image)[:1])
    return int(seen.class_index[0]), seen.input_gradient[0, 0]


def saliency_strength(gradient: np.ndarray) -> np.ndarray:
    """How much each pixel matters, whichever the direction: ``|gradient| / max |gradient|``,
    in [0, 1] (all zeros when the gradient is)."""
    strength = np.abs(gradient)
    peak = float(strength.max())
    return strength / peak if peak > 0 else np.zeros_like(strength)


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


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, classes: int | None = None
) -> np.ndarray:
    """``m[i, j]`` = how many examples of true class ``i`` were predicted as class ``j``;
    ``classes`` x ``classes``, by default 10, or 11 when a label or prediction is class 10 ("not
    a digit")."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ShapeError(
            f"need two label vectors of one length, got {y_true.shape}, {y_pred.shape}"
        )
    if classes is None:
        classes = max(10, int(y_true.max(initial=0)) + 1, int(y_pred.max(initial=0)) + 1)
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def first_of_each_class(y: np.ndarray, classes: int = 10) -> list[int]:
    """The index of the first example of each class that occurs in ``y``, in class order."""
    y = np.asarray(y)
    return [int(np.flatnonzero(y == c)[0]) for c in range(classes) if (y == c).any()]


# --------------------------------------------------------------------------- pictures as arrays
# For pages and other places without matplotlib: images as uint8 arrays, ready for any PNG encoder.
def _colour_ramp(anchors: Sequence[Sequence[int]]) -> np.ndarray:
    """256 colours, linearly interpolated between ``anchors`` spread evenly: (256, 3) uint8."""
    anchors = np.asarray(anchors, dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(t, positions, anchors[:, c]) for c in range(3)], axis=1).round()


# matplotlib's "magma" (the colours of plot_feature_maps), sampled at 8 points: black -> purple
# -> pink -> pale yellow.
MAGMA = _colour_ramp(
    [[0, 0, 4], [34, 17, 80], [95, 24, 127], [152, 45, 128], [211, 67, 110], [248, 118, 92],
     [254, 187, 129], [252, 253, 191]]
).astype(np.uint8)  # fmt: skip


def to_pixels(values01: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8 0..255, rounded."""
    return (np.clip(values01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colourise(values01: np.ndarray) -> np.ndarray:
    """A (H, W) float image in [0, 1] as colours (H, W, 3) uint8, through ``MAGMA``."""
    return MAGMA[to_pixels(values01)]


def saliency_overlay(strength01: np.ndarray, image01: np.ndarray) -> np.ndarray:
    """A saliency strength map (``saliency_strength``) over a faint grey copy of the digit:
    (H, W, 3) uint8.

    ``alpha = strength ** 0.6`` (lifts the weaker values a little);
    ``pixel = alpha * colour(strength) + (1 - alpha) * 0.35 * digit``.
    """
    heat = colourise(strength01).astype(np.float32)
    digit = (np.clip(image01, 0.0, 1.0) * (0.35 * 255.0))[..., None]
    alpha = (np.clip(strength01, 0.0, 1.0) ** 0.6)[..., None]
    return (alpha * heat + (1.0 - alpha) * digit + 0.5).astype(np.uint8)


def _grid(count: int, columns: int) -> tuple[int, int]:
    """``(rows, columns)`` for ``count`` tiles at most ``columns`` to a row."""
    columns = max(1, min(columns, count))
    return math.ceil(count / columns), columns


def feature_map_grid(maps: np.ndarray, gap: int = 1) -> tuple[np.ndarray, int, int]:
    """Tile feature maps (F, H, W) into one image in [0, 1], on one scale (``feature_map_range``).

    Returns the image (a gap of ``gap`` pixels between tiles, filled with 0.15) and the grid's rows
    and columns; the grid is about twice as wide as tall, to fit a page.
    """
    count, height, width = maps.shape
    rows, columns = _grid(count, math.ceil(math.sqrt(count * 2)))
    low, high = feature_map_range(maps)
    scaled = (maps - low) / (high - low)
    grid = np.full(
        (rows * (height + gap) - gap, columns * (width + gap) - gap), 0.15, dtype=np.float32
    )
    for i in range(count):
        r, c = divmod(i, columns)
        top, left = r * (height + gap), c * (width + gap)
        grid[top : top + height, left : left + width] = scaled[i]
    return grid, rows, columns


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


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (PNG by its suffix), making the folder if need be."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _tiles(
    count: int, columns: int, tile_width: float = 1.0, title_space: float = 0.6
) -> tuple[Any, list[Any]]:
    """A figure of ``count`` small picture panels, ``columns`` to a row, axes off, with
    ``title_space`` inches above them: ``(figure, its panels in reading order)``."""
    rows, columns = _grid(count, columns)
    fig = _figure(columns * tile_width, rows * 1.05 + title_space)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, list(axes.flat)


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
    fig, panels = _tiles(len(weights), 8)
    for number, (ax, w) in enumerate(zip(panels, weights, strict=False)):
        limit = float(np.abs(w).max()) or 1.0
        ax.imshow(w, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(str(number), fontsize=8, pad=2)
    k = conv.kernel_size
    fig.suptitle(
        f"{conv.name}: {len(weights)} filters of {k}x{k} weights\nred: positive, blue: negative",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.55 / fig.get_figheight())
    return save_figure(fig, path)


def plot_feature_maps(
    model: Sequential, image: np.ndarray, path: str | Path, label: int | None = None
) -> Path:
    """One digit (first panel) and the feature maps of the first convolution for it."""
    x = as_image_batch(image)[:1]
    activations = model.activations(x)
    name, maps = feature_maps_from(model, activations)
    predicted = int(activations[-1][1].argmax())  # the last layer's output: the logits
    fig, panels = _tiles(len(maps) + 1, 9)
    panels[0].imshow(x[0, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    truth = "" if label is None else f"true {label}, "
    panels[0].set_title(f"input\n{truth}pred {predicted}", fontsize=7, pad=2)
    low, high = feature_map_range(maps)
    for number, (ax, fmap) in enumerate(zip(panels[1:], maps, strict=False)):
        ax.imshow(fmap, cmap="magma", vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(str(number), fontsize=8, pad=2)
    fig.suptitle(
        f"Feature maps of one test digit after {name} ({maps.shape[1]}x{maps.shape[2]} each)"
        "\nbright: the filter's pattern is there (one colour scale for all maps)",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.6 / fig.get_figheight())
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    fig, panels = _tiles(max(1, len(shown)), 10, tile_width=0.9, title_space=0.7)
    for ax, i in zip(panels, shown, strict=False):
        ax.imshow(x[i, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        p = 100 * probabilities[i, y_pred[i]]
        ax.set_title(f"{y_true[i]}→{y_pred[i]} {p:.0f}%", fontsize=8, pad=2)
    if len(wrong) == 0:
        panels[0].text(0.5, 0.5, "none", ha="center", va="center")
    which = "all" if len(shown) == len(wrong) else f"the {len(shown)} most confident of"
    fig.suptitle(
        f"Misclassified: {which} {len(wrong)} wrong out of {len(y_true):,} test digits\n"
        "true→predicted and the model's confidence",
        fontsize=9,
    )
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - 0.7 / fig.get_figheight(), hspace=0.3
    )
    return save_figure(fig, path)


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
    return save_figure(fig, path, dpi=90)


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
def write_evaluation_plots(
    model: Sequential,
    x_test: np.ndarray,
    y_test: np.ndarray,
    history: Sequence[dict[str, float]] | None,
    out_dir: str | Path,
    *,
    probabilities: np.ndarray | None = None,
    curves_name: str = "curves.png",
) -> list[Path]:
    """The pictures of a test-set evaluation, written into ``out_dir``: ``confusion_matrix.png``,
    ``misclassified.png`` and, given a training ``history`` (``fit``'s list of per-epoch
    metrics), the training curves as ``curves_name``.  Returns the paths written.

    ``probabilities``, the model's answers for ``x_test`` (``model.predict``), spare a second
    pass over the test set when the caller has them already.
    """
    x = as_image_batch(x_test)
    y = np.asarray(y_test, dtype=np.int64)
    if probabilities is None:
        probabilities = model.predict(x, batch_size=500)
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or len(probabilities) != len(y) or len(x) != len(y):
        raise ShapeError(
            f"need one row of probabilities and one label per test digit: {len(x)} digits,"
            f" {len(y)} labels, probabilities {probabilities.shape}"
        )
    y_pred = probabilities.argmax(axis=1)
    cm = confusion_matrix(y, y_pred, classes=probabilities.shape[1])
    out = Path(out_dir)
    written = [
        plot_confusion_matrix(cm, out / "confusion_matrix.png"),
        plot_misclassified(x, y, y_pred, probabilities, out / "misclassified.png"),
    ]
    if history:
        written.append(plot_training_curves(history, out / curves_name))
    return written


def inspect_model(
    model: Sequential,
    x_test: np.ndarray,
    y_test: np.ndarray,
    out: str | Path,
    digit_index: int = 0,
    history: Sequence[dict[str, float]] | None = None,
) -> list[Path]:
    """Write every picture for ``model`` and the test set ``(x_test, y_test)`` into ``out``."""
    if model.input_shape is None:  # a model not built yet: build it for MNIST's digits
        model.build(MNIST_SHAPE)
    if model.input_shape != MNIST_SHAPE:
        raise ShapeError(
            f"npcnn.digits.analysis shows MNIST models (input {MNIST_SHAPE}), not {model.input_shape}"
        )
    x = as_image_batch(x_test)
    y = np.asarray(y_test, dtype=np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise ShapeError(
            f"need as many labels as test digits (and at least one): {len(x)}, {len(y)}"
        )
    if not 0 <= digit_index < len(x):
        raise ConfigError(f"digit index {digit_index} is outside the {len(x)} test digits")
    out = Path(out)
    examples = first_of_each_class(y)
    return [
        plot_filters(model, out / "filters.png"),
        plot_feature_maps(model, x[digit_index], out / "feature_maps.png", int(y[digit_index])),
        plot_saliency(model, x[examples], y[examples].tolist(), out / "saliency.png"),
        *write_evaluation_plots(model, x, y, history, out, curves_name=CURVES),
    ]


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
