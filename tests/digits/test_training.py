"""train_model.py on real MNIST: a quick run learns, an interrupted run resumes exactly, and the
shipped model meets its accuracy goal."""

from __future__ import annotations

import json

import numpy as np
import pytest

import npcnn
import train_model
from npcnn.checkpoints import Checkpoint
from npcnn.digits import model_card, synth
from npcnn.digits.data import load_mnist

pytestmark = pytest.mark.slow


def quick_args(tmp_path, name: str, *extra: str, arch: str = "keras-small") -> list[str]:
    return [
        "--arch", arch, "--limit", "6000", "--val-size", "1000", "--batch-size", "100",
        "--out", str(tmp_path / f"{name}.npz"), "--checkpoint", str(tmp_path / f"{name}_ck.npz"),
        "--quiet", "--no-robustness", "--synth-digits", "0", "--non-digits", "0", *extra,
    ]  # fmt: skip


def test_a_short_real_mnist_run_learns(tmp_path):
    args = quick_args(tmp_path, "smoke", "--epochs", "2", "--no-augment", arch="shipped")
    assert train_model.main(args) == 0
    model = npcnn.load(tmp_path / "smoke.npz")
    card = json.loads((tmp_path / "MODEL_CARD.json").read_text())
    assert card["test"]["accuracy"] >= 0.95, card["test"]["accuracy"]
    assert model.metadata["metrics"]["test_accuracy"] == card["test"]["accuracy"]
    assert np.array(card["test"]["confusion_matrix"]).sum() == 10_000
    assert "python train_model.py" in card["command"]
    assert "Per-class test accuracy" in (tmp_path / "MODEL_CARD.md").read_text()


def test_an_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    """2 epochs in one go == 1 epoch, Ctrl-C, then --resume for the second: identical weights."""
    assert train_model.main(quick_args(tmp_path, "straight", "--epochs", "2", "--no-card")) == 0

    real_save = Checkpoint.save

    def save_then_interrupt(self, model):
        real_save(self, model)
        raise KeyboardInterrupt  # as if Ctrl-C came right after the first epoch's checkpoint

    monkeypatch.setattr(Checkpoint, "save", save_then_interrupt)
    args = quick_args(tmp_path, "resumed", "--epochs", "2", "--no-card")
    assert train_model.main(args) == 130
    assert not (tmp_path / "resumed.npz").exists()
    monkeypatch.setattr(Checkpoint, "save", real_save)
    assert train_model.main([*args, "--resume"]) == 0

    straight = np.load(tmp_path / "straight.npz", allow_pickle=False)
    resumed = np.load(tmp_path / "resumed.npz", allow_pickle=False)
    weights = [k for k in straight.files if not k.startswith("__")]
    assert weights
    for key in weights:
        np.testing.assert_array_equal(straight[key], resumed[key], err_msg=key)


def test_resume_refuses_other_options(tmp_path, capsys):
    args = quick_args(tmp_path, "a", "--epochs", "1", "--limit", "500", "--no-card")
    assert train_model.main(args) == 0
    assert train_model.main([*args, "--lr", "0.1", "--resume"]) == 2
    assert "other options" in capsys.readouterr().err


def test_the_shipped_model_reaches_its_accuracy_goal(shipped_model):
    _, (x_test, y_test) = load_mnist()
    result = shipped_model.evaluate(x_test[:, None], y_test)
    assert result["accuracy"] >= 0.995, result
    assert shipped_model.metadata["metrics"]["test_accuracy"] == pytest.approx(result["accuracy"])


def test_a_run_with_non_digits_has_eleven_outputs_and_reports_refusals(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "cache_dir", lambda: tmp_path / "synth")
    args = quick_args(
        tmp_path, "eleven", "--epochs", "1", "--limit", "2000", "--synth-digits", "200",
        "--non-digits", "300", "--joined-digits", "200", "--val-non-digits", "200",
        "--average-last", "1",
    )  # fmt: skip
    assert train_model.main(args) == 0
    model = npcnn.load(tmp_path / "eleven.npz")
    assert model.output_shapes[-1] == (11,)
    card = json.loads((tmp_path / "MODEL_CARD.json").read_text())
    assert np.array(card["test"]["confusion_matrix"]).shape == (10, 11)
    assert 0.0 <= card["test"]["refused"] <= 1.0
    assert card["non_digit_test"]["images"] == train_model.TEST_SYNTH_IMAGES
    assert card["non_digit_test"]["seed"] != card["training"]["seed"]
    assert card["data"]["non_digits"] == 300 and card["data"]["synth_digits"] == 200
    assert card["data"]["joined_digits"] == 200 and card["data"]["val_joined_digits"] == 200
    assert card["joined_digit_test"]["images"] == train_model.TEST_SYNTH_IMAGES
    assert "refusal" in card["calibration"]
    assert "val_non_digits_refused" in card["history"][0]
    assert {"ece_before", "ece_after", "temperature"} <= set(card["calibration"])
    assert card["training"]["total_seconds"] >= card["training"]["wall_seconds"]
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert "synthetic non-digits refused" in text and "| refused |" in text


def test_calibration_figures():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 2000)
    logits = rng.normal(0, 1, (2000, 3))
    logits[np.arange(2000), labels] += 2.0
    sharp = logits * 4  # over-confident: temperature scaling should find T > 1 and help
    report = model_card.calibration_report(sharp, labels)
    assert report["temperature"] > 2
    assert report["ece_after"] < report["ece_before"] and report["nll_after"] < report["nll_before"]
    p = model_card.softmax(logits)
    assert np.allclose(p.sum(axis=1), 1)
    assert 0 <= model_card.expected_calibration_error(p, labels) <= 1


def test_refusal_figures():
    labels = np.array([0, 1, 2, 10, 10])
    predicted = np.array([0, 10, 2, 10, 3])
    figures = model_card.refusal_figures(predicted, labels)
    assert figures == {
        "accuracy": 3 / 5,
        "digit_accuracy": 2 / 3,
        "digits_refused": 1 / 3,
        "non_digits_refused": 1 / 2,
    }


def test_refusal_offset_refuses_fewer_digits_and_keeps_enough_non_digits():
    # Three digits, the third refused by a small margin; two non-digits, refused by 1 and 3.
    logits = np.zeros((5, 11))
    logits[0, 0], logits[1, 1] = 5.0, 5.0
    logits[2, 2], logits[2, 10] = 2.0, 2.6  # a digit refused: class 10 wins by 0.6
    logits[3, 10], logits[3, 4] = 4.0, 3.0  # a non-digit, refused by 1.0
    logits[4, 10], logits[4, 5] = 6.0, 3.0  # a non-digit, refused by 3.0
    labels = np.array([0, 1, 2, 10, 10])
    chosen = model_card.choose_refusal_offset(logits, labels, min_non_digits_refused=1.0)
    assert chosen["offset"] == -0.75  # the first step past -0.6; both non-digits still refused
    assert chosen["digit_accuracy"] == 1.0 and chosen["non_digits_refused"] == 1.0
    # Asked to keep only half the non-digits, it still takes the offset closest to 0 that
    # reads every digit, not a bigger one.
    assert model_card.choose_refusal_offset(logits, labels, 0.5)["offset"] == -0.75
    # Nothing to gain: offset 0.
    logits[2, 10] = 0.0
    assert model_card.choose_refusal_offset(logits, labels)["offset"] == 0.0
