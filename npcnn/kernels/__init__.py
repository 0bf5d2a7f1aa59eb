"""The hot loops of a CNN, and the choice of who runs them: plain NumPy or Numba.

``KERNEL_NAMES`` is the one list of kernels.  Every backend provides each of them, with the same
signature and the same result up to float rounding (tests check both):

- ``numpy``: the readable reference, ``numpy_ref.py``, which documents every kernel;
- ``numba``: the compiled twins, the package ``numba/`` (one module per job), when Numba is
  installed.

``kernels.conv2d_forward(...)`` and the other names of the table call the active backend's
function: ``set_backend`` binds each name of the table here.  The environment variable
``NPCNN_BACKEND`` picks at import time: ``auto`` (default: Numba if it can be imported, otherwise
NumPy), ``numpy`` or ``numba`` (an error if Numba is missing); ``set_backend(name)`` switches at
run time (the tests run once per backend).  Images are channels-last ``(N, H, W, C)`` here.

The backend is the kernels' only state; the process-wide settings (threads, memory allocator,
OpenMP) live in ``npcnn.settings``.
"""

from __future__ import annotations

import os
from types import ModuleType

from ..errors import ConfigError
from ..settings import keep_freed_memory_for_reuse  # noqa: F401  (Sequential.fit calls it here)
from . import numpy_ref

try:
    import numba as _numba_library  # noqa: F401  (the compiler, not our package below)
except ImportError:  # Numba is optional: everything works without it, only slower.
    numba_backend = None
else:  # a backend that fails to import with Numba installed is a bug: no silent fallback
    from . import numba as numba_backend

KERNEL_NAMES = (
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "dense_forward",
    "dense_backward",
    "maxpool_forward",
    "maxpool_values",
    "maxpool_backward",
    "relu_forward",
    "relu_backward",
    "column_mean_var",
    "batchnorm_forward",
    "batchnorm_backward",
    "adam_update",
    "sample_bilinear",
)

BACKENDS = ("auto", "numpy", "numba")
_active = "numpy"


def available_backends() -> list[str]:
    """The concrete backends that can be used on this machine."""
    return ["numpy"] + (["numba"] if numba_backend is not None else [])


def backend_module(name: str) -> ModuleType:
    """The module (or package) holding the kernels of the concrete backend ``name``."""
    modules = {"numpy": numpy_ref, "numba": numba_backend}
    if modules.get(name) is None:
        raise ConfigError(f"no backend {name!r} here: choose one of {available_backends()}")
    return modules[name]


def set_backend(name: str) -> str:
    """Use ``name`` (``auto``, ``numpy`` or ``numba``) from now on; returns the concrete choice."""
    global _active
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ConfigError(f"unknown NPCNN_BACKEND {name!r}: choose one of {', '.join(BACKENDS)}")
    if name == "numba" and numba_backend is None:
        raise ImportError("NPCNN_BACKEND=numba, but Numba is not installed (pip install numba)")
    if name == "auto":
        name = "numba" if numba_backend is not None else "numpy"
    module = backend_module(name)
    globals().update({kernel: getattr(module, kernel) for kernel in KERNEL_NAMES})
    _active = name
    return name


def get_backend() -> str:
    """The concrete backend in use: ``"numpy"`` or ``"numba"``."""
    return _active


set_backend(os.environ.get("NPCNN_BACKEND", "auto"))
