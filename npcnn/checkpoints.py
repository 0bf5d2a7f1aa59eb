"""Checkpoints: save a training run after every epoch, and resume it exactly.

A checkpoint is one ``.npz`` file (written atomically, read without pickle, like a model file)
holding everything a run needs to go on as if it had never stopped:

- ``model/...``: the model (architecture, weights, BatchNorm statistics), as ``npcnn.save`` does;
- ``optimizer/...``: the optimiser's step count, learning rate and moments;
- ``best/...``: the weights of the best epoch so far (by validation accuracy), the model to keep;
- ``state``: JSON with the epoch reached, the history, the best epoch and its score, the seconds
  spent, the options of the run, and the state of the model's random generator (which drives
  shuffling, augmentation and dropout).

Use it as a callback of ``fit``; an interrupted run loses at most the epoch it was in::

    checkpoint = Checkpoint("run.npz", optimizer, options={"lr": 3e-3})
    model.fit(x, y, epochs=20, optimizer=optimizer, validation_data=val, callbacks=[checkpoint])
    ...
    model, checkpoint = Checkpoint.resume("run.npz", optimizer, options={"lr": 3e-3})
    model.fit(x, y, epochs=20, optimizer=optimizer, validation_data=val,
              initial_epoch=checkpoint.state.epoch, callbacks=[checkpoint])
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, ModelFileError
from .io import (
    array_to_json,
    json_to_array,
    model_arrays,
    model_from_arrays,
    read_npz,
    save_npz_atomic,
)
from .model import Sequential
from .optimizers import Optimizer


@dataclass
class RunState:
    """How far a training run has come."""

    options: dict[str, Any] = field(default_factory=dict)  # what defines the run (lr, epochs...)
    epoch: int = 0  # epochs finished
    history: list[dict[str, float]] = field(default_factory=list)  # fit's metrics, per epoch
    best_epoch: int = 0
    best_score: float = -math.inf
    seconds: float = 0.0  # wall time of the finished epochs, with validation and saving


class Checkpoint:
    """A ``fit`` callback: after each epoch, remember the best weights (by ``monitor``, higher is
    better) and write the run to ``path``."""

    def __init__(
        self,
        path: str | Path,
        optimizer: Optimizer,
        options: dict[str, Any] | None = None,
        monitor: str = "val_accuracy",
    ) -> None:
        self.path = Path(path)
        self.optimizer = optimizer
        self.monitor = monitor
        self.state = RunState(options=dict(options or {}))
        self.best_arrays: dict[str, np.ndarray] | None = None
        self._last_tick = time.perf_counter()

    def __call__(self, model: Sequential, epoch: int, metrics: dict[str, float]) -> None:
        state = self.state
        state.epoch = epoch
        state.history.append(dict(metrics))
        score = metrics.get(self.monitor, metrics.get("accuracy", 0.0))
        if self.best_arrays is None or score > state.best_score:
            state.best_score, state.best_epoch = score, epoch
            # copies: the optimiser updates the parameters in place, later epochs would change them
            self.best_arrays = {k: v.copy() for k, v in model_arrays(model).items()}
        now = time.perf_counter()
        state.seconds += now - self._last_tick
        self._last_tick = now
        self.save(model)

    def save(self, model: Sequential) -> None:
        """Write the model, optimiser, best weights and run state to ``path``, atomically."""
        arrays = {f"model/{k}": v for k, v in model_arrays(model).items()}
        arrays |= {f"best/{k}": v for k, v in (self.best_arrays or model_arrays(model)).items()}
        arrays |= {f"optimizer/{k}": v for k, v in self.optimizer.state_dict().items()}
        document = {**asdict(self.state), "rng": model.rng.bit_generator.state}
        arrays["state"] = json_to_array(document)
        save_npz_atomic(self.path, arrays)

    def best_model(self) -> Sequential:
        """The model as it was after its best epoch so far."""
        if self.best_arrays is None:
            raise ConfigError("no epoch has finished yet: there is no best model")
        return model_from_arrays(self.best_arrays, source=f"best epoch of {self.path}")

    @classmethod
    def resume(
        cls,
        path: str | Path,
        optimizer: Optimizer,
        options: dict[str, Any] | None = None,
        monitor: str = "val_accuracy",
    ) -> tuple[Sequential, Checkpoint]:
        """The model and a checkpoint callback restored from ``path``, ready to go on.

        ``options`` must equal the saved run's options (a run resumes only as itself):
        ``ConfigError`` names the ones that differ.  ``ModelFileError`` if the file is not a
        readable checkpoint.
        """
        arrays = read_npz(path)
        if "state" not in arrays:
            raise ModelFileError(f"{path} is not a training checkpoint")

        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

        document = array_to_json(arrays["state"])
        rng_state = document.pop("rng")
        checkpoint = cls(path, optimizer, options, monitor)
        saved = RunState(**document)
        wanted = checkpoint.state.options
        if options is not None and saved.options != wanted:
            changed = {
                k: (saved.options.get(k), wanted.get(k))
                for k in sorted(set(saved.options) | set(wanted))
                if saved.options.get(k) != wanted.get(k)
            }
            raise ConfigError(f"{path} was made with other options (saved, now): {changed}")
        checkpoint.state = saved
        model = model_from_arrays(part("model/"), source=str(path))
        model.rng.bit_generator.state = rng_state
        optimizer.load_state_dict(part("optimizer/"))
        checkpoint.best_arrays = part("best/")
        return model, checkpoint
