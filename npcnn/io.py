"""Save and load models as a single ``.npz`` file — no pickle anywhere.

The file holds:

- ``__npcnn__``: a JSON document (as UTF-8 bytes) with the format version, the architecture
  (each layer's type and constructor arguments), the input shape, and free-form metadata
  (training configuration, metrics, ...);
- one array per parameter and buffer, named ``"<layer index>.<name>"`` (e.g. ``"0.W"``).

Loading uses ``np.load(..., allow_pickle=False)``, rebuilds the layers from the JSON, and checks
that every array is present with the right shape and a float dtype.  Anything else raises
``ModelFileError`` with a message that names the problem.  Writes are atomic: a temporary file
in the same folder is renamed over the target, so an interrupted save never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFileError
from .layers import LAYER_TYPES
from .model import Sequential

FORMAT = "npcnn-model"
FORMAT_VERSION = 1
HEADER_KEY = "__npcnn__"


def save_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as a compressed ``.npz``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a saved model is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_to_array(document: dict[str, Any]) -> np.ndarray:
    """JSON as a uint8 array (storable without pickle)."""
    return np.frombuffer(json.dumps(document).encode("utf-8"), dtype=np.uint8)


def array_to_json(array: np.ndarray) -> dict[str, Any]:
    return json.loads(array.tobytes().decode("utf-8"))


def model_arrays(
    model: Sequential, metadata: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """The header and every parameter/buffer of ``model``, as a dict of arrays."""
    if not model.built:
        raise ModelFileError("cannot save a model that was never built (no input shape yet)")
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "input_shape": list(model.input_shape),
        "dtype": model.dtype.name,
        "layers": [
            {"type": type(layer).__name__, "config": layer.config()} for layer in model.layers
        ],
        "metadata": metadata if metadata is not None else model.metadata,
    }
    arrays = {HEADER_KEY: json_to_array(header)}
    for i, layer in enumerate(model.layers):
        for name, value in {**layer.params, **layer.buffers}.items():
            arrays[f"{i}.{name}"] = value
    return arrays


def save_model(model: Sequential, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Save ``model`` (architecture + weights + ``metadata``) to ``path`` (``.npz``).

    ``metadata`` (JSON-able: training options, metrics, ...) replaces ``model.metadata``.
    """
    if metadata is not None:
        model.metadata = metadata
    save_npz_atomic(path, model_arrays(model, metadata))


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, or ``ModelFileError`` saying why it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"not a file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, EOFError) as error:
        raise ModelFileError(
            f"{path} is truncated or corrupt (not a valid .npz): {error}"
        ) from None
    except ValueError as error:
        raise ModelFileError(f"{path} is not a valid npcnn model file: {error}") from None
    except (OSError, zipfile.LargeZipFile, KeyError) as error:
        raise ModelFileError(f"cannot read {path}: {error}") from None


def model_from_arrays(arrays: dict[str, np.ndarray], source: str = "model") -> Sequential:
    """Rebuild a model from ``model_arrays`` output, checking everything."""
    if HEADER_KEY not in arrays:
        raise ModelFileError(f"{source} is not an npcnn model (no {HEADER_KEY} header)")
    try:
        header = array_to_json(arrays[HEADER_KEY])
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{source}: the model header is not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{source} is not an npcnn model file")
    if header.get("version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{source} has format version {header.get('version')!r}; "
            f"this npcnn reads version {FORMAT_VERSION}"
        )
    try:
        layers = [LAYER_TYPES[spec["type"]](**spec["config"]) for spec in header["layers"]]
        model = Sequential(
            layers,
            input_shape=tuple(header["input_shape"]),
            dtype=np.dtype(header.get("dtype", "float32")).type,
        )
    except KeyError as error:
        raise ModelFileError(f"{source}: unknown layer type or missing field {error}") from None
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{source}: invalid architecture ({error})") from None
    for i, layer in enumerate(model.layers):
        for store in (layer.params, layer.buffers):
            for name, expected in store.items():
                key = f"{i}.{name}"
                if key not in arrays:
                    raise ModelFileError(f"{source}: missing array {key!r} ({layer.name}.{name})")
                value = arrays[key]
                if value.shape != expected.shape:
                    raise ModelFileError(
                        f"{source}: {key!r} has shape {value.shape}, "
                        f"the architecture needs {expected.shape}"
                    )
                if value.dtype.kind != "f" or not np.isfinite(value).all():
                    raise ModelFileError(f"{source}: {key!r} is not a finite float array")
                store[name] = value.astype(model.dtype)
    model.metadata = header.get("metadata") or {}
    return model


def load_model(path: str | Path) -> Sequential:
    """Load a model saved by ``Sequential.save``; ``ModelFileError`` if anything is wrong."""
    return model_from_arrays(read_npz(path), source=str(path))
