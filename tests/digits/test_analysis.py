"""``npcnn.digits.analysis``: the numbers and pictures of chapter 5 of the guide, the app's
"what the network looks at" panel and ``train_model.py``'s evaluation plots, on a tiny model and on
the shipped one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npcnn
from npcnn.digits import analysis as inspect
from npcnn.digits.errors import DataError
from npcnn.errors import NpcnnError
from npcnn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_WEIGHTS = ROOT / "weights" / "mnist_cnn.npz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PICTURE_BYTES = 300 * 1024


def tiny_model(input_shape: tuple[int, ...] | None = (1, 28, 28)) -> npcnn.Sequential:
    return npcnn.Sequential(
        [Conv2D(1, 4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(4 * 13 * 13, 10)],
        input_shape=input_shape,
        seed=0,
    )


def fake_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random blobs standing in for digits, with every class among the labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((count, 28, 28)).astype(np.float32) ** 4
    return x, np.arange(count) % 10


def assert_pictures(folder: Path, names: list[str]) -> None:
    for name in names:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
        assert len(data) < MAX_PICTURE_BYTES, f"{name} is {len(data) // 1024} KB"


def test_inspect_draws_every_picture_of_a_tiny_model(tmp_path):
    x, y = fake_digits(40)
    history = [
        {"epoch": 1, "loss": 0.5, "accuracy": 0.9, "val_loss": 0.2, "val_accuracy": 0.95},
        {"epoch": 2, "loss": 0.3, "accuracy": 0.95, "val_loss": 0.1, "val_accuracy": 0.97},
    ]
    written = inspect.inspect_model(tiny_model(), x, y, tmp_path / "pictures", history=history)
    names = [*inspect.PICTURES, inspect.CURVES]
    assert sorted(p.name for p in written) == sorted(names)
    assert_pictures(tmp_path / "pictures", names)


def test_inspect_builds_a_model_for_mnist_when_it_is_not_built_yet(tmp_path):
    model = tiny_model(input_shape=None)
    x, y = fake_digits(10)
    inspect.inspect_model(model, x, y, tmp_path)
    assert model.input_shape == inspect.MNIST_SHAPE
    assert_pictures(tmp_path, list(inspect.PICTURES))


def test_inspect_numbers():
    model = tiny_model()
    x, y = fake_digits(12)
    layers, maps = inspect.feature_maps(model, x[0])
    assert layers == "conv2d → relu"  # the maps are taken after the ReLU: never negative
    assert maps.shape == (4, 26, 26) and maps.min() >= 0
    predicted, grad = inspect.saliency_map(model, x[3])
    assert predicted == int(model.predict(x[3][None, None]).argmax())
    np.testing.assert_allclose(grad, model.input_gradient(x[3][None, None], predicted)[0, 0])
    cm = inspect.confusion_matrix([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0], classes=3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [1, 0, 2]])
    assert inspect.confusion_matrix([0, 1], [0, 1]).shape == (10, 10)  # digits: 10 classes
    refused = inspect.confusion_matrix([0, 1], [0, 10])  # a refusal: class 10 gets its column
    assert refused.shape == (11, 11) and refused[1, 10] == 1
    assert inspect.first_of_each_class(np.array([3, 1, 3, 0, 1])) == [3, 1, 0]


def test_inspect_refuses_what_it_cannot_show(tmp_path):
    dense_only = npcnn.Sequential([Flatten(), Dense(784, 10)])
    with pytest.raises(NpcnnError, match="no Conv2D"):
        inspect.plot_filters(dense_only, tmp_path / "f.png")
    with pytest.raises(NpcnnError, match="shaped"):
        inspect.as_image_batch(np.zeros((2, 3, 28, 28)))
    x, y = fake_digits(5)
    with pytest.raises(NpcnnError, match="labels"):
        inspect.inspect_model(tiny_model(), x, y[:3], tmp_path)
    with pytest.raises(NpcnnError, match="digit index"):
        inspect.inspect_model(tiny_model(), x, y, tmp_path, digit_index=5)


@pytest.mark.slow  # reads real MNIST (fetching it first if it is not cached)
def test_inspect_command_on_a_tiny_saved_model(tmp_path, capsys):
    weights = tmp_path / "tiny.npz"
    npcnn.save(tiny_model(), weights)
    history = [{"epoch": 1, "loss": 2.0, "accuracy": 0.3, "val_loss": 1.9, "val_accuracy": 0.4}]
    (tmp_path / "MODEL_CARD.json").write_text(json.dumps({"file": "tiny.npz", "history": history}))
    try:
        from npcnn.digits.data import load_mnist

        load_mnist()
    except DataError as error:
        pytest.skip(f"MNIST is not available: {error}")
    out = tmp_path / "pictures"
    code = inspect.main(["--weights", str(weights), "--out", str(out), "--limit", "300"])
    assert code == 0
    assert_pictures(out, [*inspect.PICTURES, inspect.CURVES])
    assert capsys.readouterr().out.count("wrote ") == len(inspect.PICTURES) + 1


def test_inspect_command_says_what_is_wrong(tmp_path, capsys):
    assert inspect.main(["--weights", str(tmp_path / "missing.npz"), "--out", str(tmp_path)]) == 2
    assert "model file not found" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    assert inspect.main(["--weights", str(tmp_path / "bad.npz"), "--out", str(tmp_path)]) == 2
    assert "npcnn.digits.analysis:" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


def test_inspect_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "npcnn.digits.analysis", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--weights" in result.stdout and "--out" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_WEIGHTS.exists(), reason="no weights/mnist_cnn.npz")
def test_inspect_on_the_shipped_model(tmp_path):
    model = npcnn.load(SHIPPED_WEIGHTS)
    try:
        from npcnn.digits.data import load_mnist

        _, (x_test, y_test) = load_mnist()
    except DataError as error:
        pytest.skip(f"MNIST is not available: {error}")
    out = tmp_path / "pictures"
    assert inspect.main(["--weights", str(SHIPPED_WEIGHTS), "--out", str(out)]) == 0
    assert_pictures(out, list(inspect.PICTURES))
    # The confusion matrix inspect draws agrees with the accuracy measured by train_model.py.
    y_pred = model.predict(inspect.as_image_batch(x_test)).argmax(axis=1)
    cm = inspect.confusion_matrix(y_test, y_pred)
    assert cm.sum() == 10_000
    accuracy = np.trace(cm) / cm.sum()
    assert accuracy == pytest.approx(model.metadata["metrics"]["test_accuracy"], abs=2e-4)
    assert accuracy > 0.99


# --------------------------------------------------------------------------- one home for each idea
def test_write_evaluation_plots_draws_what_train_model_shows(tmp_path):
    """The pictures ``train_model.py --plot`` writes into weights/plots/."""
    model = tiny_model()
    x, y = fake_digits(30)
    history = [
        {"epoch": 1, "loss": 0.5, "accuracy": 0.9, "val_loss": 0.2, "val_accuracy": 0.95},
        {"epoch": 2, "loss": 0.3, "accuracy": 0.95, "val_loss": 0.1, "val_accuracy": 0.97},
    ]
    written = inspect.write_evaluation_plots(model, x, y, history, tmp_path / "plots")
    names = ["confusion_matrix.png", "misclassified.png", "curves.png"]
    assert [p.name for p in written] == names
    assert_pictures(tmp_path / "plots", names)
    # with the probabilities it has already: the same pictures, without a second pass
    probabilities = model.predict(inspect.as_image_batch(x))
    again = inspect.write_evaluation_plots(
        model, x, y, None, tmp_path / "again", probabilities=probabilities
    )
    assert [p.name for p in again] == names[:2]
    for name in names[:2]:
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "plots" / name).read_bytes()
    with pytest.raises(NpcnnError, match="one label per test digit"):
        inspect.write_evaluation_plots(model, x, y[:5], None, tmp_path)


def model_with_batchnorm() -> npcnn.Sequential:
    return npcnn.Sequential(
        [Conv2D(1, 4, 3), BatchNorm(4), ReLU(), MaxPool2D(2), Flatten(), Dense(4 * 13 * 13, 10)],
        seed=1,
    )


def test_feature_maps_are_the_first_conv_block_after_batchnorm_and_relu():
    model = model_with_batchnorm()
    x, _ = fake_digits(2)
    assert inspect.first_conv_block(model) == slice(0, 3)
    layers, maps = inspect.feature_maps(model, x[1])
    assert layers == "conv2d → batchnorm → relu"
    np.testing.assert_array_equal(maps, model.activations(x[1][None, None])[2][1][0])
    # the same maps from one inspect (what the app uses) as from activations
    seen = model.inspect(x[1][None, None])
    layers_seen, maps_seen = inspect.feature_maps_from(model, seen.activations)
    assert layers_seen == layers
    np.testing.assert_array_equal(maps_seen, maps)


def test_feature_map_grid_puts_all_maps_on_one_scale():
    maps = np.zeros((5, 3, 4), dtype=np.float32)
    maps[1, 0, 0], maps[2] = 8.0, 2.0  # map 0 silent, map 1 one strong pixel, map 2 weak everywhere
    grid, rows, columns = inspect.feature_map_grid(maps)
    assert (rows, columns) == (2, 4)  # about twice as wide as tall
    assert grid.shape == (rows * (3 + 1) - 1, columns * (4 + 1) - 1)
    np.testing.assert_allclose(grid[0:3, 0:4], 0.0)  # silent stays dark
    assert grid[0, 5] == 1.0  # the strongest value of all maps is the top of the scale
    np.testing.assert_allclose(grid[0:3, 10:14], 0.25)  # 2 / 8: weak stays weak
    assert grid[3, 0] == pytest.approx(0.15)  # the gap between tiles
    assert inspect.feature_map_range(np.zeros((2, 3, 3))) == (0.0, 1.0)


def test_picture_arrays_for_the_page():
    gradient = np.array([[0.0, -2.0], [1.0, 0.5]], dtype=np.float32)
    strength = inspect.saliency_strength(gradient)
    np.testing.assert_allclose(strength, [[0.0, 1.0], [0.5, 0.25]])
    np.testing.assert_array_equal(inspect.saliency_strength(np.zeros((2, 2))), np.zeros((2, 2)))
    colours = inspect.colourise(strength)
    assert colours.shape == (2, 2, 3) and colours.dtype == np.uint8
    np.testing.assert_array_equal(colours[0, 0], inspect.MAGMA[0])
    np.testing.assert_array_equal(colours[0, 1], inspect.MAGMA[255])
    digit = np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    overlay = inspect.saliency_overlay(strength, digit)
    assert overlay.shape == (2, 2, 3) and overlay.dtype == np.uint8
    np.testing.assert_array_equal(overlay[0, 0], [89, 89, 89])  # no saliency: the faint digit
    np.testing.assert_array_equal(overlay[0, 1], inspect.MAGMA[255])  # full saliency: its colour
    np.testing.assert_array_equal(inspect.to_pixels(np.array([-1.0, 0.5, 2.0])), [0, 128, 255])
