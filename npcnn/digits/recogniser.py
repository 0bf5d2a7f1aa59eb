"""Picture -> reading: what the app asks of a trained digit model.

Data flows one way: bytes -> ``open_picture`` (safe decoding) -> ``to_mnist`` (one digit) or
``numbers.number_candidates`` (a number) -> ``model.predict`` -> a *reading*: a dict ready to be
sent as JSON::

    {"digit": 7, "confidence": 0.99, "probabilities": [10 floats], "is_digit": true,
     "not_digit_probability": 0.0, "low_confidence": false, "runner_up": 1,
     "preview": "data:image/png;base64,..."}

A model with an eleventh output (class 10: "not a digit") may answer ``"is_digit": false``;
``digit`` is then still the closest digit (see ``reading``).  ``read_digit`` also says whether the
picture ``looks_like_number`` (2+ digits side by side: the page suggests number mode).

``Recogniser.read_number`` reads a whole number through a sliding window when a number reader
is loaded (``npcnn.digits.number_windows``: a second network says, window by window along the
line, which digit is centred there, if any), and by recognition-driven segmentation when that
reading is unsure or there is no reader (``npcnn.digits.numbers``: the ink proposes cuts, the
digit model scores every candidate digit in one batch, dynamic programming picks the best reading
and its runner-up); ``method="ink"`` keeps the older ink-only segmentation
(``preprocess.segment_digits``) for comparison.

``Recogniser.explain`` adds what the network looks at, from one forward and one backward pass
(``Sequential.inspect``): the saliency map and the first convolution block's feature maps, drawn
by ``npcnn.digits.analysis`` exactly as the guide (docs/05) defines them.

``Recogniser.read_digits`` reads a batch of pictures with one forward pass; a picture that cannot
be read gets its own error in its place and the others are still read.

Every answer names the model that gave it: ``"model": {"name": ..., "version": ...}``, where the
version is the first 12 hex digits of the sha256 of the weights file's bytes (``model_version``),
so two servers with the same version serve the very same weights.

Bad input raises ``ImageError`` (cannot be decoded or used), ``NoInkError`` (nothing to recognise)
or ``TooManyMarksError`` (a "number" of too many pieces), all ``npcnn.NpcnnError``s.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import hashlib
import io
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

import npcnn
from npcnn.digits import analysis, number_choice, number_sequence, number_windows, numbers
from npcnn.digits.errors import ImageError, NoInkError
from npcnn.digits.number_choice import WINDOW_TRUST
from npcnn.digits.numbers import MAX_DIGITS, TooManyMarksError
from npcnn.digits.preprocess import (
    InkImage,
    decode_image,
    find_ink,
    ink_to_mnist,
    segment_digits,
)
from npcnn.errors import ConfigError, ModelFileError, NpcnnError

NUMBER_READER_FILE = "number_reader.npz"  # the window reader's weights, beside the model's
# a second number reader, trained the same way on other pictures: when the first one is unsure,
# the two read the windows together (their probabilities averaged), beside the model's too
SECOND_READER_FILE = "number_reader_2.npz"
# the sequence head (number_sequence): with both readers, it reads their windows as one sequence
SEQUENCE_FILE = "number_sequence.npz"
LOW_CONFIDENCE = 0.6  # below this top probability the page says "not sure"
VERSION_DIGITS = 12  # hex digits of the weights' sha256 that name a model version
NOT_A_DIGIT = 10  # class 10 of an 11-output model: "that is not a digit" (npcnn.digits.synth)

log = logging.getLogger("npcnn.digits.recogniser")


# --------------------------------------------------------------------- bytes in, pictures out
_DATA_URL = re.compile(r"data:(?P<mime>[^,;]*)(?P<params>(?:;[^,;]*)*),(?P<data>.*)", re.DOTALL)
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def decode_base64_image(text: str) -> bytes:
    """The bytes of ``data:image/png;base64,....`` or of bare base64 (standard or URL-safe)."""
    text = text.strip()
    if text[:5].lower() == "data:":
        match = _DATA_URL.fullmatch(text)
        if match is None:
            raise ImageError("malformed data URL: expected 'data:<type>;base64,<data>'")
        if "base64" not in match["params"].lower().split(";"):
            raise ImageError("the data URL must be base64-encoded ('data:<type>;base64,...')")
        text = match["data"]
    text = "".join(text.split())  # line breaks and spaces inside base64 are harmless
    if not text:
        raise ImageError("the image is empty")
    if not _BASE64_CHARS.fullmatch(text):
        raise ImageError("the image is not valid base64")
    text = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        raise ImageError("the image is not valid base64 (truncated)")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("the image is not valid base64") from None


def open_picture(data: bytes) -> Image.Image:
    """Untrusted bytes -> a Pillow image, decoded safely (size limits, decompression bombs)."""
    if not data:
        raise ImageError("the image is empty")
    try:
        return decode_image(data)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        # decode_image should turn these into ImageError; this is the belt to its braces.
        log.warning("decode_image let %r through", error)
        raise ImageError("the image could not be decoded") from None


def png_data_url(pixels: np.ndarray) -> str:
    """A PNG data URL of ``pixels``: uint8 (H, W) grey or (H, W, 3) colour."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def reading(image: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """What the model read in one (28, 28) ``image``, given its ``probabilities`` (one per class).

    A digit model has 10 classes; a model with an eleventh, ``NOT_A_DIGIT`` (10), may answer
    "that is not a digit": ``is_digit`` is false when class 10 is the most probable.  Either way
    ``digit`` is the closest digit (the most probable of classes 0-9), ``confidence`` its
    probability, ``probabilities`` the ten digits' and ``not_digit_probability`` class 10's
    (0.0 for a 10-class model).  ``low_confidence`` is a separate signal, on ``confidence``.
    """
    digits = probabilities[:NOT_A_DIGIT]
    order = np.argsort(digits)[::-1]
    confidence = float(digits[order[0]])
    refusal = float(probabilities[NOT_A_DIGIT]) if len(probabilities) > NOT_A_DIGIT else 0.0
    return {
        "digit": int(order[0]),
        "confidence": round(confidence, 6),
        "probabilities": [round(float(p), 6) for p in digits],
        "is_digit": not (len(probabilities) > NOT_A_DIGIT and refusal > digits.max()),
        "not_digit_probability": round(refusal, 6),
        "low_confidence": confidence < LOW_CONFIDENCE,
        "runner_up": int(order[1]),
        "preview": png_data_url(analysis.to_pixels(image)),  # what the model saw, grey
    }


# --------------------------------------------------------------------- model identity
def model_version(data: bytes) -> str:
    """The version of the model saved as ``data`` (a weights file's bytes): the first 12 hex
    digits of their sha256."""
    return hashlib.sha256(data).hexdigest()[:VERSION_DIGITS]


def window_width(reader: npcnn.Sequential) -> int:
    """How wide (pixels) the windows a number reader reads are: its input's last axis (a reader
    not built yet for any input: ``number_windows.WINDOW``, square windows, as always)."""
    if reader.input_shape is None:
        return number_windows.WINDOW
    if len(reader.input_shape) != 3:
        raise ConfigError(f"a number reader reads (1, 28, width) windows, not {reader.input_shape}")
    return int(reader.input_shape[-1])


def parameters_version(model: npcnn.Sequential) -> str:
    """A version for a model that has no file (built in memory): the sha256 of its parameters'
    names, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for name, array, _ in model.parameters():
        digest.update(f"{name}{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:VERSION_DIGITS]


# The stages of a request that ``Recogniser`` times for whoever watches (the app's metrics):
# ``preprocess`` (bytes -> 28x28: decode, ink, framing or segmentation) and ``model`` (the
# forward pass; for an explanation the forward and the backward pass).
StageObserver = Callable[[str, float], None]


# --------------------------------------------------------------------- the recogniser
WARM_UP_BATCH = 64  # images: as many as a number's windows or candidate digits


def _warm_up_number() -> bytes:
    """A PNG of a number drawn in black on white, "1 0 7 1": something for ``warm_up`` to read."""
    picture = Image.new("L", (260, 90), 255)
    pen = ImageDraw.Draw(picture)
    pen.line([(30, 15), (30, 75)], fill=0, width=7)  # 1
    pen.ellipse([(60, 15), (100, 75)], outline=0, width=7)  # 0
    pen.line([(125, 15), (165, 15), (140, 75)], fill=0, width=7)  # 7
    pen.line([(200, 15), (200, 75)], fill=0, width=7)  # 1
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


class Recogniser:
    """A trained model and what the app asks of it: read a digit, read a number, explain.

    The number readers predict on copies with their BatchNorms folded in
    (``npcnn.fold_batchnorm``).  ``predict`` runs in eval mode and only writes the layers'
    caches, never reads them, so it may run on many threads at once.  ``explain`` needs a
    backward pass (which reads those caches), so it runs on a private copy of the model, one
    request at a time, under a lock.

    ``name`` and ``version`` say which model answers (``version``: ``model_version`` of the
    weights file; without a file, ``parameters_version``).  ``observe(stage, seconds)``, when
    given, is told how long each stage of each reading took (see ``StageObserver``).
    """

    def __init__(
        self,
        model: npcnn.Sequential,
        *,
        version: str | None = None,
        weights_file: str | None = None,
        observe: StageObserver | None = None,
        number_reader: npcnn.Sequential | None = None,
        number_reader_version: str | None = None,
        second_reader: npcnn.Sequential | None = None,
        second_reader_version: str | None = None,
        chooser: number_choice.Chooser | None = None,
        sequence_head: npcnn.Sequential | None = None,
    ) -> None:
        self.model = model
        self.number_reader = number_reader
        self.second_reader = second_reader if number_reader is not None else None
        self.second_reader_version = second_reader_version or (
            None if self.second_reader is None else parameters_version(self.second_reader)
        )
        self.window_width = number_windows.WINDOW
        if number_reader is not None:
            self.window_width = window_width(number_reader)
            if (
                self.second_reader is not None
                and window_width(self.second_reader) != self.window_width
            ):
                raise ConfigError(
                    f"the second reader reads windows {window_width(self.second_reader)} pixels "
                    f"wide, the first {self.window_width}: they must read the same windows"
                )
        self.chooser = chooser
        self.number_reader_version = number_reader_version or (
            None if number_reader is None else parameters_version(number_reader)
        )
        # the number readers predict with each BatchNorm folded into the layer before it: the
        # same probabilities (to float rounding), one pass over the activations less per
        # BatchNorm (npcnn.fold_batchnorm).  The digit model is not folded, so that a digit's
        # reading and its explanation (the trained model's own layers) agree to the last digit.
        self.reader_predictor = (
            None if number_reader is None else npcnn.fold_batchnorm(number_reader)
        )
        self.second_predictor = (
            None if self.second_reader is None else npcnn.fold_batchnorm(self.second_reader)
        )
        # the sequence head reads both readers' windows (number_sequence): it needs both
        self.sequence_head = sequence_head if self.second_reader is not None else None
        self.empty_window_features = (
            None
            if self.sequence_head is None
            else number_sequence.empty_window_features(self.readers(), self.window_width)
        )
        self.explain_model = copy.deepcopy(model)
        self.explain_lock = threading.Lock()
        self.observe = observe
        metadata = model.metadata or {}
        self.name = str(metadata.get("architecture_name") or metadata.get("name") or "custom")
        self.version = version or parameters_version(model)
        self.weights_file = weights_file
        self.warmed_up = False
        self._unobserved = threading.local()  # the warm-up's own stages are not reported
        try:
            self.feature_block: slice | None = analysis.first_conv_block(model)
        except ConfigError:  # no convolution: no feature maps to show
            self.feature_block = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> Recogniser:
        """The recogniser of the model saved at ``path``, its version taken from the file's
        bytes, with the number reader saved beside it (``NUMBER_READER_FILE``) when there is
        one.  A missing or bad file raises ``npcnn.errors.ModelFileError``."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ModelFileError(f"cannot read the model file {path}: {error}") from None
        model = npcnn.load(path)
        reader_path = path.with_name(NUMBER_READER_FILE)
        if "number_reader" not in options and reader_path.is_file():
            options["number_reader"] = npcnn.load(reader_path)
            options["number_reader_version"] = model_version(reader_path.read_bytes())
            second_path = path.with_name(SECOND_READER_FILE)
            if "second_reader" not in options and second_path.is_file():
                options["second_reader"] = npcnn.load(second_path)
                options["second_reader_version"] = model_version(second_path.read_bytes())
        sequence_path = path.with_name(SEQUENCE_FILE)
        if "sequence_head" not in options and "second_reader" in options:
            if sequence_path.is_file():
                head = npcnn.load(sequence_path)
                trained_for = {
                    NUMBER_READER_FILE: options["number_reader_version"],
                    SECOND_READER_FILE: options.get("second_reader_version"),
                }
                if head.metadata.get("readers") == trained_for:
                    options["sequence_head"] = head
                else:
                    log.warning(
                        "%s was trained for other number readers (%s, not %s): not used; "
                        "retrain it with train_number_sequence.py",
                        sequence_path, head.metadata.get("readers"), trained_for,
                    )  # fmt: skip
        chooser_path = path.with_name(number_choice.CHOOSER_FILE)
        if "chooser" not in options and "number_reader_version" in options:
            if chooser_path.is_file():
                chooser = number_choice.Chooser.load(chooser_path)
                fitted_for = {
                    "digit_model": model_version(data),
                    "number_reader": options["number_reader_version"],
                    "second_reader": str(options.get("second_reader_version")),
                }
                if chooser.fitted_for == fitted_for:
                    options["chooser"] = chooser
                else:
                    log.warning(
                        "%s was fitted for other networks (%s, not %s): not used; refit it with "
                        "tune_number_chooser.py", chooser_path, chooser.fitted_for, fitted_for,
                    )  # fmt: skip
        return cls(model, version=model_version(data), weights_file=path.name, **options)

    @property
    def identity(self) -> dict[str, str]:
        """``{"name", "version"}``: which model gave an answer (in every answer)."""
        return {"name": self.name, "version": self.version}

    def warm_up(self) -> None:
        """Compile the Numba kernels and fill caches now, not on the first user's request; check
        that a prediction comes out as probabilities (``RuntimeError`` if not).  Afterwards
        ``warmed_up`` is true.

        Every network predicts one image and a number's worth (``WARM_UP_BATCH``): which kernel
        runs depends on the batch size (Winograd's from 32 images), and compiling the other one
        on a fresh install would take a user's first number 20 s.  Then a drawn number is read
        by each method, for the preprocessing's kernels."""
        stroke = np.zeros((28, 28), dtype=np.float32)
        stroke[8:20, 13:15] = 1.0
        self._unobserved.active = True
        try:
            answer = self.classify([stroke])[0]
            probabilities = np.asarray([*answer["probabilities"], answer["not_digit_probability"]])
            if not (np.isfinite(probabilities).all() and abs(probabilities.sum() - 1.0) < 1e-3):
                raise RuntimeError(f"the warm-up prediction is not probabilities: {probabilities}")
            self.explain(stroke)
            self._predict(np.repeat(stroke[None, None], WARM_UP_BATCH, axis=0))
            if self.number_reader is not None:
                window = np.zeros((28, self.window_width), dtype=np.float32)
                window[8:20, self.window_width // 2 - 1 : self.window_width // 2 + 1] = 1.0
                for count in (2, WARM_UP_BATCH):
                    self._predict_windows_with_both(np.repeat(window[None, None], count, axis=0))
            number = _warm_up_number()
            for method in ("auto", "windows", "segmentation") if self.number_reader else ("auto",):
                self.read_number(number, method)
        finally:
            self._unobserved.active = False
        self.warmed_up = True

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` for ``observe`` (only when it succeeds)."""
        started = time.perf_counter()
        yield
        if self.observe is not None and not getattr(self._unobserved, "active", False):
            self.observe(name, time.perf_counter() - started)

    # ------------------------------------------------------------------ arrays
    def classify(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        """A reading of each (28, 28) image, all in one batch: one ``model.predict``."""
        batch = np.stack(images)[:, None].astype(np.float32)  # (N, 1, 28, 28)
        with self._stage("model"):
            probabilities = self.model.predict(batch)
        return [reading(image, p) for image, p in zip(images, probabilities, strict=True)]

    def explain(self, image: np.ndarray) -> dict[str, Any]:
        """The reading of one (28, 28) image, and what the network looked at to make it.

        One forward and one backward pass: the probabilities are the softmax of the logits, the
        saliency ``|d logit[winner] / d pixel|`` scaled to [0, 1] (``saliency_values``, and as a
        picture over the digit), and the feature maps of the first convolution block
        (``analysis.feature_maps_from``: after its BatchNorm and ReLU) tiled on one colour scale.
        """
        with self.explain_lock, self._stage("model"):  # timed once it has the model
            seen = self.explain_model.inspect(image[None, None].astype(np.float32))
        answer = reading(image, npcnn.softmax(seen.logits)[0])
        strength = analysis.saliency_strength(seen.input_gradient[0, 0])
        answer.update(  # "digit" stays the reading's closest digit, even if class 10 won
            saliency=png_data_url(analysis.saliency_overlay(strength, image)),
            saliency_values=np.round(strength, 4).tolist(),
            **self._feature_maps(seen.activations),
        )
        return answer

    def _feature_maps(self, activations: list[tuple[str, np.ndarray]]) -> dict[str, Any]:
        if self.feature_block is None:
            return {
                "feature_layer": None,
                "feature_layers": None,
                "feature_maps": None,
                "feature_map_count": 0,
                "feature_map_grid": None,
            }
        layers, maps = analysis.feature_maps_from(self.explain_model, activations)
        grid, rows, columns = analysis.feature_map_grid(maps)
        return {
            "feature_layer": self.model.layers[self.feature_block.start].name,  # the Conv2D
            "feature_layers": layers,  # e.g. "conv2d → batchnorm → relu"
            "feature_maps": png_data_url(analysis.colourise(grid)),
            "feature_map_count": int(maps.shape[0]),
            "feature_map_grid": [rows, columns],
            "feature_map_size": [int(maps.shape[1]), int(maps.shape[2])],
        }

    # ------------------------------------------------------------------ pictures as bytes
    def prepare(self, data: bytes) -> np.ndarray:
        """A picture of one digit -> the (28, 28) image the model reads (the ``preprocess``
        stage)."""
        return self._prepare_with_ink(data)[0]

    def _prepare_with_ink(self, data: bytes) -> tuple[np.ndarray, InkImage]:
        """``prepare``, and the picture's clean ink (``find_ink``) it was framed from: exactly
        ``to_mnist(open_picture(data))``, with the ink kept for a second look."""
        with self._stage("preprocess"):
            ink = find_ink(open_picture(data))
            return ink_to_mnist(ink.pixels), ink

    def read_digit(self, data: bytes) -> dict[str, Any]:
        """The reading of a picture of one digit, and whether the picture rather
        ``looks_like_number`` (``numbers.looks_like_number``: 2+ digits side by side)."""
        image, ink = self._prepare_with_ink(data)
        return {
            **self.classify([image])[0],
            "model": self.identity,
            "looks_like_number": numbers.looks_like_number(ink.pixels),
        }

    def read_digits(
        self, pictures: Sequence[bytes | NpcnnError]
    ) -> list[dict[str, Any] | NpcnnError]:
        """The reading of each picture of one digit, in order, with ONE forward pass for all.

        A picture that cannot be read (an ``NpcnnError`` from preprocessing, or one given in
        its place, e.g. bad base64) stays an ``NpcnnError`` in its place; the others are read.
        """
        prepared: list[np.ndarray | NpcnnError] = []
        for picture in pictures:
            if isinstance(picture, NpcnnError):
                prepared.append(picture)
                continue
            try:
                prepared.append(self.prepare(picture))
            except NpcnnError as error:
                prepared.append(error)
        images = [item for item in prepared if isinstance(item, np.ndarray)]
        readings = iter(self.classify(images) if images else [])
        return [
            {**next(readings), "model": self.identity} if isinstance(item, np.ndarray) else item
            for item in prepared
        ]

    def explain_digit(self, data: bytes) -> dict[str, Any]:
        """``explain`` for a picture of one digit."""
        return {**self.explain(self.prepare(data)), "model": self.identity}

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        """``model.predict`` of a (N, 1, 28, 28) batch, timed as the ``model`` stage."""
        with self._stage("model"):
            return self.model.predict(batch.astype(np.float32, copy=False))

    def segment_number(self, data: bytes, method: str = "auto") -> numbers.NumberReading:
        """A picture of a number -> its best reading.

        ``"segmentation"``: the ink proposes cuts and the digit model scores the candidates
        (``numbers``); ``"windows"``: the number reader reads a window sliding along the line
        (``number_windows``); ``"auto"``: with both readers and the sequence head, the head's
        reading of both readers' windows (``read_sequence``); with a number reader but no head,
        the windows' reading when it is confident (``number_choice.needs_second_look`` with a
        chooser, else a confidence of at least ``WINDOW_TRUST``), otherwise segmentation reads
        the picture too and where the two disagree the chooser decides (``choose``).  The ink,
        candidates and windows are the ``preprocess`` stage, the networks the ``model``
        stage."""
        if method == "auto" and self.number_reader is None:
            method = "segmentation"
        if method not in ("auto", "windows", "segmentation"):
            raise ValueError(f"method must be auto, windows, segmentation or ink, got {method!r}")
        if method != "segmentation" and self.number_reader is None:
            raise ConfigError("reading by windows needs a number reader (train_number_reader.py)")
        with self._stage("preprocess"):
            ink = find_ink(open_picture(data))
        if method == "segmentation":
            return self.read_by_segments(ink)
        if method == "auto" and self.sequence_head is not None:
            return self.read_sequence(ink)
        read = self.read_windows(ink)
        by_windows = number_windows.reading_from_windows(ink, read)
        if method == "windows" or not self.looks_twice(by_windows):
            return by_windows
        if self.second_reader is not None and self.chooser is not None:
            by_windows = number_windows.reading_from_windows(ink, self.with_second_reader(read))
        try:
            by_segments = self.read_by_segments(ink)
        except NoInkError:  # segmentation finds nothing to read where the windows found digits
            return by_windows
        return self.choose(by_windows, by_segments, ink, read.line)

    def read_windows(self, ink: InkImage) -> number_windows.WindowProbabilities:
        """Clean ink -> its windows and the number reader's probabilities for them
        (``number_windows.reading_from_windows`` turns them into a reading)."""
        return number_windows.window_probabilities(ink, self._predict_windows, self.window_width)

    def readers(self) -> list[npcnn.Sequential]:
        """The number readers as they predict (BatchNorm folded): the first, and the second
        when there is one."""
        return [p for p in (self.reader_predictor, self.second_predictor) if p is not None]

    def read_sequence(self, ink: InkImage) -> numbers.NumberReading:
        """Clean ink -> the sequence head's reading (``number_sequence``): both readers'
        features for every window with ink, the head over them, its best path."""
        started = time.perf_counter()
        with self._stage("preprocess"):
            line, centres, windows, kept = number_windows.read_line(ink.pixels, self.window_width)
        cut = time.perf_counter()
        with self._stage("model"):
            features = number_sequence.line_features(
                self.readers(), windows, kept, self.empty_window_features
            )
            logits = number_sequence.head_logits(
                self.sequence_head, [features], self.empty_window_features
            )[0]
        decoding = time.perf_counter()
        read = number_windows.WindowProbabilities(
            line, centres, windows, kept, npcnn.softmax(logits),
            {"windows": cut - started, "network": decoding - cut, "window_count": int(kept.sum())},
        )  # fmt: skip
        return number_windows.reading_from_digits(
            ink, read, number_sequence.decode(logits), decoding
        )

    def looks_twice(self, by_windows: numbers.NumberReading) -> bool:
        """Whether ``"auto"`` also reads by segmentation after this windows' reading: with a
        chooser, ``number_choice.needs_second_look``; without, a confidence under
        ``WINDOW_TRUST``."""
        if self.chooser is None:
            return by_windows.confidence < WINDOW_TRUST
        return number_choice.needs_second_look(by_windows)

    def read_by_segments(self, ink: InkImage) -> numbers.NumberReading:
        """Clean ink -> the reading by recognition-driven segmentation (``numbers``)."""
        with self._stage("preprocess"):
            candidates = numbers.number_candidates(ink)
        return numbers.choose_reading(candidates, self._predict(candidates.images[:, None]))

    def choose(
        self,
        by_windows: numbers.NumberReading,
        by_segments: numbers.NumberReading,
        ink: InkImage,
        line: number_windows.Line,
    ) -> numbers.NumberReading:
        """The better of two readings of one picture (its clean ``ink`` and the windows'
        ``line``): the windows' if they agree; otherwise the chooser's pick (``number_choice``:
        the digit model reads the windows' digits, the number reader segmentation's), or without
        one the more confident reading.  With a chooser the reading not taken becomes the
        runner-up when its confidence is at least ``numbers.RUNNER_UP_RATIO`` x the chosen one's
        (else the chosen one's own stays)."""
        if by_windows.number == by_segments.number:
            return by_windows
        if self.chooser is None:
            return by_windows if by_windows.confidence >= by_segments.confidence else by_segments
        features = number_choice.reading_features(
            by_windows,
            by_segments,
            self.digit_probabilities(by_windows),
            self.reader_probabilities(ink, line, by_segments),
        )
        if self.chooser.prefers_segments(features):
            chosen, other = by_segments, by_windows
        else:
            chosen, other = by_windows, by_segments
        if other.confidence >= numbers.RUNNER_UP_RATIO * chosen.confidence:
            return dataclasses.replace(chosen, runner_up=(other.number, other.confidence))
        return chosen

    def digit_probabilities(self, reading: numbers.NumberReading) -> np.ndarray:
        """The digit model's probabilities (D, K) for each digit's own image in ``reading``."""
        images = np.stack([d.image for d in reading.digits])[:, None]
        return self._predict(images)

    def reader_probabilities(
        self, ink: InkImage, line: number_windows.Line, reading: numbers.NumberReading
    ) -> np.ndarray:
        """The number reader's probabilities (D, 11) for a window centred on each of
        ``reading``'s D digits (``number_windows.windows_at_boxes``), as a second look reads:
        with a second reader, the mean of both.  A window with no ink near its centre: "no
        digit"."""
        boxes = [d.box for d in reading.digits]
        windows, kept = number_windows.windows_at_boxes(ink, line, boxes, self.window_width)
        return number_windows.read_kept(windows, kept, self._predict_windows_with_both)

    def _predict_windows_with_both(self, batch: np.ndarray) -> np.ndarray:
        """Both readers' mean probabilities for a (N, 1, 28, width) batch (the first alone
        without a second reader)."""
        return self._mean_with_second_reader(self._predict_windows(batch), batch)

    def _predict_windows(self, batch: np.ndarray) -> np.ndarray:
        """The number reader's ``predict`` of a (N, 1, 28, width) batch (the ``model`` stage)."""
        with self._stage("model"):
            return self.reader_predictor.predict(batch.astype(np.float32, copy=False))

    def with_second_reader(
        self, read: number_windows.WindowProbabilities
    ) -> number_windows.WindowProbabilities:
        """The same windows with the mean of both readers' probabilities: the first reader's,
        already in ``read``, and the second one's, read now (without a second reader: ``read``)."""
        if self.second_reader is None:
            return read
        kept = read.kept
        probabilities = read.probabilities.copy()
        probabilities[kept] = self._mean_with_second_reader(
            probabilities[kept], read.windows[kept][:, None]
        )
        return dataclasses.replace(read, probabilities=probabilities)

    def _mean_with_second_reader(self, first: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """``first``, the number reader's probabilities for the windows ``batch``
        (N, 1, 28, width), averaged with the second reader's, read now (the ``model`` stage);
        without a second reader, ``first``."""
        if self.second_reader is None:
            return first
        with self._stage("model"):
            second = self.second_predictor.predict(batch.astype(np.float32, copy=False))
        return (first + second) / 2

    def read_number(self, data: bytes, method: str = "auto") -> dict[str, Any]:
        """A picture of several digits side by side, read left to right as one number.

        ``method``: ``"auto"`` (the default), ``"windows"`` or ``"segmentation"`` (see
        ``segment_number``), or ``"ink"``: the older ink-only ``segment_digits``, kept to
        compare with.  Each digit's reading has its ``box`` ``[x0, y0, x1, y1]`` in the pixels
        of the decoded picture, whose ``image_size`` is ``[width, height]``.  ``confidence`` is
        the number's: the product of its digits' confidences; ``runner_up`` the second-best
        reading ``{"number", "confidence"}`` when its confidence is at least
        ``numbers.RUNNER_UP_RATIO`` of the best one's, else ``None`` (always ``None`` for
        ``"ink"``).
        """
        if method == "ink":
            return self._read_number_by_ink(data)
        found = self.segment_number(data, method)
        digits = [reading(d.image, d.probabilities) for d in found.digits]
        for digit, part in zip(digits, found.digits, strict=True):
            digit["box"] = [int(v) for v in part.box]
            if digit["digit"] != part.digit:  # the reading chose its second most probable digit
                confidence = float(part.probabilities[part.digit])
                digit.update(digit=part.digit, runner_up=digit["digit"],
                             confidence=round(confidence, 6),
                             low_confidence=confidence < LOW_CONFIDENCE)  # fmt: skip
        runner_up = found.runner_up
        width, height = found.input_size
        return {
            "number": found.number,
            "digits": digits,
            "image_size": [width, height],
            "low_confidence": any(d["low_confidence"] for d in digits),
            "confidence": round(found.confidence, 6),
            "runner_up": (
                None
                if runner_up is None
                else {"number": runner_up[0], "confidence": round(runner_up[1], 6)}
            ),
            "model": self.identity,
        }

    def _read_number_by_ink(self, data: bytes) -> dict[str, Any]:
        """``read_number`` with the ink-only segmentation (``segment_digits``)."""
        with self._stage("preprocess"):
            picture = open_picture(data)
            crops = segment_digits(picture)
        if not crops:
            raise NoInkError("nothing to recognise: the image looks blank")
        if len(crops) > MAX_DIGITS:
            raise TooManyMarksError(
                f"found {len(crops)} separate marks: too many to read as one number"
                f" (at most {MAX_DIGITS} digits)"
            )
        digits = self.classify([crop.image for crop in crops])
        for crop, digit in zip(crops, digits, strict=True):
            digit["box"] = [int(v) for v in crop.box]
        return {
            "number": "".join(str(d["digit"]) for d in digits),
            "digits": digits,
            "image_size": [picture.width, picture.height],
            "low_confidence": any(d["low_confidence"] for d in digits),
            "confidence": round(float(np.prod([d["confidence"] for d in digits])), 6),
            "runner_up": None,
            "model": self.identity,
        }

    def read_for_correction(self, data: bytes, index: int | None = None) -> dict[str, Any]:
        """What the model read in a picture a user corrects, recomputed here from the bytes:
        ``{"image": (28, 28) model input, "predicted": 0-9 or "none", "confidence": float}``.

        ``index`` picks one digit of a picture of a number (0: the leftmost), segmented exactly
        as ``read_number`` does; ``IndexError``-like ``ImageError`` when there is no such digit.
        """
        if index is None:
            image = self.prepare(data)
            answer = self.classify([image])[0]
            return {
                "image": image,
                "predicted": answer["digit"] if answer["is_digit"] else "none",
                "confidence": answer["confidence"],
            }
        found = self.segment_number(data)
        if not 0 <= index < len(found.digits):
            raise ImageError(f"no digit {index} in this picture: it holds {len(found.digits)}")
        digit = found.digits[index]  # the image is the digit framed alone, as the model reads one
        return {
            "image": digit.image,
            "predicted": digit.digit,
            "confidence": round(float(digit.probabilities[digit.digit]), 6),
        }

    def describe(self) -> dict[str, Any]:
        """The model in a few words, for ``/api/health`` and the page's footer."""
        metadata = self.model.metadata or {}
        metrics = metadata.get("metrics") or {}
        return {
            **self.identity,
            "weights_file": self.weights_file,
            "parameters": int(self.model.parameter_count()),
            "outputs": int(self.model.output_shapes[-1][0]),  # 11: it can say "not a digit"
            "test_accuracy": metrics.get("test_accuracy"),
            "layers": [layer.name for layer in self.model.layers],
            "backend": npcnn.get_backend(),
            "number_reader": None
            if self.number_reader is None
            else {
                "version": self.number_reader_version,
                "parameters": int(self.number_reader.parameter_count()),
                "second_version": self.second_reader_version,
                "chooser": self.chooser is not None,
                "sequence_head": self.sequence_head is not None,
            },
        }
