"""Train the shipped MNIST model from scratch, evaluate it, and write weights/ and its model card.

    python train_model.py                  # the shipped model, with the committed defaults
    python train_model.py --epochs 2 --no-augment --out /tmp/m.npz   # a quick run
    python train_model.py --resume         # continue an interrupted run exactly where it stopped
    python train_model.py --feedback URL   # fine-tune the shipped model on users' corrections

Model selection uses a validation split carved from the 60,000 training images; the 10,000 test
images are evaluated once, at the end, and never steer training.  A checkpoint is written
atomically at the end of every epoch (``npcnn.Checkpoint``); Ctrl-C stops cleanly, keeping every
finished epoch, and ``--resume`` continues from the last one with the same optimiser state and
random numbers, so the result equals an uninterrupted run.

``--feedback URL`` fine-tunes ``--weights`` on the corrections users stored through the app
instead, mixed with MNIST so that it does not forget, and writes the result only if MNIST test
accuracy holds: see ``npcnn.digits.finetune``.

This file is only the command line: the data come from ``npcnn.digits``, the training loop from
``npcnn.training``, the pictures from ``npcnn.digits.analysis``, the card from
``npcnn.digits.model_card``, fine-tuning from ``npcnn.digits.finetune``.
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import npcnn
from npcnn.checkpoints import Checkpoint
from npcnn.digits import analysis, architectures, finetune, robustness, synth
from npcnn.digits.augment import augmenter
from npcnn.digits.data import load_mnist, train_val_split
from npcnn.digits.model_card import (
    NOT_A_DIGIT,
    calibration_report,
    choose_refusal_offset,
    machine_description,
    refusal_figures,
    write_model_card,
)
from npcnn.errors import ConfigError
from npcnn.optimizers import SCHEDULES, Adam, schedule_named
from npcnn.training import score_logits

DEFAULTS: dict[str, Any] = {
    "arch": "wide",
    "epochs": 22,
    "batch_size": 128,
    "lr": 3e-3,
    "schedule": "onecycle",
    "weight_decay": 1e-2,
    "label_smoothing": 0.1,
    "augment": True,
    "augment_strength": 1.0,
    "seed": 0,
    "val_size": 5000,
    "synth_digits": 3000,
    "non_digits": 6000,
    "joined_digits": 6000,
    "cut_digits": 0,
    "val_non_digits": 1000,
    "average_last": 0,
}
# Synthetic data: training uses --seed; validation and test sets use these offsets from it, so
# their seeds are never used in training.
VAL_SEED_OFFSET, TEST_SEED_OFFSET = 1000, 2000
TEST_SYNTH_IMAGES = 2000  # synthetic non-digits (and digits) of the test report
# The options that define the training run itself: a checkpoint resumes only with the same values.
RUN_OPTIONS = list(DEFAULTS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train an npcnn CNN on MNIST and write the model and its model card.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_options(parser)
    add_other_options(parser)
    add_feedback_options(parser)
    if parser.parse_known_args(argv)[0].feedback is not None:
        parser.set_defaults(**finetune.FINE_TUNE_DEFAULTS)
    args = parser.parse_args(argv)
    if not 0 < args.feedback_share <= 1 or not 0 <= args.feedback_holdout < 1:
        parser.error("need 0 < --feedback-share <= 1 and 0 <= --feedback-holdout < 1")
    return args


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options in ``RUN_OPTIONS``: what the training run is."""
    p = parser.add_argument_group("the run (a checkpoint resumes only with the same values)")
    p.add_argument(
        "--arch",
        default=DEFAULTS["arch"],
        choices=sorted(architectures.ARCHITECTURES),
        help="architecture preset (see npcnn/digits/architectures.py)",
    )
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="passes over the data")
    p.add_argument(
        "--batch-size", type=int, default=DEFAULTS["batch_size"], help="examples per update"
    )
    p.add_argument(
        "--lr",
        type=float,
        default=DEFAULTS["lr"],
        help="peak learning rate of Adam (reached after the warm-up for onecycle)",
    )
    p.add_argument(
        "--schedule",
        default=DEFAULTS["schedule"],
        choices=SCHEDULES,
        help="learning-rate schedule over all updates: onecycle (warm up, then cosine "
        "anneal), cosine (from --lr to 0), step (x0.1 at 50%% and 75%%), constant",
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        default=DEFAULTS["weight_decay"],
        help="decoupled weight decay of AdamW (0 for plain Adam)",
    )
    p.add_argument(
        "--label-smoothing",
        type=float,
        default=DEFAULTS["label_smoothing"],
        help="label smoothing of the cross-entropy targets",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS["augment"],
        help="random rotation, zoom, shift, shear, elastic and thickness changes",
    )
    p.add_argument(
        "--augment-strength",
        type=float,
        default=DEFAULTS["augment_strength"],
        help="scales every augmentation range and probability (0 = none)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS["seed"],
        help="seed of initialisation, shuffling, augmentation and dropout",
    )
    p.add_argument(
        "--val-size",
        type=int,
        default=DEFAULTS["val_size"],
        help="training images held out for validation and model selection",
    )
    p.add_argument(
        "--synth-digits",
        type=int,
        default=DEFAULTS["synth_digits"],
        help="synthetic digits (npcnn/digits/synth.py: allowed fonts redrawn as pen strokes, "
        "procedural strokes) added to the training images",
    )
    p.add_argument(
        "--non-digits",
        type=int,
        default=DEFAULTS["non_digits"],
        help="synthetic non-digits (letters, symbols, shapes, doodles) added to the training "
        "images as class 10; > 0 makes a model with 11 outputs",
    )
    p.add_argument(
        "--joined-digits",
        type=int,
        default=DEFAULTS["joined_digits"],
        help="pictures of two MNIST training digits joined (touching, overlapping, close, or a "
        "digit and part of another), framed as one: 'not a digit' (with --non-digits)",
    )
    p.add_argument(
        "--cut-digits",
        type=int,
        default=DEFAULTS["cut_digits"],
        help="pictures of one MNIST training digit cut out of a touching or overlapping pair with "
        "a piece of its neighbour (synth.cut_digits), labelled as that digit: what reading a "
        "number cuts out",
    )
    p.add_argument(
        "--val-non-digits",
        type=int,
        default=DEFAULTS["val_non_digits"],
        help="synthetic non-digits of another seed added to the validation images (with "
        "--non-digits), so that model selection counts refusals",
    )
    p.add_argument(
        "--average-last",
        type=int,
        default=DEFAULTS["average_last"],
        help="also average the weights of the last N epochs (SWA) and keep the average if it "
        "scores better on validation (0 = off)",
    )


