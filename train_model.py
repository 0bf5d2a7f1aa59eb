"""Train the shipped MNIST model from scratch, evaluate it, and write weights/ and its model card.

    python train_model.py                  # the shipped model, with the committed defaults
    python train_model.py --epochs 2 --no-augment --out /tmp/m.npz   # a quick run
    python train_model.py --resume         # continue an interrupted run exactly where it stopped

Model selection uses a validation split carved from the 60,000 training images; the 10,000 test
images are evaluated once, at the end, and never steer training.  A checkpoint is written
atomically at the end of every epoch; Ctrl-C stops cleanly, keeping every finished epoch, and
``--resume`` continues from the last one with the same optimiser state and random numbers, so the
result equals an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import npcnn
from npcnn.digits import architectures
from npcnn.digits.augment import AugmentConfig, augment_batch
from npcnn.digits.data import load_mnist, train_val_split
from npcnn.errors import ModelFileError
from npcnn.io import array_to_json, json_to_array, model_arrays, read_npz, save_npz_atomic
from npcnn.optimizers import Adam, CosineLR, OneCycleLR, StepLR

DEFAULTS: dict[str, Any] = {
    "arch": "shipped",
    "epochs": 20,
    "batch_size": 128,
    "lr": 3e-3,
    "schedule": "onecycle",
    "weight_decay": 1e-2,
    "label_smoothing": 0.0,
    "augment": True,
    "augment_strength": 1.0,
    "seed": 0,
    "val_size": 5000,
}
# The options that define the training run itself: a checkpoint resumes only with the same values.
RUN_OPTIONS = list(DEFAULTS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train an npcnn CNN on MNIST and write the model and its model card.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--arch",
        default=DEFAULTS["arch"],
        choices=sorted(architectures.ARCHITECTURES),
        help="architecture preset (see npcnn/architectures.py)",
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
        choices=["onecycle", "cosine", "step", "constant"],
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
        "--backend",
        default=os.environ.get("NPCNN_BACKEND", "auto"),
        choices=["auto", "numpy", "numba"],
        help="kernel implementation",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for BLAS and Numba (0 = every core); with 1, the other core prepares the "
        "augmented batches (on 2 cores: 1250 img/s, against 840 with 2 threads)",
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def make_schedule(name: str, lr: float, total_steps: int):
    """The learning-rate schedule for ``total_steps`` updates (None: constant ``lr``)."""
    if name == "onecycle":
        return OneCycleLR(lr, total_steps, pct_start=0.2)
    if name == "cosine":
        return CosineLR(lr, total_steps, warmup_steps=min(200, total_steps // 10))
    if name == "step":
        return lambda step: StepLR(lr, max(total_steps // 4, 1), 0.1)(
            max(step - total_steps // 4, 0)
        )
    return None


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    return (images.astype(np.float32) / 255.0)[:, None]


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, model: npcnn.Sequential, optimizer: Adam, state: dict) -> None:
    """Model, optimiser, random-generator state and progress, in one atomic .npz."""
    arrays = {f"model/{k}": v for k, v in model_arrays(model).items()}
    arrays |= {f"best/{k}": v for k, v in state.pop("best_arrays").items()}
    arrays |= {f"optimizer/{k}": v for k, v in optimizer.state_dict().items()}
    state["rng"] = model.rng.bit_generator.state
    arrays["state"] = json_to_array(state)
    save_npz_atomic(path, arrays)


def load_checkpoint(path: Path) -> tuple[npcnn.Sequential, dict, dict, dict]:
    """The model, optimiser state, best-model arrays and progress saved by ``save_checkpoint``."""
    arrays = read_npz(path)
    if "state" not in arrays:
        raise ModelFileError(f"{path} is not a training checkpoint")

    def part(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

    model = npcnn.io.model_from_arrays(part("model/"), source=str(path))
    state = array_to_json(arrays["state"])
    model.rng.bit_generator.state = state["rng"]
    return model, part("optimizer/"), part("best/"), state


# --------------------------------------------------------------------------- evaluation
def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int = 10) -> np.ndarray:
    """``m[i, j]`` = how many images of class ``i`` were predicted as ``j``."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def machine_description() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def write_model_card(path_md: Path, card: dict[str, Any]) -> None:
    """The model card, as Markdown for people and JSON (same name, .json) for programs."""
    path_md.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    cm = np.array(card["test"]["confusion_matrix"])
    header = "| true \\ predicted | " + " | ".join(map(str, range(10))) + " |"
    rows = [header, "|" + "---|" * 11]
    rows += [f"| **{i}** | " + " | ".join(str(v) for v in cm[i]) + " |" for i in range(10)]
    per_class = " | ".join(f"{100 * a:.2f}" for a in card["test"]["per_class_accuracy"])
    t = card["training"]
    validation = (
        f"{100 * card['validation']['accuracy']:.2f}% on {t['val_size']:,} held-out training"
        f" images (best epoch {card['validation']['best_epoch']})"
    )
    text = f"""# Model card: `{card["file"]}`

A convolutional network for handwritten digits (MNIST), trained from scratch with npcnn on a CPU.

| | |
|---|---|
| architecture | `{card["architecture"]}` ({card["parameters"]:,} parameters) |
| **test accuracy** | **{100 * card["test"]["accuracy"]:.2f}%** on the 10,000 MNIST test images |
| test loss | {card["test"]["loss"]:.4f} |
| validation accuracy (model selection) | {validation} |
| training time | {t["wall_seconds"] / 60:.1f} minutes on {t["machine"]} ({t["backend"]} backend) |
| reproduce | `{card["command"]}` |

## Input
float32 `(N, 1, 28, 28)` in [0, 1], a white digit on black, centred by its centre of mass in a
20x20 box like MNIST (`npcnn.digits.preprocess.to_mnist` turns any picture into this).  Output: `(N, 10)`
probabilities.

## Training
Adam (decoupled weight decay {t["weight_decay"]}), peak learning rate {t["lr"]}, `{t["schedule"]}`
schedule, batch {t["batch_size"]}, {t["epochs"]} epochs, seed {t["seed"]}, augmentation
{"on (strength " + str(t["augment_strength"]) + ")" if t["augment"] else "off"}: random rotation,
zoom, shift, shear, elastic distortion and stroke thickness (see `npcnn/augment.py`), so that digits
drawn small, large, slanted, off-centre, thick or thin are still recognised.  The test set was
evaluated once, after training; it did not steer any choice.

## Per-class test accuracy (%)
| 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |
|---|---|---|---|---|---|---|---|---|---|
| {per_class} |

## Confusion matrix (test set)
{chr(10).join(rows)}

## Limits
Trained on MNIST only: one centred digit, Western Arabic numerals.  Letters, symbols and several
digits at once are outside its training data (the app segments a written number into single digits
first).
"""
    path_md.write_text(text)


