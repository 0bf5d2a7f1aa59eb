"""npcnn — a small, fast, readable convolutional-network framework in NumPy.

>>> import npcnn
>>> from npcnn.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense
>>> model = npcnn.Sequential([Conv2D(8, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(10)])
>>> model.predict(np.zeros((1, 1, 28, 28), np.float32)).shape  # doctest: +SKIP
(1, 10)

The framework: layers, models, training, files, gradient checks and kernels.  It needs only NumPy
(and Numba, optionally); the digit application lives in ``npcnn.digits``.
"""

from . import checkpoints, gradcheck, kernels, layers, losses, optimizers, training
from .checkpoints import Checkpoint
from .errors import ConfigError, ModelFileError, NpcnnError, ShapeError
from .folding import fold_batchnorm
from .io import load_model as load
from .io import save_model as save
from .kernels import get_backend, set_backend
from .layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from .losses import SoftmaxCrossEntropy, softmax
from .model import Inspection, Sequential
from .optimizers import SGD, Adam, CosineLR, OneCycleLR, StepLR
from .settings import set_threads

__version__ = "0.1.0"

from .training import evaluate, fit, train_step

__all__ = [
    "SGD",
    "Checkpoint",
    "Inspection",
    "checkpoints",
    "evaluate",
    "fit",
    "fold_batchnorm",
    "train_step",
    "training",
    "ShapeError",
    "Adam",
    "BatchNorm",
    "Conv2D",
    "CosineLR",
    "ConfigError",
    "Dense",
    "Dropout",
    "Flatten",
    "MaxPool2D",
    "ModelFileError",
    "NpcnnError",
    "OneCycleLR",
    "ReLU",
    "Sequential",
    "SoftmaxCrossEntropy",
    "StepLR",
    "get_backend",
    "gradcheck",
    "kernels",
    "layers",
    "load",
    "losses",
    "optimizers",
    "save",
    "set_backend",
    "set_threads",
    "softmax",
]
