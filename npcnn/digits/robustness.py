"""How a model copes with corrupted digits: an MNIST-C-style report (Mu & Gilmer, 2019), with
the corruptions implemented here, seeded, on the MNIST test set.

    python -m npcnn.digits.robustness --weights weights/mnist_cnn.npz       # the table
    python -m npcnn.digits.robustness --weights my.npz --json               # and as JSON

Each corruption (``CORRUPTIONS``) takes uint8 digits (N, 28, 28) and a random generator and
returns uint8 digits; they go straight to the model, as in MNIST-C, except ``inverted``: a black
digit on white is what a photo of paper looks like, and the app's preprocessing
(``npcnn.digits.preprocess.to_mnist``) must find the ink and turn it back - so that row runs
through it (on the first ``--preprocess-limit`` images; preprocessing takes a few milliseconds
per picture).  ``clean, preprocessed`` runs the same images through it unchanged, for comparison.

For each row: accuracy (for a model with 11 outputs a refusal, class 10, is an error) and the
share of digits refused.  For an 11-output model the report adds the share refused of synthetic
non-digits made with a seed never used in training (``npcnn.digits.synth``).

This is an evaluation of a finished model: it reads the test set, and must never steer training.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import numpy as np
from scipy import ndimage

import npcnn
from npcnn.batching import as_float_images

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]
NOT_A_DIGIT = 10
NON_DIGIT_SEED = 2000  # train_model.py's test seed for synthetic data (seed 0 + TEST_SEED_OFFSET)


def _to_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float64) / 255.0


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)


def _affine(images: np.ndarray, matrices: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each image resampled so that a point p goes to A (p - c) + c + shift (bilinear)."""
    centre = np.array([13.5, 13.5])
    out = np.empty(images.shape, dtype=np.float64)
    for i, (image, matrix, shift) in enumerate(
        zip(_to_float(images), matrices, shifts, strict=True)
    ):
        inverse = np.linalg.inv(matrix)
        offset = centre - inverse @ (centre + shift)
        out[i] = ndimage.affine_transform(image, inverse, offset, order=1, cval=0.0)
    return _to_uint8(out)


def gaussian_noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, standard deviation 0.3 of the full range."""
    return _to_uint8(_to_float(images) + rng.normal(0, 0.3, images.shape))


def impulse_noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: 8% of the pixels set to black or white."""
    out = images.copy()
    hit = rng.random(images.shape) < 0.08
    out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255)
    return out


def gaussian_blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, sigma 1.2 px (then stretched back to full contrast)."""
    blurred = ndimage.gaussian_filter(_to_float(images), sigma=(0, 1.2, 1.2))
    return _to_uint8(blurred / np.maximum(blurred.max(axis=(1, 2), keepdims=True), 1e-6))


def motion_blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur along a 7-px line in a random direction per image (then full contrast again)."""
    out = np.empty(images.shape, dtype=np.float64)
    offsets = np.mgrid[-3:4, -3:4].astype(np.float64)  # (2, 7, 7): row, col offsets
    for i, image in enumerate(_to_float(images)):
        angle = rng.uniform(0, np.pi)
        across = -offsets[0] * np.cos(angle) + offsets[1] * np.sin(angle)  # distance to the line
        kernel = np.clip(1 - np.abs(across), 0, 1)
        out[i] = ndimage.convolve(image, kernel / kernel.sum(), mode="constant")
    return _to_uint8(out / np.maximum(out.max(axis=(1, 2), keepdims=True), 1e-6))