def write_plots(
    folder: Path,
    history: list[dict],
    cm: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    y_pred: np.ndarray,
    probs: np.ndarray,
) -> list[Path]:
    """Loss/accuracy curves, the confusion matrix and a grid of misclassified test digits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["loss"] for h in history], "o-", label="training (augmented)")
    ax1.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss", yscale="log")
    ax2.plot(epochs, [100 * h["accuracy"] for h in history], "o-", label="training (augmented)")
    ax2.plot(epochs, [100 * h["val_accuracy"] for h in history], "o-", label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy", ylim=(97, 100))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    paths = [folder / "curves.png"]
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 5.4))
    off_diagonal = cm - np.diag(np.diag(cm))
    ax.imshow(off_diagonal, cmap="Reds")
    for i in range(10):
        for j in range(10):
            ax.text(
                j,
                i,
                cm[i, j],
                ha="center",
                va="center",
                fontsize=7,
                color="black" if i != j else "tab:blue",
            )
    ax.set(
        xticks=range(10),
        yticks=range(10),
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix (test set; colour = errors)",
    )
    fig.tight_layout()
    paths.append(folder / "confusion_matrix.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    wrong = np.flatnonzero(y_pred != y_test)
    cols = 10
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        ax.imshow(x_test[i], cmap="gray")
        ax.set_title(f"{y_test[i]}→{y_pred[i]} ({100 * probs[i, y_pred[i]]:.0f}%)", fontsize=7)
    fig.suptitle(
        f"All {len(wrong)} misclassified test digits: true→predicted (confidence)", fontsize=9
    )
    fig.tight_layout()
    paths.append(folder / "misclassified.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backend = npcnn.set_backend(args.backend)
    threads = npcnn.set_threads(args.threads or None)
    run = {k: getattr(args, k) for k in RUN_OPTIONS}
    checkpoint = Path(args.checkpoint)

    (x_all, y_all), (x_test_u8, y_test) = load_mnist(verbose=not args.quiet)
    (x_train_u8, y_train), (x_val_u8, y_val) = train_val_split(
        x_all, y_all, args.val_size, seed=args.seed
    )
    if args.limit:
        x_train_u8, y_train = x_train_u8[: args.limit], y_train[: args.limit]
    x_train, x_val = to_model_input(x_train_u8), to_model_input(x_val_u8)

    steps_per_epoch = -(-len(x_train) // args.batch_size)
    schedule = make_schedule(args.schedule, args.lr, steps_per_epoch * args.epochs)
    optimizer = Adam(lr=args.lr, weight_decay=args.weight_decay)
    if args.resume:
        model, opt_state, best_arrays, state = load_checkpoint(checkpoint)
        if state["run"] != run:
            changed = {k: (state["run"][k], run[k]) for k in run if state["run"].get(k) != run[k]}
            print(
                f"cannot resume: the checkpoint was made with other options {changed}",
                file=sys.stderr,
            )
            return 2
        optimizer.load_state_dict(opt_state)
        print(f"resuming from {checkpoint} after epoch {state['epoch']}")
    else:
        model = architectures.build(args.arch, seed=args.seed)
        best_arrays = model_arrays(model)
        state = {
            "run": run,
            "epoch": 0,
            "history": [],
            "best_val_accuracy": -1.0,
            "best_epoch": 0,
            "train_seconds": 0.0,
        }
    if not args.quiet:
        model.summary()
        print(f"backend {backend}; {len(x_train):,} training, {len(x_val):,} validation images")

    augment = None
    if args.augment and args.augment_strength > 0:
        config = AugmentConfig(strength=args.augment_strength)

        def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return augment_batch(batch, rng, config)

    last_tick = time.perf_counter()

    def end_of_epoch(model: npcnn.Sequential, epoch: int, metrics: dict[str, float]) -> None:
        nonlocal best_arrays, last_tick
        now = time.perf_counter()
        state["epoch"] = epoch
        state["history"].append(metrics)
        state["train_seconds"] += now - last_tick  # the epoch, its validation and its checkpoint
        last_tick = now
        if metrics["val_accuracy"] > state["best_val_accuracy"]:
            state["best_val_accuracy"], state["best_epoch"] = metrics["val_accuracy"], epoch
            best_arrays = model_arrays(model)
        save_checkpoint(checkpoint, model, optimizer, {**state, "best_arrays": best_arrays})

    try:
        model.fit(
            x_train,
            y_train,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=optimizer,
            schedule=schedule,
            loss_fn=npcnn.SoftmaxCrossEntropy(args.label_smoothing),
            validation_data=(x_val, y_val),
            augment=augment,
            initial_epoch=state["epoch"],
            on_epoch_end=end_of_epoch,
            verbose=not args.quiet,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {state['epoch']} finished epoch(s) are saved in {checkpoint}; "
            f"continue with: python train_model.py --resume (and the same options)"
        )
        return 130

    # The best epoch by validation accuracy is the model we keep; now, and only now, the test set.
    best = npcnn.io.model_from_arrays(best_arrays, source="best epoch")
    x_test = to_model_input(x_test_u8)
    probs = best.predict(x_test, batch_size=500)
    y_pred = probs.argmax(axis=1)
    test = best.evaluate(x_test, y_test)
    cm = confusion_matrix(y_test, y_pred)
    per_class = (np.diag(cm) / cm.sum(axis=1)).tolist()
    command = "python train_model.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    card = {
        "file": Path(args.out).name,
        "architecture": args.arch,
        "layers": [repr(layer) for layer in best.layers],
        "parameters": best.parameter_count(),
        "test": {
            "accuracy": test["accuracy"],
            "loss": test["loss"],
            "per_class_accuracy": per_class,
            "confusion_matrix": cm.tolist(),
            "errors": int((y_pred != y_test).sum()),
        },
        "validation": {"accuracy": state["best_val_accuracy"], "best_epoch": state["best_epoch"]},
        "training": {
            **run,
            "wall_seconds": state["train_seconds"],
            "backend": backend,
            "threads": threads,
            "machine": machine_description(),
            "numpy": np.__version__,
            "npcnn": npcnn.__version__,
            "train_images": len(x_train),
            "val_size": len(x_val),
        },
        "history": state["history"],
        "command": command.strip(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    metadata = {
        "architecture_name": args.arch,
        "metrics": {
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
            "val_accuracy": state["best_val_accuracy"],
        },
        "training": card["training"],
        "command": card["command"],
    }
    out = Path(args.out)
    best.save(out, metadata=metadata)
    print(
        f"test accuracy {100 * test['accuracy']:.2f}% ({card['test']['errors']} errors), "
        f"training {state['train_seconds'] / 60:.1f} min; model written to {out}"
    )
    if not args.no_card:
        write_model_card(out.with_name("MODEL_CARD.md"), card)
    if args.plot:
        for path in write_plots(
            out.parent / "plots", state["history"], cm, x_test_u8, y_test, y_pred, probs
        ):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
