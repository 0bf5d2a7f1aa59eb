"""The npcnn drawing app: a thin Flask layer over the npcnn library.

Data flows one way: request -> image bytes -> ``decode_image`` -> ``to_mnist`` (28 x 28, white
digit on black, like MNIST) -> ``model.predict`` -> JSON.  The app never trains.

Endpoints (all answers are JSON; every bad input is a 4xx ``{"error": "..."}``, never a 500):

- ``GET  /``                  the drawing page
- ``POST /api/predict``       one digit
- ``POST /api/predict_number`` several digits side by side, read as a number
- ``POST /api/explain``       saliency map and the first convolution layer's feature maps
- ``GET  /api/health``        status and a description of the model

Each POST takes the image as multipart/form-data (file field ``image``), as JSON
``{"image": "<data URL or base64>"}``, or as a raw ``image/*`` body.

Run it::

    python app.py [--host 127.0.0.1] [--port 5000] [--weights PATH] [--production]
"""

from __future__ import annotations

import os
import sys

# One request works on one small image: BLAS and Numba threads would only wait for each other
# (one 28x28 image took 100 ms instead of 0.3 ms with 2 threads on a busy 2-core machine).
# Requests run in parallel on the server's threads instead.  This only works before NumPy and
# Numba are loaded (changing NUMBA_NUM_THREADS later makes Numba fail), and an explicit setting
# in the environment wins.
if "numpy" not in sys.modules:
    for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")
if "numba" not in sys.modules:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import base64  # noqa: E402
import binascii  # noqa: E402
import copy  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from flask import Flask, Request, jsonify, render_template, request  # noqa: E402
from PIL import Image  # noqa: E402
from werkzeug.exceptions import HTTPException  # noqa: E402

import npcnn  # noqa: E402
from npcnn.digits.errors import ImageError, NoInkError  # noqa: E402
from npcnn.digits.preprocess import decode_image, segment_digits, to_mnist  # noqa: E402
from npcnn.errors import ModelFileError  # noqa: E402
from npcnn.layers import Conv2D  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = HERE / "weights" / "mnist_cnn.npz"

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # whole request body; bigger -> 413
LOW_CONFIDENCE = 0.6  # below this top probability the page says "not sure"
MAX_DIGITS = 24  # a "number" with more separate marks than this is refused

log = logging.getLogger("npcnn.app")


class ApiError(Exception):
    """A client error with the HTTP status and the message to send back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class InMemoryRequest(Request):
    """Keep uploaded files in memory (the body is capped): nothing from a request touches disk."""

    def _get_file_stream(self, *args: Any, **kwargs: Any) -> io.BytesIO:
        return io.BytesIO()


# --------------------------------------------------------------------- reading the image

_DATA_URL = re.compile(r"data:(?P<mime>[^,;]*)(?P<params>(?:;[^,;]*)*),(?P<data>.*)", re.DOTALL)
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def decode_base64_image(text: str) -> bytes:
    """The bytes of ``data:image/png;base64,....`` or of bare base64 (standard or URL-safe)."""
    text = text.strip()
    if text[:5].lower() == "data:":
        match = _DATA_URL.fullmatch(text)
        if match is None:
            raise ApiError(400, "malformed data URL: expected 'data:<type>;base64,<data>'")
        if "base64" not in match["params"].lower().split(";"):
            raise ApiError(400, "the data URL must be base64-encoded ('data:<type>;base64,...')")
        text = match["data"]
    text = "".join(text.split())  # line breaks and spaces inside base64 are harmless
    if not text:
        raise ApiError(400, "the image is empty")
    if not _BASE64_CHARS.fullmatch(text):
        raise ApiError(400, "the image is not valid base64")
    text = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        raise ApiError(400, "the image is not valid base64 (truncated)")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "the image is not valid base64") from None


def read_image_bytes() -> bytes:
    """The uploaded image's bytes from the current request, whichever way it was sent."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is not None:
            data = upload.read()
        elif isinstance(request.form.get("image"), str):
            data = decode_base64_image(request.form["image"])  # a data URL as a text field
        else:
            raise ApiError(400, "missing the file field 'image' in the multipart form")
    elif mimetype == "application/json" or mimetype.endswith("+json"):
        payload = request.get_json(silent=True)
        if payload is None:
            raise ApiError(400, "the body is not valid JSON")
        if not isinstance(payload, dict) or "image" not in payload:
            raise ApiError(400, 'the JSON body must be an object like {"image": "<data URL>"}')
        if not isinstance(payload["image"], str):
            raise ApiError(400, "'image' must be a string: a data URL or base64")
        data = decode_base64_image(payload["image"])
    elif mimetype.startswith("image/") or mimetype == "application/octet-stream":
        data = request.get_data(cache=False)
    elif not mimetype:
        raise ApiError(415, "missing Content-Type: send multipart/form-data, JSON or image/*")
    else:
        raise ApiError(
            415, f"unsupported Content-Type {mimetype!r}: send multipart/form-data, JSON or image/*"
        )
    if not data:
        raise ApiError(400, "the image is empty")
    return data


