"""npcnn.training and npcnn.checkpoints: callbacks see every epoch, the best epoch is kept, and a
run stopped after any epoch resumes to exactly the weights of an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest

import npcnn
from npcnn.checkpoints import Checkpoint
from npcnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from npcnn.optimizers import OneCycleLR


def small_model() -> npcnn.Sequential:
    layers = [Conv2D(4, 3), BatchNorm(), ReLU(), MaxPool2D(2), Flatten(), Dropout(0.2), Dense(3)]
    return npcnn.Sequential(layers, input_shape=(1, 8, 8), seed=7)


def data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 120)
    x = rng.random((120, 1, 8, 8), dtype=np.float32) * 0.2
    for i, label in enumerate(y):
        x[i, 0, 2 * label : 2 * label + 3, :] += 0.8  # a band whose height gives the class
    return x, y


def jitter(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return batch + 0.02 * rng.standard_normal(batch.shape).astype(batch.dtype)


def run(model, optimizer, epochs, **options):
    """Train up to ``epochs`` of a run planned for 3 (the schedule spans 3 epochs)."""
    x, y = data(0)
    return npcnn.fit(
        model, x, y, epochs=epochs, batch_size=32, optimizer=optimizer, augment=jitter,
        schedule=OneCycleLR(1e-2, 4 * 3), validation_data=data(1), verbose=False, **options,
    )  # fmt: skip


def test_callbacks_see_every_epoch():
    seen = []
    history = run(small_model(), npcnn.Adam(), 3, callbacks=[lambda m, e, x: seen.append(e)])
    assert seen == [1, 2, 3] and [h["epoch"] for h in history] == [1, 2, 3]


@pytest.mark.parametrize("stop_after", [1, 2])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, backend, stop_after):
    options = {"lr": 1e-2, "epochs": 3}
    straight_optimizer = npcnn.Adam()
    straight = small_model()
    checkpoint = Checkpoint(tmp_path / "straight.npz", straight_optimizer, options)
    run(straight, straight_optimizer, 3, callbacks=[checkpoint])

    first = small_model()
    optimizer = npcnn.Adam()
    partial = Checkpoint(tmp_path / "partial.npz", optimizer, options)
    run(first, optimizer, stop_after, callbacks=[partial])  # then the process "dies"

    optimizer = npcnn.Adam()
    model, resumed = Checkpoint.resume(tmp_path / "partial.npz", optimizer, options)
    assert resumed.state.epoch == stop_after
    run(model, optimizer, 3, callbacks=[resumed], initial_epoch=resumed.state.epoch)

    for (name, a, _), (_, b, _) in zip(straight.parameters(), model.parameters(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert [h["loss"] for h in resumed.state.history] == [
        h["loss"] for h in checkpoint.state.history
    ]
    assert resumed.state.best_epoch == checkpoint.state.best_epoch
    best = resumed.best_model().predict(data(1)[0])
    np.testing.assert_array_equal(best, checkpoint.best_model().predict(data(1)[0]))


def test_resume_refuses_other_options_and_non_checkpoints(tmp_path):
    optimizer = npcnn.Adam()
    run(
        small_model(),
        optimizer,
        1,
        callbacks=[Checkpoint(tmp_path / "c.npz", optimizer, {"lr": 1})],
    )
    with pytest.raises(npcnn.ConfigError, match="other options"):
        Checkpoint.resume(tmp_path / "c.npz", npcnn.Adam(), {"lr": 2})
    npcnn.save(small_model(), tmp_path / "model.npz")
    with pytest.raises(npcnn.ModelFileError, match="not a training checkpoint"):
        Checkpoint.resume(tmp_path / "model.npz", npcnn.Adam(), {"lr": 1})


def test_the_best_epoch_is_kept():
    optimizer = npcnn.Adam()
    checkpoint = Checkpoint("/dev/null/never-written.npz", optimizer, monitor="val_accuracy")
    checkpoint.save = lambda model: None  # keep this test off the disk
    model = small_model()
    history = run(model, optimizer, 4, callbacks=[checkpoint])
    scores = [h["val_accuracy"] for h in history]
    assert checkpoint.state.best_epoch == 1 + int(np.argmax(scores))
    assert checkpoint.state.best_score == max(scores)
    assert checkpoint.best_model().evaluate(*data(1))["accuracy"] == pytest.approx(max(scores))
