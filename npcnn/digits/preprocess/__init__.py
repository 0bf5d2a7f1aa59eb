"""Any picture of a digit -> what MNIST looks like: a float32 (28, 28) image, white digit on black.

A model trained on MNIST has only ever seen digits prepared one particular way, and a drawing
from a canvas or a photo of paper looks nothing like that.  Preprocessing rebuilds MNIST's look
from any picture, one step per module, and the data flows one way:

    bytes --decode--> picture --ink--> clean ink --framing--> (28, 28)       one digit: to_mnist
                                                 \\--segment--> [(28, 28), box] per digit of a number

- ``decode``: untrusted bytes -> a Pillow image (size limits before decoding, safe formats, EXIF
  orientation, big pictures reduced) -> float arrays at working resolution (``load_image``).
- ``ink``: steps 1-4, transparency, grayscale, the background surface and the noise level,
  polarity, specks -> clean bright ink on black (``find_ink``), or ``NoInkError``; ``ruling``
  (step 4b) takes a ruled page's lines out.
- ``framing``: steps 5-8, crop to the ink, normalise the stroke width, scale the longer side to
  20 px and put the centre of mass at (14, 14) of 28x28 (``to_mnist``).
- ``segment``: a written number -> one framed crop per digit with its box (``segment_digits``).

Every step is a small public function, so you can watch what happens; the names below are
re-exported here so that ``from npcnn.digits.preprocess import to_mnist`` and friends work.
"""

from npcnn.digits.preprocess.decode import (
    DECODABLE_FORMATS,
    WORK_PIXELS,
    WorkingImage,
    decode_image,
    load_image,
)
from npcnn.digits.preprocess.framing import (
    ANALYSIS_SIDE,
    MNIST_BOX,
    MNIST_CENTRE,
    MNIST_SIZE,
    MNIST_STROKE_WIDTH,
    STROKE_RAMP,
    STROKE_TOLERANCE,
    center_of_mass,
    crop_to_ink,
    ink_to_mnist,
    normalise_stroke,
    place_in_frame,
    stroke_goal,
    stroke_width,
    to_mnist,
)
from npcnn.digits.preprocess.ink import (
    EIGHT_NEIGHBOURS,
    LUMA,
    MIN_CONTRAST,
    MIN_INK_MASS,
    SPECK_FRACTION,
    InkImage,
    estimate_noise,
    find_ink,
    fit_background,
    flatten_alpha,
    keep_main_ink,
    make_ink_bright,
    piece_masses,
    remove_specks,
    rescale_ink,
    to_grayscale,
)
from npcnn.digits.preprocess.segment import DigitCrop, segment_digits

__all__ = [
    "ANALYSIS_SIDE",
    "DECODABLE_FORMATS",
    "EIGHT_NEIGHBOURS",
    "LUMA",
    "MIN_CONTRAST",
    "MIN_INK_MASS",
    "MNIST_BOX",
    "MNIST_CENTRE",
    "MNIST_SIZE",
    "MNIST_STROKE_WIDTH",
    "SPECK_FRACTION",
    "STROKE_RAMP",
    "STROKE_TOLERANCE",
    "WORK_PIXELS",
    "DigitCrop",
    "InkImage",
    "WorkingImage",
    "center_of_mass",
    "crop_to_ink",
    "decode_image",
    "estimate_noise",
    "find_ink",
    "ink_to_mnist",
    "fit_background",
    "flatten_alpha",
    "keep_main_ink",
    "load_image",
    "make_ink_bright",
    "piece_masses",
    "normalise_stroke",
    "place_in_frame",
    "remove_specks",
    "rescale_ink",
    "segment_digits",
    "stroke_goal",
    "stroke_width",
    "to_grayscale",
    "to_mnist",
]
