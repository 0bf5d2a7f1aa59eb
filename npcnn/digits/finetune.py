"""Fine-tuning a trained model on users' corrections (``python train_model.py --feedback URL``).

The corrections stored by the app (``npcnn.digits.feedback``) are mixed with MNIST training
images so that the model does not forget: a share of each batch (``--feedback-share``, default a
quarter) are corrections, the rest MNIST, for a few epochs at a small learning rate.  A fixed
share of the corrections is held out (``is_held_out``: the same ones every time).

The guard against forgetting is judged on MNIST *validation* digits: the split the model being
tuned held out when it was trained (``base_split``: its recorded ``val_size`` and ``seed``), which
it never learnt from; the MNIST images mixed in come from the rest of the training set only.
Accuracy on those validation digits and on the held-out corrections is reported before and after,
and the model is written only if validation accuracy fell by at most ``--max-mnist-drop``
percentage points.  MNIST's test set takes no part in that choice: it is evaluated once, at the
end, for the model that is written (and its figure before is the one the model recorded at the
end of its own training).
Corrections labelled "none" (not a digit) are skipped while the model has 10 outputs; a model
with 11 learns them as class 10.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import numpy as np

import npcnn
from npcnn.digits import analysis
from npcnn.digits.augment import augmenter
from npcnn.digits.data import load_mnist, train_val_split
from npcnn.digits.feedback import FeedbackStore, StoreUnavailable, is_held_out
from npcnn.optimizers import Adam, schedule_named

# With --feedback: a few gentle epochs on top of the trained model, written beside it.  No
# augmentation: on 400 corrections it cost MNIST test accuracy and taught the corrections less.
FINE_TUNE_DEFAULTS: dict[str, Any] = {
    "epochs": 5,
    "lr": 1e-4,
    "schedule": "constant",
    "weight_decay": 0.0,
    "augment": False,
    "out": "weights/mnist_cnn_feedback.npz",
}
FINE_TUNE_RECORDED = ["epochs", "lr", "schedule", "weight_decay", "batch_size", "augment", "seed",
                      "feedback_share", "feedback_holdout"]  # fmt: skip


def load_corrections(
    url: str, classes: int, holdout: float
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The corrections as (training, held-out) pairs of uint8 (N, 28, 28) images and class
    indices; "none" becomes class 10 for an 11-class model and is skipped otherwise."""
    with FeedbackStore(url or None) as store:
        ids, images, labels = store.arrays()
        print(f"{len(ids)} corrections in {store.shown_url}")
    is_none = labels == "none"
    if is_none.any() and classes < 11:
        print(f"skipped {int(is_none.sum())} 'not a digit' corrections: the model has {classes} "
              "outputs, none of them 'not a digit'")  # fmt: skip
        ids, images, labels = ids[~is_none], images[~is_none], labels[~is_none]
    y = np.array([10 if label == "none" else int(label) for label in labels], dtype=np.int64)
    held = is_held_out(ids, holdout)
    return (images[~held], y[~held]), (images[held], y[held])


