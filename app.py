"""The npcnn drawing app: a thin Flask layer over ``npcnn.digits.recogniser``.

Data flows one way: request -> image bytes -> ``Recogniser`` (decode, frame like MNIST, predict)
-> JSON.  The app never trains.

Endpoints (all answers are JSON; every bad input is a 4xx ``{"error": "..."}``, never a 500):

- ``GET  /``                  the drawing page
- ``POST /api/predict``       one digit
- ``POST /api/predict_number`` several digits side by side, read as a number
- ``POST /api/explain``       one digit, its saliency map and the first convolution block's
                              feature maps
- ``GET  /api/health``        status and a description of the model

Each POST takes the image as multipart/form-data (file field ``image``), as JSON
``{"image": "<data URL or base64>"}``, or as a raw ``image/*`` body.

Run it::

    python app.py [--host 127.0.0.1] [--port 5000] [--weights PATH] [--production]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
)
from werkzeug.exceptions import HTTPException

import npcnn
from npcnn.digits.errors import ImageError, NoInkError
from npcnn.digits.recogniser import Recogniser, TooManyMarksError, decode_base64_image
from npcnn.errors import ModelFileError, NpcnnError

HERE = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = HERE / "weights" / "mnist_cnn.npz"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # whole request body; bigger -> 413

log = logging.getLogger("npcnn.app")
site = Blueprint("site", __name__)


class RequestError(NpcnnError):
    """The request carries no image to read (a missing field, a body that is not JSON)."""


class UnsupportedContentType(RequestError):
    """The request's Content-Type is none of multipart/form-data, JSON and image/*."""


# The one map from errors of bad input to HTTP statuses: the first class that matches wins.
# Any other exception is a bug: a logged 500 that tells the client nothing of the internals.
ERROR_STATUS: tuple[tuple[type[NpcnnError], int], ...] = (
    (UnsupportedContentType, 415),
    (NoInkError, 422),  # a picture with nothing to recognise in it
    (TooManyMarksError, 422),
    (ImageError, 400),  # a picture that cannot be decoded or used
    (RequestError, 400),
)


class InMemoryRequest(Request):
    """Keep uploaded files in memory (the body is capped): nothing from a request touches disk."""

    def _get_file_stream(self, *args: Any, **kwargs: Any) -> io.BytesIO:
        return io.BytesIO()


# --------------------------------------------------------------------- requests and answers
def image_bytes() -> bytes:
    """The uploaded image's bytes from the current request, whichever way it was sent."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is not None:
            return upload.read()
        if isinstance(request.form.get("image"), str):
            return decode_base64_image(request.form["image"])  # a data URL as a text field
        raise RequestError("missing the file field 'image' in the multipart form")
    if mimetype == "application/json" or mimetype.endswith("+json"):
        payload = request.get_json(silent=True)
        if payload is None:
            raise RequestError("the body is not valid JSON")
        if not isinstance(payload, dict) or "image" not in payload:
            raise RequestError('the JSON body must be an object like {"image": "<data URL>"}')
        if not isinstance(payload["image"], str):
            raise RequestError("'image' must be a string: a data URL or base64")
        return decode_base64_image(payload["image"])
    if mimetype.startswith("image/") or mimetype == "application/octet-stream":
        return request.get_data(cache=False)
    if not mimetype:
        raise UnsupportedContentType(
            "missing Content-Type: send multipart/form-data, JSON or image/*"
        )
    raise UnsupportedContentType(
        f"unsupported Content-Type {mimetype!r}: send multipart/form-data, JSON or image/*"
    )


def timed_answer(read: Callable[[bytes], dict[str, Any]]) -> Response:
    """``read`` (a recogniser method) the request's image; its answer as JSON, with ``ms``: the
    milliseconds the request took, from reading the body to the answer."""
    started = time.perf_counter()
    answer = read(image_bytes())
    answer["ms"] = round((time.perf_counter() - started) * 1000.0, 2)
    return jsonify(answer)


def error_answer(error: Exception) -> tuple[Response, int]:
    """Every error as JSON ``{"error": "..."}`` with its status: the app's one error handler."""
    if isinstance(error, HTTPException):  # from werkzeug: 404, 405, 413, a malformed request
        status = error.code or 500
        response = jsonify(error=http_message(error))
        if status == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response, status
    status = next((s for kind, s in ERROR_STATUS if isinstance(error, kind)), 500)
    if status == 500:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify(error="internal error: the server failed on this request"), 500
    message = nothing_to_recognise(error) if isinstance(error, NoInkError) else str(error)
    return jsonify(error=message), status


