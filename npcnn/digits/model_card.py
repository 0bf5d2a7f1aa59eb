"""The model card: what a trained model is, how it was made, and how well it reads digits.

Written by ``train_model.py`` beside the weights, as Markdown for people (``MODEL_CARD.md``) and
JSON for programs (``MODEL_CARD.json``, which the app and the analysis command read too).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

NOT_A_DIGIT = 10  # class 10 of an 11-output model: "that is not a digit"


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15):
    """ECE: split the predictions by confidence (the top probability) into ``bins`` equal-width
    bins; the mean over bins of |accuracy - mean confidence|, weighted by the bins' sizes."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(gap / len(labels))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the mean negative log-likelihood of ``softmax(logits /
    T)`` (Guo et al. 2017): a golden-section search on log T in [1/4, 8]."""
    labels = np.asarray(labels)

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))[np.arange(len(labels)), labels]
        return float(-np.log(np.maximum(p, 1e-12)).mean())

    low, high, ratio = np.log(0.25), np.log(8.0), (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if nll(a) < nll(b):
            high = b
        else:
            low = a
    return float(np.exp((low + high) / 2))


def calibration_report(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ECE and NLL of ``logits`` before and after temperature scaling, and the temperature."""
    temperature = fit_temperature(logits, labels)
    rows = np.arange(len(labels))
    report = {"temperature": temperature}
    for name, t in (("before", 1.0), ("after", temperature)):
        p = softmax(logits, t)
        report[f"ece_{name}"] = expected_calibration_error(p, labels)
        report[f"nll_{name}"] = float(-np.log(np.maximum(p[rows, labels], 1e-12)).mean())
    return report


def choose_refusal_offset(
    logits: np.ndarray,
    labels: np.ndarray,
    min_non_digits_refused: float = 0.97,
    offsets: np.ndarray | None = None,
) -> dict[str, float]:
    """How much to lower the "not a digit" logit so that fewer real digits are refused.

    An 11-output model refuses when class 10 has the largest logit.  Adding ``offset <= 0`` to
    that logit (``logits[:, 10] + offset``; folded into the last layer's bias ``b[10]``) refuses
    only the pictures it is surer about.  Among ``offsets`` (0, -0.25, ..., -4) this picks the one
    with the best digit accuracy (a refused digit counts as an error) that still refuses at
    least ``min_non_digits_refused`` of the non-digits (label 10), ties going to the offset
    closest to 0.  Chosen on the validation split, like the temperature.
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if offsets is None:
        offsets = -np.arange(0, 4.01, 0.25)
    best: dict[str, float] | None = None
    for offset in offsets:
        shifted = logits.copy()
        shifted[:, NOT_A_DIGIT] += offset
        figures = refusal_figures(shifted.argmax(axis=1), labels)
        if offset != 0 and figures.get("non_digits_refused", 1.0) < min_non_digits_refused:
            continue
        if best is None or figures["digit_accuracy"] > best["digit_accuracy"]:
            best = {"offset": float(offset), **figures}
    assert best is not None  # offset 0 is always a candidate
    return best


def refusal_figures(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """For predicted classes (class 10 = "not a digit") against true labels (10 for a
    non-digit): accuracy (a refused digit counts as an error), the share of digits refused, and
    the share of non-digits refused."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    digits = labels != NOT_A_DIGIT
    refused = predicted == NOT_A_DIGIT
    figures = {"accuracy": float((predicted == labels).mean()) if len(labels) else float("nan")}
    if digits.any():
        figures["digit_accuracy"] = float((predicted[digits] == labels[digits]).mean())
        figures["digits_refused"] = float(refused[digits].mean())
    if (~digits).any():
        figures["non_digits_refused"] = float(refused[~digits].mean())
    return figures


