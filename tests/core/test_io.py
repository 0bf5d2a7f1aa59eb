"""Save/load: identical predictions after a round trip; every kind of bad file gives a clear
ModelFileError; nothing is ever unpickled."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import npcnn
from npcnn.digits import architectures
from npcnn.errors import ModelFileError
from npcnn.io import HEADER_KEY, json_to_array, model_arrays


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model with non-trivial weights and BatchNorm statistics, and its file."""
    model = architectures.build("shipped", seed=1)
    rng = np.random.default_rng(0)
    x = rng.random((16, 1, 28, 28), dtype=np.float32)
    model.train_step(x, rng.integers(0, 10, 16), npcnn.Adam())
    path = tmp_path_factory.mktemp("io") / "model.npz"
    npcnn.save(model, path, metadata={"metrics": {"test_accuracy": 0.5}, "note": "ünïcode"})
    return model, path, x


def test_round_trip_gives_identical_predictions(trained):
    model, path, x = trained
    loaded = npcnn.load(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.metadata == {"metrics": {"test_accuracy": 0.5}, "note": "ünïcode"}
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    np.testing.assert_array_equal(
        loaded.layers[1].buffers["running_var"], model.layers[1].buffers["running_var"]
    )


def test_the_file_holds_no_pickles(trained):
    _, path, _ = trained
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            assert data[key].dtype != object
    header = json.loads(np.load(path)[HEADER_KEY].tobytes())
    assert header["format"] == "npcnn-model" and header["version"] == 1


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        npcnn.load(tmp_path / "nope.npz")


def test_a_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelFileError, match="not a file"):
        npcnn.load(tmp_path)


@pytest.mark.parametrize("keep", [0, 10, 100, 1000, -200])
def test_truncated_file(trained, tmp_path, keep):
    _, path, _ = trained
    data = path.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(ModelFileError, match="truncated or corrupt|not a valid|cannot read"):
        npcnn.load(bad)


def test_garbage_file(tmp_path):
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ModelFileError):
        npcnn.load(bad)


def test_an_npz_that_is_not_a_model(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ModelFileError, match="not an npcnn model"):
        npcnn.load(other)


def test_a_pickled_array_is_refused(tmp_path):
    evil = tmp_path / "evil.npz"
    np.savez(evil, **{HEADER_KEY: np.array([{"x": 1}], dtype=object)})
    with pytest.raises(ModelFileError):
        npcnn.load(evil)


def rewrite(path, tmp_path, change):
    arrays = dict(np.load(path, allow_pickle=False))
    change(arrays)
    out = tmp_path / "changed.npz"
    np.savez(out, **arrays)
    return out


def test_wrong_shape_is_named(trained, tmp_path):
    _, path, _ = trained
    out = rewrite(path, tmp_path, lambda a: a.update({"0.W": np.zeros((3, 1, 5, 5), np.float32)}))
    with pytest.raises(ModelFileError, match=r"'0.W' has shape \(3, 1, 5, 5\)"):
        npcnn.load(out)


def test_missing_array_is_named(trained, tmp_path):
    _, path, _ = trained
    out = rewrite(path, tmp_path, lambda a: a.pop("1.running_mean"))
    with pytest.raises(ModelFileError, match="missing array '1.running_mean'"):
        npcnn.load(out)


def test_non_finite_weights_are_refused(trained, tmp_path):
    _, path, _ = trained

    def poison(a):
        a["0.b"] = a["0.b"].copy()
        a["0.b"][0] = np.nan

    with pytest.raises(ModelFileError, match="finite"):
        npcnn.load(rewrite(path, tmp_path, poison))


def test_unknown_layer_and_version(trained, tmp_path):
    model, path, _ = trained

    def header_with(**changes):
        header = json.loads(model_arrays(model)[HEADER_KEY].tobytes())
        header.update(changes)
        return lambda a: a.update({HEADER_KEY: json_to_array(header)})

    bad_layers = [{"type": "Transformer", "config": {}}]
    with pytest.raises(ModelFileError, match="unknown layer type"):
        npcnn.load(rewrite(path, tmp_path, header_with(layers=bad_layers)))
    with pytest.raises(ModelFileError, match="format version 99"):
        npcnn.load(rewrite(path, tmp_path, header_with(version=99)))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        npcnn.load(
            rewrite(
                path, tmp_path, lambda a: a.update({HEADER_KEY: np.frombuffer(b"{oops", np.uint8)})
            )
        )


def test_save_is_atomic_and_leaves_no_temporary_files(trained, tmp_path):
    model, _, _ = trained
    target = tmp_path / "sub" / "m.npz"
    npcnn.save(model, target)
    npcnn.save(model, target)  # overwrite
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.npz"]
    assert zipfile.is_zipfile(target)