def read_image() -> Image.Image:
    """The request's image, decoded safely (size limits and decompression-bomb guard)."""
    data = read_image_bytes()
    try:
        return decode_image(data)
    except ImageError as error:
        raise ApiError(400, str(error)) from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        # decode_image should turn these into ImageError; this is the belt to its braces.
        log.warning("decode_image let %r through", error)
        raise ApiError(400, "the image could not be decoded") from None


def nothing_to_recognise(detail: str = "") -> ApiError:
    """A 422: "nothing to recognise: <why> — draw or upload a digit"."""
    reason = re.sub(r"^nothing to recognise:\s*", "", detail.strip()) or "the image looks blank"
    return ApiError(422, f"nothing to recognise: {reason} — draw or upload a digit")


def preprocess(image: Image.Image) -> np.ndarray:
    """``to_mnist`` with its errors turned into the right HTTP answers."""
    try:
        return to_mnist(image)
    except NoInkError as error:
        raise nothing_to_recognise(str(error)) from None
    except ImageError as error:
        raise ApiError(400, str(error)) from None


# --------------------------------------------------------------------- pictures for the page


def _palette() -> np.ndarray:
    """A 256-colour ramp black -> indigo -> magenta -> orange -> pale yellow (like "inferno")."""
    anchors = np.array(
        [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
         [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64,
    )  # fmt: skip
    positions = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(t, positions, anchors[:, c]) for c in range(3)]
    return np.stack(channels, axis=1).round().astype(np.uint8)  # (256, 3)


PALETTE = _palette()


def png_data_url(pixels: np.ndarray) -> str:
    """A PNG data URL of ``pixels``: uint8 (H, W) grey or (H, W, 3) colour."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def grey_png(image01: np.ndarray) -> str:
    """A (H, W) float image in [0, 1] as a greyscale PNG data URL."""
    return png_data_url((np.clip(image01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def heat_png(image01: np.ndarray) -> str:
    """A (H, W) float image in [0, 1] as a colour PNG (through ``PALETTE``)."""
    index = (np.clip(image01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return png_data_url(PALETTE[index])


def saliency_png(saliency01: np.ndarray, image01: np.ndarray) -> str:
    """The saliency heat map laid over a faint grey copy of the digit, as a colour PNG.

    ``alpha = saliency ** 0.6`` (lifts the weaker values a little);
    ``pixel = alpha * heat(saliency) + (1 - alpha) * 0.35 * digit``.
    """
    index = (np.clip(saliency01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    heat = PALETTE[index].astype(np.float32)
    digit = (np.clip(image01, 0.0, 1.0) * (0.35 * 255.0))[..., None]
    alpha = (np.clip(saliency01, 0.0, 1.0) ** 0.6)[..., None]
    return png_data_url((alpha * heat + (1.0 - alpha) * digit + 0.5).astype(np.uint8))


def normalise(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by min and max; a constant array becomes zeros."""
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def feature_map_grid(maps: np.ndarray, gap: int = 1) -> tuple[np.ndarray, int, int]:
    """Tile C feature maps (C, H, W), each normalised on its own, into one image.

    Returns the image in [0, 1] (a gap of ``gap`` pixels between tiles, filled with 0.15) and the
    grid's rows and columns.
    """
    count, height, width = maps.shape
    columns = int(np.ceil(np.sqrt(count * 2)))  # wider than tall: fits a page section
    columns = min(count, max(columns, 1))
    rows = int(np.ceil(count / columns))
    grid = np.full(
        (rows * (height + gap) - gap, columns * (width + gap) - gap), 0.15, dtype=np.float32
    )
    for i in range(count):
        r, c = divmod(i, columns)
        top, left = r * (height + gap), c * (width + gap)
        grid[top : top + height, left : left + width] = normalise(maps[i])
    return grid, rows, columns


# --------------------------------------------------------------------- the recogniser


class Recogniser:
    """The model and what the endpoints ask of it.

    ``predict`` runs in eval mode and only writes the layers' caches, never reads them, so it may
    run on many threads at once.  The explanation needs ``backward`` (which reads those caches), so
    it runs on a private copy of the model, one request at a time, under a lock.
    """

    def __init__(self, model: npcnn.Sequential) -> None:
        self.model = model
        self.explain_model = copy.deepcopy(model)
        self.explain_lock = threading.Lock()
        self.first_conv = next(
            (i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)), None
        )

    def warm_up(self) -> None:
        """Compile the Numba kernels and fill caches now, not on the first user's request."""
        blank = np.zeros((28, 28), dtype=np.float32)
        blank[8:20, 13:15] = 1.0
        self.classify([blank])
        self.explain(blank)

    def classify(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        """Digit, confidence, all ten probabilities and a preview for each (28, 28) image."""
        batch = np.stack(images)[:, None].astype(np.float32)  # (N, 1, 28, 28)
        probabilities = self.model.predict(batch)
        answers = []
        for image, p in zip(images, probabilities, strict=True):
            order = np.argsort(p)[::-1]
            confidence = float(p[order[0]])
            answers.append(
                {
                    "digit": int(order[0]),
                    "confidence": round(confidence, 6),
                    "probabilities": [round(float(v), 6) for v in p],
                    "low_confidence": confidence < LOW_CONFIDENCE,
                    "runner_up": int(order[1]),
                    "preview": grey_png(image),
                }
            )
        return answers

    def explain(self, image: np.ndarray) -> dict[str, Any]:
        """Saliency |d logit_winner / d input| and the first conv layer's feature maps."""
        x = image[None, None].astype(np.float32)
        with self.explain_lock:
            logits = self.explain_model.forward(x, training=False)[0]
            winner = int(np.argmax(logits))
            gradient = self.explain_model.input_gradient(x, winner)[0, 0]  # (28, 28)
            activations = self.explain_model.activations(x)
        saliency = np.abs(gradient)
        peak = float(saliency.max())
        saliency = saliency / peak if peak > 0 else np.zeros_like(saliency)
        answer: dict[str, Any] = {
            "digit": winner,
            "saliency": saliency_png(saliency, image),
            "saliency_values": np.round(saliency, 4).tolist(),
            "feature_layer": None,
            "feature_maps": None,
            "feature_map_count": 0,
            "feature_map_grid": None,
        }
        if self.first_conv is not None:
            name, maps = activations[self.first_conv]
            grid, rows, columns = feature_map_grid(maps[0])
            answer.update(
                {
                    "feature_layer": name,
                    "feature_maps": heat_png(grid),
                    "feature_map_count": int(maps.shape[1]),
                    "feature_map_grid": [rows, columns],
                    "feature_map_size": [int(maps.shape[2]), int(maps.shape[3])],
                }
            )
        return answer

    def describe(self) -> dict[str, Any]:
        metadata = self.model.metadata or {}
        metrics = metadata.get("metrics") or {}
        return {
            "name": metadata.get("architecture_name") or metadata.get("name") or "custom",
            "parameters": int(self.model.parameter_count()),
            "test_accuracy": metrics.get("test_accuracy"),
            "layers": [layer.name for layer in self.model.layers],
            "backend": npcnn.kernels.get_backend(),
        }


# --------------------------------------------------------------------- the app


def create_app(weights_path: str | os.PathLike[str] | None = None, model: Any = None) -> Flask:
    """Build the app around ``model``, or the model loaded once from ``weights_path``.

    ``weights_path`` defaults to ``$NPCNN_WEIGHTS`` or ``weights/mnist_cnn.npz``.  A missing or
    bad file raises ``npcnn.errors.ModelFileError``.
    """
    if model is None:
        path = Path(weights_path or os.environ.get("NPCNN_WEIGHTS") or DEFAULT_WEIGHTS)
        if not path.is_file():
            raise ModelFileError(f"no model file at {path}: train one with `make train`")
        model = npcnn.load(path)
    recogniser = Recogniser(model)
    recogniser.warm_up()

    app = Flask(__name__, root_path=str(HERE))
    app.request_class = InMemoryRequest
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_UPLOAD_BYTES,  # a data URL sent as a text form field
        MAX_FORM_PARTS=20,
    )
    app.extensions["npcnn"] = recogniser

    @app.after_request
    def security_headers(response):  # type: ignore[no-untyped-def]
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self';"
            " connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        )
        return response

    # --- errors: always JSON ------------------------------------------------------------
    @app.errorhandler(ApiError)
    def api_error(error: ApiError):  # type: ignore[no-untyped-def]
        return jsonify(error=error.message), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        messages = {
            400: "bad request",
            404: "not found",
            405: f"method {request.method} not allowed here",
            413: f"the request is too large (at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB)",
            415: "unsupported Content-Type",
        }
        message = messages.get(error.code or 500, error.description or error.name)
        response = jsonify(error=message)
        response.status_code = error.code or 500
        if error.code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):  # type: ignore[no-untyped-def]
        log.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify(error="internal error: the server failed on this request"), 500

    # --- pages and endpoints -----------------------------------------------------------
    @app.get("/")
    def index():  # type: ignore[no-untyped-def]
        return render_template("index.html", max_upload_bytes=MAX_UPLOAD_BYTES - 64 * 1024)

    @app.get("/api/health")
    def health():  # type: ignore[no-untyped-def]
        return jsonify(status="ok", model=recogniser.describe())

    @app.post("/api/predict")
    def predict():  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        image = preprocess(read_image())
        answer = recogniser.classify([image])[0]
        answer["ms"] = round((time.perf_counter() - started) * 1000.0, 2)
        return jsonify(answer)

    @app.post("/api/predict_number")
    def predict_number():  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        picture = read_image()
        try:
            crops = segment_digits(picture)
        except NoInkError as error:
            raise nothing_to_recognise(str(error)) from None
        except ImageError as error:
            raise ApiError(400, str(error)) from None
        if not crops:
            raise nothing_to_recognise()
        if len(crops) > MAX_DIGITS:
            raise ApiError(
                422,
                f"found {len(crops)} separate marks: too many to read as one number"
                f" (at most {MAX_DIGITS} digits)",
            )
        digits = recogniser.classify([crop.image for crop in crops])
        for crop, digit in zip(crops, digits, strict=True):
            digit["box"] = [int(v) for v in crop.box]
        return jsonify(
            number="".join(str(d["digit"]) for d in digits),
            digits=digits,
            image_size=[picture.width, picture.height],
            low_confidence=any(d["low_confidence"] for d in digits),
            ms=round((time.perf_counter() - started) * 1000.0, 2),
        )

    @app.post("/api/explain")
    def explain():  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        image = preprocess(read_image())
        answer = recogniser.classify([image])[0]
        answer.update(recogniser.explain(image))
        answer["ms"] = round((time.perf_counter() - started) * 1000.0, 2)
        return jsonify(answer)

    return app


# --------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the npcnn draw-a-digit app.")
    parser.add_argument("--host", default=os.environ.get("NPCNN_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("NPCNN_PORT", "5000")))
    parser.add_argument(
        "--weights", default=os.environ.get("NPCNN_WEIGHTS") or str(DEFAULT_WEIGHTS)
    )
    parser.add_argument(
        "--production", action="store_true", help="serve with waitress (a production WSGI server)"
    )
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        app = create_app(args.weights)
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    url = f"http://{args.host}:{args.port}/"
    if args.production:
        from waitress import serve

        print(f"npcnn app (waitress, {args.threads} threads) on {url}", flush=True)
        serve(app, host=args.host, port=args.port, threads=args.threads, ident="npcnn")
    else:
        print(f"npcnn app (Flask development server) on {url}", flush=True)
        app.run(host=args.host, port=args.port, debug=False, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