def machine_description() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def write_model_card(path_md: Path, card: dict[str, Any]) -> None:
    """The model card, as Markdown for people and JSON (same name, .json) for programs."""
    path_md.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    cm = np.array(card["test"]["confusion_matrix"])
    classes = cm.shape[1]
    names = [str(c) for c in range(10)] + (["refused"] if classes > 10 else [])
    header = "| true \\ predicted | " + " | ".join(names) + " |"
    rows = [header, "|" + "---|" * (classes + 1)]
    rows += [f"| **{i}** | " + " | ".join(str(v) for v in cm[i]) + " |" for i in range(10)]
    per_class = " | ".join(f"{100 * a:.2f}" for a in card["test"]["per_class_accuracy"][:10])
    t = card["training"]
    best = card["validation"]["best_epoch"]
    chosen = f"best epoch {best}" if best > 0 else "the weights averaged over the last epochs"
    data = card.get("data", {})
    extra = data.get("val_non_digits", 0)
    joined = data.get("val_joined_digits", 0)
    validation = (
        f"{100 * card['validation']['accuracy']:.2f}% on {t['val_size']:,} held-out training"
        f" images{f', {extra:,} synthetic non-digits' if extra else ''}"
        f"{f' and {joined:,} pairs of those digits joined' if joined else ''} ({chosen})"
    )
    minutes = t.get("total_seconds", t["wall_seconds"]) / 60
    synth_note = (
        f" (of which {t['synth_seconds']:.0f} s making or reading the synthetic data)"
        if t.get("synth_seconds")
        else ""
    )
    refusals = _refusal_rows(card)
    speed = f"{t['backend']} backend, {t.get('images_per_second', 0):.0f} img/s"
    counted = " (a refusal counts as an error)" if classes > 10 else ""
    meaning = '; class 10 means "not a digit" (a refusal)' if classes > 10 else ""
    text = f"""# Model card: `{card["file"]}`

A convolutional network for handwritten digits (MNIST), trained from scratch with npcnn on a CPU.

| | |
|---|---|
| architecture | `{card["architecture"]}` ({card["parameters"]:,} parameters, {classes} outputs) |
| **test accuracy** | **{_pct(card["test"]["accuracy"])}** on the 10,000 MNIST test images{counted} |
{refusals}| test loss | {card["test"]["loss"]:.4f} |
| validation accuracy (model selection) | {validation} |
| training time | {minutes:.1f} minutes{synth_note} on {t["machine"]} ({speed}) |
| reproduce | `{card["command"]}` |

## Input and output
float32 `(N, 1, 28, 28)` in [0, 1], a white digit on black, centred by its centre of mass in a
20x20 box like MNIST (`npcnn.digits.preprocess.to_mnist` turns any picture into this).  Output:
`(N, {classes})` probabilities{meaning}.

## Training
Adam (decoupled weight decay {t["weight_decay"]}), peak learning rate {t["lr"]}, `{t["schedule"]}`
schedule, batch {t["batch_size"]}, {t["epochs"]} epochs, seed {t["seed"]}, label smoothing
{t.get("label_smoothing", 0)}, augmentation
{"on (strength " + str(t["augment_strength"]) + ")" if t["augment"] else "off"}: random rotation,
zoom, shift, shear, elastic distortion and stroke thickness (see `npcnn/digits/augment.py`), so that digits
drawn small, large, slanted, off-centre, thick or thin are still recognised.
{_data_section(card)}The test set was evaluated once, after training; it did not steer any choice.
{_calibration_section(card)}
## Per-class test accuracy (%)
| 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |
|---|---|---|---|---|---|---|---|---|---|
| {per_class} |

## Confusion matrix (test set)
{chr(10).join(rows)}
{_robustness_section(card)}
## Limits
{_limits(classes)}
"""
    path_md.write_text(text)


def _refusal_rows(card: dict[str, Any]) -> str:
    test = card["test"]
    if "refused" not in test:
        return ""
    lines = f'| MNIST test digits refused ("not a digit") | {_pct(test["refused"])} |\n'
    other = card.get("non_digit_test")
    if other:
        lines += (
            f"| synthetic non-digits refused | {_pct(other['refused'])} of {other['images']:,}"
            f" (seed {other['seed']}, never used in training) |\n"
        )
    joined = card.get("joined_digit_test")
    if joined:
        lines += (
            f"| two MNIST test digits joined, framed as one: refused | {_pct(joined['refused'])}"
            f" of {joined['images']:,} |\n"
        )
    cut = card.get("cut_digit_test")
    if cut:
        lines += (
            f"| MNIST test digits cut out of a pair with a piece of the neighbour: read right /"
            f" refused | {_pct(cut['accuracy'])} / {_pct(cut['refused'])} of {cut['images']:,} |\n"
        )
    synthetic = card.get("synthetic_digit_test")
    if synthetic:
        lines += (
            f"| synthetic digits: read right / refused | {_pct(synthetic['accuracy'])} /"
            f" {_pct(synthetic['refused'])} of {synthetic['images']:,} |\n"
        )
    return lines