def add_other_options(parser: argparse.ArgumentParser) -> None:
    """How and where to run, and what to write."""
    p = parser.add_argument_group("machine, files and output")
    p.add_argument(
        "--backend",
        default=os.environ.get("NPCNN_BACKEND", "auto"),
        choices=["auto", "numpy", "numba"],
        help="kernel implementation",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for BLAS and Numba (0 = every core); the augmented batches are prepared in "
        "a background thread beside them, which takes about 5 ms of one core per batch of 128 "
        "(benchmarks/bench_fit.py times the choices)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=0,
        help="train on only this many images (0 = all; for quick experiments)",
    )
    p.add_argument("--out", default="weights/mnist_cnn.npz", help="where to write the model")
    p.add_argument(
        "--checkpoint",
        default="checkpoints/train_checkpoint.npz",
        help="the checkpoint written at every epoch's end",
    )
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument(
        "--plot",
        action="store_true",
        help="also write curves, confusion matrix and misclassified digits as PNGs",
    )
    p.add_argument("--no-card", action="store_true", help="do not write the model card")
    p.add_argument(
        "--robustness",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the robustness table (npcnn.digits.robustness: corrupted test digits) to the "
        "model card, after training",
    )
    p.add_argument(
        "--no-test",
        action="store_true",
        help="experiments: stop after training and print the validation figures, never touching "
        "the test set (choose options on validation only)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_feedback_options(parser: argparse.ArgumentParser) -> None:
    """Fine-tuning on users' corrections (``--feedback``)."""
    defaults = ", ".join(
        ("--" if v else "--no-") + k if isinstance(v, bool) else f"--{k.replace('_', '-')} {v}"
        for k, v in finetune.FINE_TUNE_DEFAULTS.items()
    )
    p = parser.add_argument_group(
        "fine-tuning on users' corrections", f"with --feedback the defaults become: {defaults}"
    )
    p.add_argument(
        "--feedback",
        nargs="?",
        const="",
        metavar="URL",
        help="fine-tune --weights on the corrections in this database (SQLAlchemy URL; "
        "without one: $NPCNN_DATABASE_URL, else the app's SQLite file)",
    )
    p.add_argument("--weights", default="weights/mnist_cnn.npz", help="the model to fine-tune")
    p.add_argument(
        "--feedback-share",
        type=float,
        default=0.25,
        help="share of each batch that are corrections",
    )
    p.add_argument(
        "--feedback-holdout",
        type=float,
        default=0.2,
        help="share of the corrections held out to judge the result (fixed per correction)",
    )
    p.add_argument(
        "--max-mnist-drop",
        type=float,
        default=0.05,
        help="refuse to write the model if its accuracy on MNIST validation digits (the split "
        "it was trained without) falls by more percentage points",
    )


def load_data(args: argparse.Namespace) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``(training, validation, test)`` pairs; the test images stay uint8 (N, 28, 28).

    The synthetic digits and non-digits (``--synth-digits``, ``--non-digits``, seed ``--seed``),
    ``--joined-digits`` pairs of training digits and ``--cut-digits`` digits cut out of pairs
    join the training images;
    ``--val-non-digits`` non-digits of another seed, and as many pairs of validation digits,
    join the validation images.  ``args.synth_seconds`` records the time spent making (or reading) them.
    """
    (x_all, y_all), test = load_mnist(verbose=not args.quiet)
    (x_train, y_train), (x_val, y_val) = train_val_split(x_all, y_all, args.val_size, args.seed)
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    started = time.perf_counter()
    joined = args.joined_digits if args.non_digits else 0
    val_count = args.val_non_digits if args.non_digits else 0
    extra = synth.concatenate(
        synth.synthetic_digits(args.synth_digits, args.seed),
        synth.non_digits(args.non_digits, args.seed),
        synth.joined_digits(x_train, joined, args.seed),
        synth.cut_digits(x_train, y_train, args.cut_digits, args.seed),
    )
    val_extra = synth.concatenate(
        synth.non_digits(val_count, VAL_SEED_OFFSET + args.seed),
        synth.joined_digits(x_val, val_count if joined else 0, VAL_SEED_OFFSET + args.seed),
    )
    args.synth_seconds = time.perf_counter() - started
    x_train, y_train = join((x_train, y_train), extra)
    x_val, y_val = join((x_val, y_val), val_extra)
    return (
        (analysis.as_image_batch(x_train), y_train),
        (analysis.as_image_batch(x_val), y_val),
        test,
    )


def join(images: tuple[np.ndarray, np.ndarray], more: synth.SynthSet):
    """MNIST images and labels followed by synthetic ones."""
    return np.concatenate([images[0], more.images]), np.concatenate([images[1], more.labels])


class Validation:
    """A ``fit`` callback: the validation figures after each epoch (``val_loss``,
    ``val_accuracy``; with 11 outputs also the digits' accuracy and the shares of digits and of
    non-digits refused), printed and added to the epoch's metrics for the checkpoint to select
    the best epoch by ``val_accuracy``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, verbose: bool) -> None:
        self.x, self.y, self.verbose = x, y, verbose

    def __call__(self, model: npcnn.Sequential, epoch: int, metrics: dict[str, float]) -> None:
        metrics.update(validation_figures(model, self.x, self.y))
        if self.verbose:
            shown = {k: v for k, v in metrics.items() if k.startswith("val_")}
            print(f"epoch {epoch}: " + " ".join(f"{k} {v:.4f}" for k, v in shown.items()))


