"""npcnn — a small, fast, readable convolutional-network framework in NumPy.

>>> import npcnn
>>> from npcnn.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense
>>> model = npcnn.Sequential([Conv2D(1, 8, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(1352, 10)])
>>> model.predict(np.zeros((1, 1, 28, 28), np.float32)).shape  # doctest: +SKIP
(1, 10)
"""

from . import gradcheck, kernels, layers, losses, optimizers
from .errors import ConfigError, ModelFileError, NpcnnError, ShapeError
from .io import load_model as load
from .io import save_model as save
from .kernels import get_backend, set_backend
from .layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from .losses import SoftmaxCrossEntropy, softmax
from .model import Sequential
from .optimizers import SGD, Adam, CosineLR, OneCycleLR, StepLR
from .threads import set_threads

__version__ = "0.1.0"

__all__ = [
    "SGD",
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