def _data_section(card: dict[str, Any]) -> str:
    data = card.get("data")
    if not data or not (data.get("synth_digits") or data.get("non_digits")):
        return "Training data: MNIST's training images only.  "
    return (
        f"Training data: {data['mnist']:,} MNIST training images, {data['synth_digits']:,}"
        f" synthetic digits and {data['non_digits']:,} synthetic non-digits (class 10) made by"
        " `npcnn/digits/synth.py` from the allowed font packages (skeletons redrawn with a"
        " round pen), procedural pen strokes and shapes"
        + (
            f", and {data['joined_digits']:,} pictures of two MNIST training digits joined and"
            " framed as one (class 10: what a number's reader must not take for one digit)"
            if data.get("joined_digits")
            else ""
        )
        + (
            f", and {data['cut_digits']:,} MNIST training digits cut out of touching or"
            " overlapping pairs with a piece of their neighbour (labelled as the digit: what a"
            " number's reader cuts out)"
            if data.get("cut_digits")
            else ""
        )
        + f"; proportions {data['proportions']}.  The validation split holds"
        f" {data['val_non_digits']:,} synthetic non-digits of another seed"
        + (
            f" and {data['val_joined_digits']:,} joined pairs of its own digits"
            if data.get("val_joined_digits")
            else ""
        )
        + " besides its MNIST images.  "
    )


def _calibration_section(card: dict[str, Any]) -> str:
    c = card.get("calibration")
    if not c:
        return ""
    applied = (
        f"folded into the last layer (its weights and bias divided by T = {c['temperature']:.3f})"
        if c.get("applied")
        else f"not applied (T = {c['temperature']:.3f} changed too little)"
    )
    offset = _refusal_offset_text(c.get("refusal"))
    return f"""
## Calibration (validation split)
{offset}Expected calibration error (15 bins) {_pct(c["ece_before"])} before temperature scaling and
{_pct(c["ece_after"])} after; negative log-likelihood {c["nll_before"]:.4f} -> {c["nll_after"]:.4f}.
Temperature scaling: {applied}.
"""


def _refusal_offset_text(refusal: dict[str, Any] | None) -> str:
    if not refusal:
        return ""
    before = refusal["before"]
    return (
        f'The "not a digit" logit is offset by {refusal["offset"]:+.2f} (folded into its bias), '
        "chosen on the validation split: digits refused "
        f"{_pct(before['digits_refused'])} -> {_pct(refusal['digits_refused'])}, digit accuracy "
        f"{_pct(before['digit_accuracy'])} -> {_pct(refusal['digit_accuracy'])}, non-digits "
        f"refused {_pct(before['non_digits_refused'])} -> {_pct(refusal['non_digits_refused'])}.\n"
    )


def _robustness_section(card: dict[str, Any]) -> str:
    table = card.get("robustness")
    if not table:
        return ""
    lines = ["", "## Robustness (MNIST test, corrupted; `python -m npcnn.digits.robustness`)",
             "| corruption | accuracy | refused |", "|---|---|---|"]  # fmt: skip
    for row in table:
        lines.append(f"| {row['corruption']} | {_pct(row['accuracy'])} | {_pct(row['refused'])} |")
    return "\n".join(lines) + "\n"


def _limits(classes: int) -> str:
    if classes > 10:
        return (
            'One centred digit, Western Arabic numerals.  "Not a digit" was learnt from synthetic'
            " letters, symbols and shapes: drawings unlike all of them may still get a digit, and"
            " a digit drawn unlike both MNIST and the synthetic styles may be refused.  Several"
            " digits at once are outside its training data (the app segments a written number"
            " into single digits first)."
        )
    return (
        "Trained on MNIST only: one centred digit, Western Arabic numerals.  Letters, symbols and"
        " several digits at once are outside its training data (the app segments a written"
        " number into single digits first)."
    )