def validation_figures(model: npcnn.Sequential, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    logits = model.predict_logits(x)
    figures = {f"val_{k}": v for k, v in score_logits(logits, y).items()}
    if logits.shape[1] > 10:
        refusals = refusal_figures(logits.argmax(axis=1), y)
        figures |= {f"val_{k}": v for k, v in refusals.items() if k != "accuracy"}
    return figures


class WeightAverage:
    """A ``fit`` callback: the running mean of the weights (and BatchNorm statistics) after each
    of the last ``count`` epochs of ``epochs`` (stochastic weight averaging, Izmailov et al.
    2018, here once per epoch)."""

    def __init__(self, count: int, epochs: int) -> None:
        self.count, self.epochs, self.seen = count, epochs, 0
        self.mean: list[np.ndarray] | None = None

    def __call__(self, model: npcnn.Sequential, epoch: int, metrics: dict[str, float]) -> None:
        if epoch <= self.epochs - self.count:
            return
        arrays = [
            a for layer in model.layers for a in (*layer.params.values(), *layer.buffers.values())
        ]
        self.seen += 1
        if self.mean is None:
            self.mean = [a.copy() for a in arrays]
        else:
            for mean, a in zip(self.mean, arrays, strict=True):
                mean += (a - mean) / self.seen

    def averaged(self, model: npcnn.Sequential, x: np.ndarray, batch_size: int):
        """A copy of ``model`` with the averaged weights, its BatchNorm statistics measured
        again on ``x`` (the average of weights needs its own), or None if nothing was averaged."""
        if self.mean is None:
            return None
        averaged = copy.deepcopy(model)
        arrays = [
            a
            for layer in averaged.layers
            for a in (*layer.params.values(), *layer.buffers.values())
        ]
        for target, mean in zip(arrays, self.mean, strict=True):
            target[...] = mean
        order = averaged.rng.permutation(len(x))[: 200 * batch_size]
        for start in range(0, len(order), batch_size):  # BatchNorm: momentum 0.9, 200 batches
            averaged.forward(x[order[start : start + batch_size]], training=True)
        return averaged


def start_or_resume(
    args: argparse.Namespace, optimizer: Adam, run: dict[str, Any]
) -> tuple[npcnn.Sequential, Checkpoint]:
    """A fresh model and checkpoint, or (``--resume``) both as the checkpoint left them."""
    if args.resume:
        model, checkpoint = Checkpoint.resume(args.checkpoint, optimizer, options=run)
        print(f"resuming from {args.checkpoint} after epoch {checkpoint.state.epoch}")
        return model, checkpoint
    classes = 11 if args.non_digits else 10
    model = architectures.build(args.arch, seed=args.seed, classes=classes)
    return model, Checkpoint(args.checkpoint, optimizer, options=run)


def test_report(logits: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """The model card's test section: accuracy, loss, per-class accuracy, confusion matrix; with
    11 outputs a refusal (class 10) is an error, and the share of digits refused is given."""
    y_pred = logits.argmax(axis=1)
    classes = logits.shape[1]
    cm = analysis.confusion_matrix(y_test, y_pred, classes=classes)[:10]  # (10, classes)
    report = {
        **score_logits(logits, y_test),
        "per_class_accuracy": (np.diag(cm) / cm.sum(axis=1)).tolist(),
        "confusion_matrix": cm.tolist(),
        "errors": int((y_pred != y_test).sum()),
    }
    if classes > 10:
        report["refused"] = refusal_figures(y_pred, y_test)["digits_refused"]
    return report


def synthetic_test_report(
    model: npcnn.Sequential, seed: int, x_test_u8: np.ndarray, y_test: np.ndarray
) -> dict[str, Any]:
    """Refusals on synthetic non-digits and digits made with a seed never used in training, on
    pairs of MNIST test digits joined (``synth.joined_digits``), and MNIST test digits cut out of
    pairs with a piece of their neighbour (``synth.cut_digits``)."""
    report = {}
    for name, data in (
        ("non_digit_test", synth.non_digits(TEST_SYNTH_IMAGES, TEST_SEED_OFFSET + seed)),
        (
            "joined_digit_test",
            synth.joined_digits(x_test_u8, TEST_SYNTH_IMAGES, TEST_SEED_OFFSET + seed),
        ),
        (
            "synthetic_digit_test",
            synth.synthetic_digits(TEST_SYNTH_IMAGES, TEST_SEED_OFFSET + seed),
        ),
        (
            "cut_digit_test",
            synth.cut_digits(x_test_u8, y_test, TEST_SYNTH_IMAGES, TEST_SEED_OFFSET + seed),
        ),
    ):
        predicted = model.predict_logits(analysis.as_image_batch(data.images)).argmax(axis=1)
        figures = refusal_figures(predicted, data.labels)
        report[name] = {
            "images": len(data),
            "seed": TEST_SEED_OFFSET + seed,
            "accuracy": figures.get("digit_accuracy", figures["accuracy"]),
            "refused": figures.get("non_digits_refused", figures.get("digits_refused")),
        }
    return report


def calibrate(model: npcnn.Sequential, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
    """Two adjustments of the last layer, both fitted on the validation split.

    1. With 11 outputs, the refusal offset (``choose_refusal_offset``): added to the "not a
       digit" bias ``b[10]`` when it refuses fewer validation digits (the card records the
       validation figures before and after).
    2. Temperature scaling: when it lowers the validation NLL by 1% or more, T is folded into
       the last layer (``W / T``, ``b / T`` give ``logits / T``).
    """
    last = model.layers[-1]
    logits = model.predict_logits(x_val)
    refusal = None
    if logits.shape[1] > NOT_A_DIGIT:
        before = refusal_figures(logits.argmax(axis=1), y_val)
        refusal = {"before": before, **choose_refusal_offset(logits, y_val)}
        last.params["b"][NOT_A_DIGIT] += np.asarray(refusal["offset"], dtype=last.params["b"].dtype)
        logits[:, NOT_A_DIGIT] += refusal["offset"]  # what the model now gives, without a pass
    report = calibration_report(logits, y_val)
    report["applied"] = report["nll_after"] <= 0.99 * report["nll_before"]
    if report["applied"]:
        for name in ("W", "b"):
            last.params[name] /= np.asarray(report["temperature"], dtype=last.params[name].dtype)
    if refusal is not None:
        report["refusal"] = refusal
    return report


def model_card(
    args: argparse.Namespace,
    model: npcnn.Sequential,
    test: dict,
    checkpoint: Checkpoint,
    train_images: int,
    argv: list[str] | None,
) -> dict[str, Any]:
    """Everything the model card says, as a JSON-able dict."""
    state = checkpoint.state
    command = "python train_model.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    return {
        "file": Path(args.out).name,
        "architecture": args.arch,
        "layers": [repr(layer) for layer in model.layers],
        "parameters": model.parameter_count(),
        "test": test,
        "validation": {"accuracy": state.best_score, "best_epoch": state.best_epoch},
        "training": {
            **state.options,
            "wall_seconds": state.seconds,
            "synth_seconds": getattr(args, "synth_seconds", 0.0),
            "total_seconds": state.seconds + getattr(args, "synth_seconds", 0.0),
            "images_per_second": float(
                np.mean([h["images_per_second"] for h in state.history] or [0.0])
            ),
            "backend": npcnn.get_backend(),
            "threads": args.threads or os.cpu_count(),
            "machine": machine_description(),
            "numpy": np.__version__,
            "npcnn": npcnn.__version__,
            "train_images": train_images,
            "val_size": args.val_size,
        },
        "history": state.history,
        "data": data_figures(args, train_images),
        "command": command.strip(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def data_figures(args: argparse.Namespace, train_images: int) -> dict[str, Any]:
    """What the training images were made of, for the model card."""
    joined = args.joined_digits if args.non_digits else 0
    mnist = max(train_images - args.synth_digits - args.non_digits - joined - args.cut_digits, 1)
    return {
        "mnist": mnist,
        "synth_digits": args.synth_digits,
        "non_digits": args.non_digits,
        "joined_digits": joined,
        "cut_digits": args.cut_digits,
        "val_non_digits": args.val_non_digits if args.non_digits else 0,
        "val_joined_digits": args.val_non_digits if joined else 0,
        "proportions": "MNIST : synthetic digits : non-digits : joined digits : cut digits = "
        f"1 : {args.synth_digits / mnist:.3f} : {args.non_digits / mnist:.3f} : "
        f"{joined / mnist:.3f} : {args.cut_digits / mnist:.3f}",
    }


def save_results(args: argparse.Namespace, model: npcnn.Sequential, card: dict[str, Any]) -> None:
    """The model (with its metrics as metadata), the card, and with ``--plot`` the pictures."""
    out = Path(args.out)
    metadata = {
        "architecture_name": args.arch,
        "metrics": {
            "test_accuracy": card["test"]["accuracy"],
            "test_loss": card["test"]["loss"],
            "val_accuracy": card["validation"]["accuracy"],
        },
        "training": card["training"],
        "command": card["command"],
    }
    npcnn.save(model, out, metadata=metadata)
    print(
        f"test accuracy {100 * card['test']['accuracy']:.2f}% ({card['test']['errors']} errors), "
        f"training {card['training']['wall_seconds'] / 60:.1f} min; model written to {out}"
    )
    if not args.no_card:
        write_model_card(out.with_name("MODEL_CARD.md"), card)


def choose_model(
    checkpoint: Checkpoint,
    average: WeightAverage,
    x_train: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    batch_size: int,
) -> npcnn.Sequential:
    """The best epoch's model by validation accuracy, or the weight average if it scores higher
    (the checkpoint's record then says so)."""
    best = checkpoint.best_model()
    averaged = average.averaged(best, x_train, batch_size) if average.mean is not None else None
    if averaged is not None:
        figures = validation_figures(averaged, *validation)
        print(f"weight average of the last {average.seen} epochs: val_accuracy "
              f"{figures['val_accuracy']:.4f} (best epoch: {checkpoint.state.best_score:.4f})")  # fmt: skip
        if figures["val_accuracy"] > checkpoint.state.best_score:
            checkpoint.state.best_score, checkpoint.state.best_epoch = figures["val_accuracy"], -1
            return averaged
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    npcnn.set_backend(args.backend)
    npcnn.set_threads(args.threads or None)
    if args.feedback is not None:
        return finetune.fine_tune(args, argv)
    run = {k: getattr(args, k) for k in RUN_OPTIONS}
    (x_train, y_train), validation, (x_test_u8, y_test) = load_data(args)
    steps = -(-len(x_train) // args.batch_size) * args.epochs
    optimizer = Adam(lr=args.lr, weight_decay=args.weight_decay)
    try:
        model, checkpoint = start_or_resume(args, optimizer, run)
    except ConfigError as error:
        print(f"cannot resume: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        model.summary()
        print(f"backend {npcnn.get_backend()}; {len(x_train):,} training images")
    average = WeightAverage(args.average_last, args.epochs)
    try:
        npcnn.fit(
            model, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
            optimizer=optimizer, schedule=schedule_named(args.schedule, args.lr, steps),
            loss_fn=npcnn.SoftmaxCrossEntropy(args.label_smoothing),
            augment=augmenter(args.augment_strength if args.augment else 0.0),
            initial_epoch=checkpoint.state.epoch,
            callbacks=[Validation(*validation, not args.quiet), average, checkpoint],
            verbose=not args.quiet,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {checkpoint.state.epoch} finished epoch(s) are saved in "
            f"{args.checkpoint}; continue with: python train_model.py --resume (same options)"
        )
        return 130
    # The best epoch by validation accuracy is the model we keep; now, and only now, the test set.
    best = choose_model(checkpoint, average, x_train, validation, args.batch_size)
    calibration = calibrate(best, *validation)
    if args.no_test:
        print(f"validation of the kept model: {validation_figures(best, *validation)}; "
              f"calibration: {calibration}")  # fmt: skip
        return 0
    x_test = analysis.as_image_batch(x_test_u8)
    card = model_card(
        args, best, test_report(best.predict_logits(x_test), y_test), checkpoint, len(x_train), argv
    )
    card["calibration"] = calibration
    if args.non_digits:
        card |= synthetic_test_report(best, args.seed, x_test_u8, y_test)
    if args.robustness:
        card["robustness"] = robustness.robustness_table(best, x_test_u8, y_test)
    save_results(args, best, card)
    if args.plot:
        folder = Path(args.out).parent / "plots"
        for path in analysis.write_evaluation_plots(
            best, x_test_u8, y_test, card["history"], folder
        ):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
