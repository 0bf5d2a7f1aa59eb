"""The exceptions of the digit application; all are ``npcnn.NpcnnError``s."""

from npcnn.errors import NpcnnError


class DataError(NpcnnError):
    """A data set could not be found, fetched, parsed or verified."""


class ImageError(NpcnnError):
    """An image could not be decoded or is unusable (zero size, too large, ...)."""


class NoInkError(ImageError):
    """The image holds nothing to recognise (blank, or only background)."""
