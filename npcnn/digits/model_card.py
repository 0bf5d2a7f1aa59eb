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
zoom, shift, shear, elastic distortion and stroke thickness (see `npcnn/digits/augment.py`), so that digits
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
