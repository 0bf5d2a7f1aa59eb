"""The exceptions npcnn raises.  Catch ``NpcnnError`` to catch them all."""


class NpcnnError(Exception):
    """Base class of every error npcnn raises on purpose."""


class ModelFileError(NpcnnError):
    """A model file is missing, truncated, corrupt, or not an npcnn model."""


class DataError(NpcnnError):
    """A data set could not be found, fetched, parsed or verified."""


class ImageError(NpcnnError):
    """An image could not be decoded or is unusable (zero size, too large, ...)."""


class NoInkError(ImageError):
    """The image holds nothing to recognise (blank, or only background)."""
