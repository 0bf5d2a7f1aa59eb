"""The exceptions npcnn raises.  Catch ``NpcnnError`` to catch them all.

Errors about bad arguments or inputs also derive from ``ValueError``, so code written before
they existed (``except ValueError``) still catches them.
"""


class NpcnnError(Exception):
    """Base class of every error npcnn raises on purpose."""


class ShapeError(NpcnnError, ValueError):
    """An array has the wrong shape or size for a layer, a model or a kernel."""


class ConfigError(NpcnnError, ValueError):
    """An argument is out of range or inconsistent (a padding, a rate, a batch size, ...)."""


class ModelFileError(NpcnnError):
    """A model file is missing, truncated, corrupt, or not an npcnn model."""
