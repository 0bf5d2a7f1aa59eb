"""Regenerate every picture of the guide (docs/images/*.png) from code.

    python examples/make_figures.py               # all of them (run from the repository root)
    python examples/make_figures.py --no-model    # only the two that need no trained model

It draws

- ``im2col.png``: the worked example of chapter 2 (a 4x4 image, a 2x2 kernel, the column matrix);
- ``augmentation.png``: one digit under each augmentation of ``npcnn.digits.augment`` (chapter 4);

and then runs ``python -m npcnn.digits.analysis`` on the shipped model for the pictures of chapter 5
(filters, feature maps, saliency, confusion matrix, misclassified digits, training curves).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from npcnn.digits import analysis as inspect
from npcnn.digits.augment import AugmentConfig, augment_batch
from npcnn.digits.data import load_mnist
from npcnn.kernels.numpy_ref import im2col

# The worked example of chapter 2: a 4x4 image holding 1..16 and a 2x2 kernel.
IMAGE = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
KERNEL = np.array([[1, 2], [3, 4]], dtype=np.float32)

# One change at a time (every probability 0 except the one named), then the training default.
ONLY = AugmentConfig(rotation_p=0, zoom_p=0, shift_p=0, shear_p=0, elastic_p=0, thickness_p=0)
SINGLE_CHANGES = {
    "rotation ±12°": replace(ONLY, rotation_p=1.0),
    "zoom 0.85–1.15": replace(ONLY, zoom_p=1.0),
    "shift ±2.5 px": replace(ONLY, shift_p=1.0),
    "shear ±0.2": replace(ONLY, shear_p=1.0),
    "elastic": replace(ONLY, elastic_p=1.0),
    "thickness": replace(ONLY, thickness_p=1.0),
    "all (training default)": AugmentConfig(),
}


def _draw_numbers(ax, values: np.ndarray, cmap: str, highlight: tuple | None = None) -> None:
    """A small matrix with every number written in its cell; ``highlight`` = (row, col, h, w)."""
    ax.imshow(values, cmap=cmap, vmin=values.min() - 0.3 * np.ptp(values), vmax=values.max())
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=9)
    if highlight is not None:
        row, col, height, width = highlight
        box = Rectangle((col - 0.5, row - 0.5), width, height, fill=False, ec="crimson", lw=2.5)
        ax.add_patch(box)
    ax.set_xticks([])
    ax.set_yticks([])


def im2col_figure(path: str | Path) -> Path:
    """Chapter 2's worked example: image, kernel, the columns and the output, with the first
    patch, its row and its output value outlined."""
    x = IMAGE[None, :, :, None]  # (N, H, W, C) = (1, 4, 4, 1): channels last, as the kernels want
    cols = im2col(x, 2, 2, 1, 0)  # (9, 4): one row per 2x2 patch
    out = (cols @ KERNEL.reshape(-1)).reshape(3, 3)
    fig = Figure(figsize=(9.0, 3.6))
    grid = fig.add_gridspec(1, 4, width_ratios=[4, 2, 4, 3], wspace=0.35)
    image_ax, kernel_ax, cols_ax, out_ax = (fig.add_subplot(grid[0, k]) for k in range(4))
    _draw_numbers(image_ax, IMAGE, "Blues", highlight=(0, 0, 2, 2))
    image_ax.set_title("image x (4x4)", fontsize=9)
    _draw_numbers(kernel_ax, KERNEL, "Oranges")
    kernel_ax.set_title("kernel w (2x2)\nflattened: 1 2 3 4", fontsize=9)
    _draw_numbers(cols_ax, cols, "Blues", highlight=(0, 0, 1, 4))
    cols_ax.set_title("im2col(x): 9 patches\nas rows (9x4)", fontsize=9)
    _draw_numbers(out_ax, out, "Greens", highlight=(0, 0, 1, 1))
    out_ax.set_title("cols @ w → 3x3 output\n1·1+2·2+3·5+4·6 = 44", fontsize=9)
    fig.suptitle("Convolution as one matrix product (im2col)", fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.04, top=0.78)
    return inspect.save_figure(fig, path)


def augmentation_figure(
    digit: np.ndarray, flip_digit: np.ndarray, path: str | Path, seed: int = 0, samples: int = 6
) -> Path:
    """One digit under each augmentation alone, then all together; and why flips stay off."""
    base = inspect.as_image_batch(digit)  # (1, 1, 28, 28)
    rng = np.random.default_rng(seed)
    rows = list(SINGLE_CHANGES.items())
    fig = Figure(figsize=(1.0 * (samples + 1) + 1.2, 1.0 * (len(rows) + 1) + 0.6))
    axes = fig.subplots(len(rows) + 1, samples + 1, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for r, (name, config) in enumerate(rows):
        batch = augment_batch(np.repeat(base, samples, axis=0), rng, config)
        axes[r, 0].imshow(base[0, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        for c in range(samples):
            axes[r, c + 1].imshow(batch[c, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    axes[0, 0].set_title("original", fontsize=8)
    axes[0, 1].set_title("six random draws →", fontsize=8, loc="left")
    # The last row: what flips would do (AugmentConfig's hflip_p / vflip_p, off by default).
    flips = [
        ("original", digit, {}),
        ("mirrored", digit, {"hflip_p": 1.0}),
        ("original", flip_digit, {}),
        ("upside down", flip_digit, {"vflip_p": 1.0}),
        ("turned 180°", flip_digit, {"hflip_p": 1.0, "vflip_p": 1.0}),
    ]
    last = axes[len(rows)]
    for c, (title, image, changes) in enumerate(flips):
        flipped = augment_batch(inspect.as_image_batch(image), rng, replace(ONLY, **changes))
        last[c].imshow(flipped[0, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        last[c].set_title(title, fontsize=7, pad=2)
    last[0].set_ylabel("flips (off)", rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(
        "npcnn.digits.augment: one test digit under each change alone, then all together;\n"
        "bottom: flips, which would turn digits into other digits (or none)",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.2, right=0.99, bottom=0.01, top=0.9, hspace=0.3, wspace=0.08)
    return inspect.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNG files")
    parser.add_argument("--weights", default="weights/mnist_cnn.npz", help="the trained model")
    parser.add_argument(
        "--no-model", action="store_true", help="skip the pictures of the trained model"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    _, (x_test, y_test) = load_mnist()
    two, six = (int(np.flatnonzero(y_test == d)[0]) for d in (2, 6))
    for path in (
        im2col_figure(out / "im2col.png"),
        augmentation_figure(x_test[two], x_test[six], out / "augmentation.png"),
    ):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    if args.no_model:
        return 0
    return inspect.main(["--weights", args.weights, "--out", str(out)])


if __name__ == "__main__":
    sys.exit(main())