def mixed_epoch(
    corrections: tuple[np.ndarray, np.ndarray],
    mnist: tuple[np.ndarray, np.ndarray],
    batch_size: int,
    share: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's images and labels, in batch order: every batch of ``batch_size`` holds
    ``share`` corrections (each correction once per epoch) and fresh MNIST images for the rest."""
    (xc, yc), (xm, ym) = corrections, mnist
    per_batch = min(max(1, round(share * batch_size)), batch_size)
    batches = -(-len(xc) // per_batch)
    order_c = rng.permutation(len(xc))
    needed = batches * (batch_size - per_batch)
    order_m = rng.choice(len(xm), size=needed, replace=needed > len(xm))
    xs, ys = [], []
    for b in range(batches):
        ic = order_c[b * per_batch : (b + 1) * per_batch]
        im = order_m[b * (batch_size - per_batch) : (b + 1) * (batch_size - per_batch)]
        xs += [xc[ic], xm[im]]
        ys += [yc[ic], ym[im]]
    return np.concatenate(xs), np.concatenate(ys)


def base_split(model: npcnn.Sequential) -> tuple[int, int]:
    """``(val_size, seed)`` of the validation split ``model`` held out of MNIST's training images
    when ``train_model.py`` trained it (its metadata), else ``train_val_split``'s defaults."""
    training = model.metadata.get("training", {})
    if "val_size" not in training:
        print("the model records no validation split: judging it on train_val_split's default "
              "one (5,000 digits, seed 0), which it may have learnt from")  # fmt: skip
    return int(training.get("val_size", 5000)), int(training.get("seed", 0))


def accuracy(model: npcnn.Sequential, x: np.ndarray, y: np.ndarray) -> float | None:
    """Accuracy of ``model`` on uint8 images ``x`` (None when there are none)."""
    return npcnn.evaluate(model, analysis.as_image_batch(x), y)["accuracy"] if len(x) else None


def report_figures(
    figures: dict[str, dict[str, float | None]], validation: int, held_out: int
) -> None:
    """The before/after table ("n/a": not measured; MNIST test before is the model's record)."""

    def cell(value: float | None) -> str:
        return "   n/a" if value is None else f"{100 * value:6.2f}%"

    print(f"{'accuracy':<32}{'before':>8}{'after':>9}")
    for name, label in [("mnist_validation", f"MNIST validation ({validation:,})"),
                        ("held_out", f"held-out corrections ({held_out})"),
                        ("mnist_test", "MNIST test (10,000)")]:  # fmt: skip
        before, after = figures["before"].get(name), figures["after"].get(name)
        print(f"{label:<32}{cell(before):>8} {cell(after):>8}")


def fine_tune(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``--feedback``: fine-tune ``--weights`` on the corrections mixed with MNIST; see above."""
    model = npcnn.load(args.weights)
    model.rng = np.random.default_rng(args.seed)
    classes = model.output_shapes[-1][0]
    try:
        train, held_out = load_corrections(args.feedback, classes, args.feedback_holdout)
    except StoreUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not len(train[0]):
        print("error: no corrections to learn from", file=sys.stderr)
        return 1
    (x_all, y_all), test = load_mnist(verbose=not args.quiet)
    val_size, split_seed = base_split(model)
    (x_mnist, y_mnist), validation = train_val_split(x_all, y_all, val_size, split_seed)
    print(f"fine-tuning {args.weights} on {len(train[0])} corrections mixed with MNIST "
          f"({args.epochs} epochs, lr {args.lr:g}); {len(held_out[0])} held out")  # fmt: skip
    recorded = model.metadata.get("metrics", {}).get("test_accuracy")
    figures = {"before": {"mnist_validation": accuracy(model, *validation),
                          "held_out": accuracy(model, *held_out),
                          "mnist_test": recorded}}  # fmt: skip
    optimizer = Adam(lr=args.lr, weight_decay=args.weight_decay)
    augment = augmenter(args.augment_strength if args.augment else 0.0)
    for epoch in range(args.epochs):
        x, y = mixed_epoch(train, (x_mnist, y_mnist), args.batch_size, args.feedback_share,
                           model.rng)  # fmt: skip
        steps = -(-len(x) // args.batch_size) * args.epochs
        npcnn.fit(model, analysis.as_image_batch(x), y, epochs=epoch + 1, initial_epoch=epoch,
                  batch_size=args.batch_size, optimizer=optimizer, shuffle=False,
                  schedule=schedule_named(args.schedule, args.lr, steps), augment=augment,
                  verbose=not args.quiet)  # fmt: skip
    figures["after"] = {"mnist_validation": accuracy(model, *validation),
                        "held_out": accuracy(model, *held_out)}  # fmt: skip
    accepted = forgets_little(args, figures)
    if accepted:  # now, and only now, the test set
        figures["after"]["mnist_test"] = accuracy(model, *test)
    report_figures(figures, val_size, len(held_out[0]))
    if not accepted:
        print(f"refused: MNIST validation accuracy fell by {validation_drop(figures):.2f} points "
              f"(more than --max-mnist-drop {args.max_mnist_drop:g}); the model was not written")  # fmt: skip
        return 1
    return save_fine_tuned(args, model, figures, len(train[0]), argv)


def validation_drop(figures: dict[str, dict[str, float | None]]) -> float:
    """How many percentage points of MNIST validation accuracy the fine-tuning cost."""
    return 100 * (figures["before"]["mnist_validation"] - figures["after"]["mnist_validation"])


def forgets_little(args: argparse.Namespace, figures: dict[str, dict[str, float | None]]) -> bool:
    """The guard: MNIST validation accuracy fell by at most ``--max-mnist-drop`` points."""
    return validation_drop(figures) <= args.max_mnist_drop


def save_fine_tuned(
    args: argparse.Namespace,
    model: npcnn.Sequential,
    figures: dict[str, dict[str, float | None]],
    trained_on: int,
    argv: list[str] | None,
) -> int:
    """Write the fine-tuned model with its figures and how it was made."""
    metadata = dict(model.metadata)  # the other metrics described the model before: dropped
    metadata["metrics"] = {"test_accuracy": figures["after"]["mnist_test"],
                           "val_accuracy": figures["after"]["mnist_validation"]}  # fmt: skip
    metadata["fine_tuning"] = {
        "from": str(args.weights),
        "corrections": trained_on,
        "figures": figures,
        "options": {k: getattr(args, k) for k in FINE_TUNE_RECORDED},
        "command": redacted_command(argv, secret=args.feedback),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    npcnn.save(model, args.out, metadata=metadata)
    print(f"model written to {args.out}")
    return 0


def redacted_command(argv: list[str] | None, secret: str) -> str:
    """The command line, with the database URL (it may hold a password) replaced by "URL"."""
    words = argv if argv is not None else sys.argv[1:]
    if secret:
        words = [word.replace(secret, "URL") for word in words]
    return "python train_model.py " + " ".join(shlex.quote(word) for word in words)