def rotation(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation by 20-40 degrees either way."""
    angle = np.deg2rad(rng.uniform(20, 40, len(images)) * rng.choice([-1, 1], len(images)))
    c, s = np.cos(angle), np.sin(angle)
    matrices = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    return _affine(images, matrices, np.zeros((len(images), 2)))


def shear(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal shear by 0.3-0.6 either way."""
    k = rng.uniform(0.3, 0.6, len(images)) * rng.choice([-1, 1], len(images))
    matrices = np.tile(np.eye(2), (len(images), 1, 1))
    matrices[:, 1, 0] = k
    return _affine(images, matrices, np.zeros((len(images), 2)))


def scale(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shrunk to 50-75% of its size (a digit written small)."""
    z = rng.uniform(0.5, 0.75, len(images))
    return _affine(images, z[:, None, None] * np.eye(2), np.zeros((len(images), 2)))


def translation(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Moved by 3-5 px in a random direction (part of the digit may leave the frame)."""
    angle = rng.uniform(0, 2 * np.pi, len(images))
    distance = rng.uniform(3, 5, len(images))
    shifts = np.stack([np.sin(angle), np.cos(angle)], axis=1) * distance[:, None]
    return _affine(images, np.tile(np.eye(2), (len(images), 1, 1)), shifts)


def thick(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bolder pen: grey dilation, 3x3."""
    return ndimage.grey_dilation(images, size=(1, 3, 3))


def thin(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A finer pen: grey erosion, 2x2."""
    return ndimage.grey_erosion(images, size=(1, 2, 2))


def zigzag(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bright zigzag line (three to five segments) drawn across each image (MNIST-C's)."""
    out = _to_float(images)
    rows, cols = np.mgrid[0:28, 0:28]
    for i in range(len(images)):
        count = int(rng.integers(4, 7))
        points = np.stack([rng.uniform(0, 28, count), np.sort(rng.uniform(0, 28, count))], axis=1)
        for (r0, c0), (r1, c1) in zip(points[:-1], points[1:], strict=True):
            d = np.array([r1 - r0, c1 - c0])  # the segment; each pixel's distance to it:
            t = np.clip(((rows - r0) * d[0] + (cols - c0) * d[1]) / max(d @ d, 1e-9), 0, 1)
            dist = np.hypot(rows - (r0 + t * d[0]), cols - (c0 + t * d[1]))
            out[i] = np.maximum(out[i], np.clip(1.0 - dist, 0, 1))
    return _to_uint8(out)


def fog(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth grey haze: low-frequency noise (several octaves) added, up to 0.5 bright."""
    haze = np.zeros(images.shape)
    for sigma, weight in ((6, 1.0), (3, 0.5), (1.5, 0.25)):
        layer = ndimage.gaussian_filter(rng.normal(0, 1, images.shape), sigma=(0, sigma, sigma))
        layer /= np.maximum(layer.std(axis=(1, 2), keepdims=True), 1e-9)
        haze += weight * layer
    haze -= haze.min(axis=(1, 2), keepdims=True)
    haze *= 0.5 / np.maximum(haze.max(axis=(1, 2), keepdims=True), 1e-9)
    return _to_uint8(_to_float(images) + haze)


def inverted(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A black digit on white: preprocessing must find the ink and turn it back."""
    return 255 - images


def clean(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return images


CORRUPTIONS: dict[str, Corruption] = {
    "clean": clean,
    "gaussian noise": gaussian_noise,
    "impulse noise": impulse_noise,
    "gaussian blur": gaussian_blur,
    "motion blur": motion_blur,
    "rotation 20-40 deg": rotation,
    "shear 0.3-0.6": shear,
    "scale 50-75%": scale,
    "translation 3-5 px": translation,
    "thick strokes": thick,
    "thin strokes": thin,
    "zigzag lines": zigzag,
    "fog": fog,
}
THROUGH_PREPROCESSING: dict[str, Corruption] = {
    "clean, preprocessed": clean,
    "inverted, preprocessed": inverted,
}


def preprocess_all(images: np.ndarray) -> np.ndarray:
    """Each picture through the app's ``to_mnist``, as uint8; a picture it finds no ink in stays
    black (and so counts as whatever the model says of a blank)."""
    from npcnn.digits.errors import NoInkError
    from npcnn.digits.preprocess import to_mnist

    out = np.zeros(images.shape, dtype=np.uint8)
    for i, image in enumerate(images):
        try:
            out[i] = np.round(to_mnist(image) * 255).astype(np.uint8)
        except NoInkError:
            pass
    return out


def score(model: npcnn.Sequential, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy (a refusal is an error) and the share refused of uint8 images (N, 28, 28)."""
    predicted = model.predict(as_float_images(images[:, None])).argmax(axis=1)
    return {
        "accuracy": float((predicted == labels).mean()),
        "refused": float((predicted == NOT_A_DIGIT).mean()),
    }


def robustness_table(
    model: npcnn.Sequential,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    preprocess_limit: int = 2000,
) -> list[dict[str, float | str | int]]:
    """One row per corruption: its name, the number of images, accuracy and share refused."""
    rows = []
    for index, (name, corrupt) in enumerate(CORRUPTIONS.items()):
        corrupted = corrupt(images, np.random.default_rng([seed, index]))
        rows.append({"corruption": name, "images": len(images), **score(model, corrupted, labels)})
    some, their_labels = images[:preprocess_limit], labels[:preprocess_limit]
    for index, (name, corrupt) in enumerate(THROUGH_PREPROCESSING.items()):
        corrupted = preprocess_all(corrupt(some, np.random.default_rng([seed, 100 + index])))
        rows.append(
            {"corruption": name, "images": len(some), **score(model, corrupted, their_labels)}
        )
    return rows


def non_digit_refusal(model: npcnn.Sequential, images: int = 2000, seed: int = NON_DIGIT_SEED):
    """The share of synthetic non-digits (``npcnn.digits.synth``, ``seed``) refused."""
    from npcnn.digits import synth

    data = synth.non_digits(images, seed)
    return score(model, data.images, data.labels)["refused"]


def format_table(rows: list[dict], title: str) -> str:
    lines = [title, f"{'corruption':<26}{'images':>7}{'accuracy':>10}{'refused':>9}"]
    for row in rows:
        lines.append(
            f"{row['corruption']:<26}{row['images']:>7}{100 * row['accuracy']:>9.2f}%"
            f"{100 * row['refused']:>8.2f}%"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from npcnn.digits.data import load_mnist

    parser = argparse.ArgumentParser(
        prog="python -m npcnn.digits.robustness",
        description="Accuracy of a model on corrupted MNIST test digits (MNIST-C style).",
    )
    parser.add_argument("--weights", default="weights/mnist_cnn.npz")
    parser.add_argument("--limit", type=int, default=10_000, help="test images to use")
    parser.add_argument(
        "--preprocess-limit", type=int, default=2000, help="images for the preprocessed rows"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    npcnn.set_threads(args.threads)
    model = npcnn.load(args.weights)
    _, (x_test, y_test) = load_mnist()
    x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    rows = robustness_table(model, x_test, y_test, args.seed, args.preprocess_limit)
    outputs = model.output_shapes[-1][0]
    print(format_table(rows, f"{args.weights} ({outputs} outputs), MNIST test, seed {args.seed}"))
    report: dict = {"weights": args.weights, "rows": rows}
    if outputs > NOT_A_DIGIT:
        report["non_digits_refused"] = non_digit_refusal(model)
        print(
            f"synthetic non-digits refused (2000, seed {NON_DIGIT_SEED}): "
            f"{100 * report['non_digits_refused']:.2f}%"
        )
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