def nothing_to_recognise(error: NoInkError) -> str:
    """The message of a 422: ``nothing to recognise: <why> — draw or upload a digit``."""
    reason = re.sub(r"^nothing to recognise:\s*", "", str(error).strip())
    return f"nothing to recognise: {reason or 'the image looks blank'} — draw or upload a digit"


def http_message(error: HTTPException) -> str:
    """A short message for werkzeug's errors (its own descriptions are written for HTML pages)."""
    messages = {
        400: "bad request",
        404: "not found",
        405: f"method {request.method} not allowed here",
        413: f"the request is too large (at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB)",
        415: "unsupported Content-Type",
    }
    return messages.get(error.code or 500, error.description or error.name)


def security_headers(response: Response) -> Response:
    """No sniffing, no referrer, no framing, and only this site's own scripts and styles."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self';"
        " connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    )
    return response


# --------------------------------------------------------------------- pages and endpoints
def current_recogniser() -> Recogniser:
    """The recogniser of the app that handles the current request."""
    return current_app.extensions["npcnn"]


@site.get("/")
def index() -> str:
    return render_template("index.html", max_upload_bytes=MAX_UPLOAD_BYTES - 64 * 1024)


@site.get("/api/health")
def health() -> Response:
    return jsonify(status="ok", model=current_recogniser().describe())


@site.post("/api/predict")
def predict() -> Response:
    return timed_answer(current_recogniser().read_digit)


@site.post("/api/predict_number")
def predict_number() -> Response:
    return timed_answer(current_recogniser().read_number)


@site.post("/api/explain")
def explain() -> Response:
    return timed_answer(current_recogniser().explain_digit)


# --------------------------------------------------------------------- the app
def load_model(weights_path: str | os.PathLike[str] | None = None) -> npcnn.Sequential:
    """The model in ``weights_path``, ``$NPCNN_WEIGHTS`` or ``weights/mnist_cnn.npz``.

    A missing or bad file raises ``npcnn.errors.ModelFileError``.
    """
    path = Path(weights_path or os.environ.get("NPCNN_WEIGHTS") or DEFAULT_WEIGHTS)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}: train one with `make train`")
    return npcnn.load(path)


def create_app(weights_path: str | os.PathLike[str] | None = None, model: Any = None) -> Flask:
    """The app around ``model``, or around the model loaded once from ``weights_path``.

    It sets the maths to one thread for the whole process (``npcnn.set_threads(1)``): one
    request works on one small image, so BLAS and Numba threads would only wait for each other
    (one 28x28 image took 100 ms instead of 0.3 ms with 2 threads on a busy 2-core machine).
    Requests run in parallel on the server's threads instead.
    """
    npcnn.set_threads(1)
    recogniser = Recogniser(model if model is not None else load_model(weights_path))
    recogniser.warm_up()
    app = Flask(__name__, root_path=str(HERE))
    app.request_class = InMemoryRequest
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_UPLOAD_BYTES,  # a data URL sent as a text form field
        MAX_FORM_PARTS=20,
    )
    app.extensions["npcnn"] = recogniser
    app.register_blueprint(site)
    app.register_error_handler(Exception, error_answer)
    app.after_request(security_headers)
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
