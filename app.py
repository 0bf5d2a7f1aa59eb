"""The npcnn drawing app: a thin Flask layer over ``npcnn.digits.recogniser``.

Data flows one way: request -> image bytes -> ``Recogniser`` (decode, frame like MNIST, predict)
-> JSON.  The app never trains.

Endpoints (all answers are JSON but the page and ``/metrics``; every bad input is a 4xx
``{"error": "..."}``, never a 500):

- ``GET  /``                   the drawing page
- ``POST /api/predict``        one digit
- ``POST /api/predict_number`` several digits side by side, read as a number
- ``POST /api/predict_batch``  up to 64 pictures of one digit each (multipart field ``images``,
                               or JSON ``{"images": [...]}``), read with one forward pass
- ``POST /api/explain``        one digit, its saliency map and the first convolution block's
                               feature maps
- ``GET  /api/health``         status and a description of the model
- ``GET  /livez``              200 while the process answers
- ``GET  /readyz``             200 once the model is loaded and warmed up; 503 before and while
                               shutting down
- ``GET  /metrics``            Prometheus text format (every worker process of the server)

Each POST takes the image as multipart/form-data (file field ``image``), as JSON
``{"image": "<data URL or base64>"}``, or as a raw ``image/*`` body.  Every prediction answer
names its model: ``"model": {"name": ..., "version": <12 hex digits of the weights' sha256>}``.

Heavy requests (explanations, batches) are bounded per process: past ``--heavy-limit`` at once,
the next one gets 503 with ``Retry-After`` at once instead of waiting in a growing queue.

Run it::

    python app.py [--host 127.0.0.1] [--port 5000] [--weights PATH]      # development
    python app.py --production [--workers N] [--threads T]                # waitress, N processes
    python app.py --production --server gunicorn [--workers N]           # behind a proxy only

waitress is the production server: it reads every request on its own I/O thread and hands only
whole requests to the app's threads, so slow clients cannot hold them (gunicorn's threaded
workers read requests on the app's threads: a dozen slow clients stop two workers dead; it needs
a buffering proxy such as nginx in front).  Several waitress processes share one listening socket
(``serve_waitress``), which gives all cores the same requests per second as gunicorn.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    current_app,
    g,
    has_request_context,
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
MAX_BATCH = 64  # pictures in one /api/predict_batch; more -> 413
MAX_FORM_PARTS = MAX_BATCH + 16  # multipart parts (files and fields); more -> 413
# Brackets, braces and commas in a JSON body: a bound on its nesting and its number of values,
# checked before parsing (a 64-picture batch of data URLs has about 130).
MAX_JSON_STRUCTURE = 512
HEAVY_LIMIT = 2  # heavy requests at once per process (the command line: half the threads)
RETRY_AFTER_SECONDS = 1
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}")

log = logging.getLogger("npcnn.app")
access_log = logging.getLogger("npcnn.access")
site = Blueprint("site", __name__)


class RequestError(NpcnnError):
    """The request carries no image to read (a missing field, a body that is not JSON)."""


class UnsupportedContentType(RequestError):
    """The request's Content-Type is none of multipart/form-data, JSON and image/*."""


class BatchTooLarge(RequestError):
    """A batch of more than ``MAX_BATCH`` pictures."""


class Overloaded(NpcnnError):
    """Every heavy-request slot of this process is taken: try again shortly (503)."""


# The one map from errors of bad input to HTTP statuses: the first class that matches wins.
# Any other exception is a bug: a logged 500 that tells the client nothing of the internals.
ERROR_STATUS: tuple[tuple[type[NpcnnError], int], ...] = (
    (UnsupportedContentType, 415),
    (BatchTooLarge, 413),
    (NoInkError, 422),  # a picture with nothing to recognise in it
    (TooManyMarksError, 422),
    (ImageError, 400),  # a picture that cannot be decoded or used
    (RequestError, 400),
    (Overloaded, 503),
)


class InMemoryRequest(Request):
    """Keep uploaded files in memory (the body is capped): nothing from a request touches disk."""

    def _get_file_stream(self, *args: Any, **kwargs: Any) -> io.BytesIO:
        return io.BytesIO()


# --------------------------------------------------------------------- requests and answers
def json_body() -> Any:
    """The request's body parsed as JSON; ``RequestError`` for anything that is not usable JSON.

    Parsing is bounded first: a body with more than ``MAX_JSON_STRUCTURE`` brackets, braces and
    commas is refused unread (a 100,000-level nesting would otherwise exhaust the parser's
    recursion, and a 10 MB list of numbers costs hundreds of MB as Python objects).  The image
    strings themselves (base64, data URLs) hold none of these characters but a data URL's comma.
    """
    data = request.get_data(cache=False)
    structure = data.count(b"[") + data.count(b"{") + data.count(b",")
    if structure > MAX_JSON_STRUCTURE:
        raise RequestError(
            "the JSON body is too deeply nested or holds too many values:"
            ' send {"image": "<data URL>"} or {"images": ["<data URL>", ...]}'
        )
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise RequestError("the body is not valid JSON") from None


def is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or mimetype.endswith("+json")


def unsupported(mimetype: str, accepted: str) -> UnsupportedContentType:
    if not mimetype:
        return UnsupportedContentType(f"missing Content-Type: send {accepted}")
    return UnsupportedContentType(f"unsupported Content-Type {mimetype!r}: send {accepted}")


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
    if is_json(mimetype):
        payload = json_body()
        if not isinstance(payload, dict) or "image" not in payload:
            raise RequestError('the JSON body must be an object like {"image": "<data URL>"}')
        if not isinstance(payload["image"], str):
            raise RequestError("'image' must be a string: a data URL or base64")
        return decode_base64_image(payload["image"])
    if mimetype.startswith("image/") or mimetype == "application/octet-stream":
        return request.get_data(cache=False)
    raise unsupported(mimetype, "multipart/form-data, JSON or image/*")


def batch_pictures() -> list[bytes | NpcnnError]:
    """The pictures of a batch request, in order: multipart files in the field ``images``, or
    JSON ``{"images": ["<data URL or base64>", ...]}``.  An item that is not a picture's bytes
    (bad base64, not a string) becomes its own error in its place."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        uploads = request.files.getlist("images")
        if not uploads:
            raise RequestError("missing the file field 'images' in the multipart form")
        check_batch_size(len(uploads))
        return [upload.read() for upload in uploads]
    if not is_json(mimetype):
        raise unsupported(mimetype, 'multipart/form-data (files "images") or JSON')
    payload = json_body()
    items = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        raise RequestError('the JSON body must be an object like {"images": ["<data URL>", ...]}')
    check_batch_size(len(items))
    pictures: list[bytes | NpcnnError] = []
    for item in items:
        try:
            if not isinstance(item, str):
                raise RequestError("each image must be a string: a data URL or base64")
            pictures.append(decode_base64_image(item))
        except NpcnnError as error:
            pictures.append(error)
    return pictures


def check_batch_size(count: int) -> None:
    if count > MAX_BATCH:
        raise BatchTooLarge(f"{count} images: a batch holds at most {MAX_BATCH}")


def timed_answer(read: Callable[[bytes], dict[str, Any]], heavy: bool = False) -> Response:
    """``read`` (a recogniser method) the request's image; its answer as JSON, with ``ms``: the
    milliseconds the request took, from reading the body to the answer.  A ``heavy`` request
    first takes one of the process's heavy-request slots (503 when there is none)."""
    started = time.perf_counter()
    data = image_bytes()
    with heavy_slot() if heavy else no_slot():
        answer = read(data)
    answer["ms"] = round((time.perf_counter() - started) * 1000.0, 2)
    return jsonify(answer)


def status_and_message(error: NpcnnError) -> tuple[int, str]:
    """The HTTP status of an error of bad input and the message said to the client (500 and
    ``""`` for any other error: a bug)."""
    status = next((s for kind, s in ERROR_STATUS if isinstance(error, kind)), 500)
    if status == 500:
        return 500, ""
    return status, nothing_to_recognise(error) if isinstance(error, NoInkError) else str(error)


def error_answer(error: Exception) -> tuple[Response, int]:
    """Every error as JSON ``{"error": "..."}`` with its status: the app's one error handler."""
    if isinstance(error, HTTPException):  # from werkzeug: 404, 405, 413, a malformed request
        status = error.code or 500
        response = jsonify(error=http_message(error))
        if status == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response, status
    status, message = status_and_message(error) if isinstance(error, NpcnnError) else (500, "")
    if status == 500:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify(error="internal error: the server failed on this request"), 500
    response = jsonify(error=message)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, status


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
        413: (
            f"the request is too large (at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
            f" and {MAX_FORM_PARTS} multipart parts)"
        ),
        415: "unsupported Content-Type",
    }
    return messages.get(error.code or 500, error.description or error.name)


# --------------------------------------------------------------------- the server's own state
class ServerState:
    """What one process of the server knows about itself: its recogniser, its metrics, whether
    it is ready (warmed up, not shutting down), and its heavy-request slots.

    The slots are a semaphore taken without waiting: a heavy request that finds none free is
    answered 503 with ``Retry-After`` at once, instead of queueing behind the others while its
    client's timeout runs out; light requests (predict, the probes) keep their threads.
    """

    def __init__(self, recogniser: Recogniser, metrics: Metrics, heavy_limit: int) -> None:
        self.recogniser = recogniser
        self.metrics = metrics
        self.heavy_limit = heavy_limit
        self.heavy_slots = threading.BoundedSemaphore(heavy_limit)
        self.draining = False
        self.warm_up_error: str | None = None

    def warm_up(self) -> None:
        """Warm the recogniser up (``Recogniser.warm_up``); a failure is logged and kept: the
        process stays alive but never ready."""
        try:
            self.recogniser.warm_up()
        except Exception as error:
            self.warm_up_error = f"{type(error).__name__}: {error}"
            log.exception("the warm-up prediction failed: this process will never be ready")
            raise
        if not self.draining:
            self.metrics.ready.set(1)
        log.info("model %s version %s ready", self.recogniser.name, self.recogniser.version)

    def warm_up_in_background(self) -> threading.Thread:
        def run() -> None:
            try:
                self.warm_up()
            except Exception:  # already logged, and seen by /readyz
                pass

        thread = threading.Thread(target=run, name="npcnn-warm-up", daemon=True)
        thread.start()
        return thread

    def begin_drain(self) -> None:
        """The process is shutting down: ``/readyz`` answers 503 from now on."""
        self.draining = True
        self.metrics.ready.set(0)

    def readiness(self) -> tuple[bool, str]:
        if self.draining:
            return False, "shutting down"
        if self.warm_up_error:
            return False, f"the warm-up failed ({self.warm_up_error})"
        if not self.recogniser.warmed_up:
            return False, "warming up the model"
        return True, "ready"


def server_state() -> ServerState:
    return current_app.extensions["npcnn.server"]


@contextmanager
def heavy_slot() -> Iterator[None]:
    """One of the process's heavy-request slots for the block, or ``Overloaded`` at once."""
    state = server_state()
    if not state.heavy_slots.acquire(blocking=False):
        state.metrics.shed.labels(endpoint=endpoint_label()).inc()
        raise Overloaded(
            f"the server is busy ({state.heavy_limit} heavy requests at once per process):"
            f" try again in {RETRY_AFTER_SECONDS} s"
        )
    try:
        yield
    finally:
        state.heavy_slots.release()


@contextmanager
def no_slot() -> Iterator[None]:
    yield


# --------------------------------------------------------------------- metrics
class Metrics:
    """The server's Prometheus metrics (``prometheus-client``).

    With several worker processes each process writes its values to memory-mapped
    files in ``$PROMETHEUS_MULTIPROC_DIR`` and ``/metrics``, served by any one of them, adds all
    the processes' files up: counts are exact for the whole server.  Without that variable the
    values live in this process, in a registry of this app's own (several apps may live in one
    process, as in the tests).

    ``prometheus_client`` is imported here, not at the top of the module, because it picks its
    multiprocess mode once, when first imported: ``main`` sets the variable first.
    """

    def __init__(self) -> None:
        import prometheus_client as prometheus

        prometheus.disable_created_metrics()  # no *_created series (multiprocess mode has none)
        self.prometheus = prometheus
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        registry = None if self.multiprocess else prometheus.CollectorRegistry()
        self.registry = registry
        seconds = (0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1)
        seconds += (0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
        self.requests = prometheus.Counter(
            "npcnn_http_requests",
            "HTTP requests answered, by endpoint (route), method and status",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = prometheus.Histogram(
            "npcnn_http_request_duration_seconds",
            "Time from the request's arrival in the app to its answer, by endpoint",
            ["endpoint"],
            buckets=seconds,
            registry=registry,
        )
        self.stages = prometheus.Histogram(
            "npcnn_stage_duration_seconds",
            "Time of each stage of a reading: preprocess (bytes -> 28x28) and model (forward pass)",
            ["stage"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, *seconds),
            registry=registry,
        )
        self.in_flight = prometheus.Gauge(
            "npcnn_http_requests_in_flight",
            "Requests being answered right now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.shed = prometheus.Counter(
            "npcnn_shed_requests",
            "Heavy requests answered 503 because every heavy slot of the process was taken",
            ["endpoint"],
            registry=registry,
        )
        self.batch_size = prometheus.Histogram(
            "npcnn_batch_images",
            "Pictures per /api/predict_batch request",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        self.ready = prometheus.Gauge(
            "npcnn_workers_ready",
            "Worker processes ready to serve (warmed up, not shutting down)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.model_info = prometheus.Gauge(
            "npcnn_model_info",
            "The model being served (always 1): its name and version (weights' sha256)",
            ["name", "version"],
            registry=registry,
            multiprocess_mode="max",
        )

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stages.labels(stage=stage).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text of every metric (all processes' in multiprocess mode) and its content type."""
        registry = self.registry
        if registry is None:
            from prometheus_client import multiprocess

            registry = self.prometheus.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return self.prometheus.generate_latest(registry), self.prometheus.CONTENT_TYPE_LATEST


def endpoint_label() -> str:
    """The route that matched (``/api/predict``), never the raw path: a bounded set of labels."""
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


# --------------------------------------------------------------------- every request
def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-ID`` when it is sane (1-128 plain characters), else a new one."""
    if header and REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record: the current request's id, or ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(request_id)s %(name)s: %(message)s"


def log_handler(stream: Any = None) -> logging.Handler:
    """A handler whose lines carry the request id (``LOG_FORMAT``)."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT, defaults={"request_id": "-"}))
    return handler


def start_request() -> None:
    g.request_id = request_id_from(request.headers.get("X-Request-ID"))
    g.started = time.perf_counter()
    server_state().metrics.in_flight.inc()
    g.in_flight = True


def finish_response(response: Response) -> Response:
    """Headers for every answer, then the request counted, timed and logged."""
    security_headers(response)
    request_id = g.get("request_id")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    if request.path.startswith("/api/") or request.path == "/metrics":
        response.headers.setdefault("Cache-Control", "no-store")
    started = g.get("started")
    if started is not None:
        seconds = time.perf_counter() - started
        endpoint = endpoint_label()
        metrics = server_state().metrics
        metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(seconds)
        access_log.info(
            "%s %s %d %.1f ms", request.method, request.path, response.status_code, seconds * 1e3
        )
    return response


def end_request(error: BaseException | None) -> None:
    if g.pop("in_flight", False):
        server_state().metrics.in_flight.dec()


def security_headers(response: Response) -> Response:
    """No sniffing, no referrer, no framing, and only this site's own scripts and styles (no
    inline script or style: the page has none)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self';"
        " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
        " frame-ancestors 'none'",
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
    ready, _ = server_state().readiness()
    return jsonify(status="ok", ready=ready, model=current_recogniser().describe())


@site.get("/livez")
def livez() -> Response:
    return jsonify(status="alive")


@site.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    ready, reason = server_state().readiness()
    if ready:
        return jsonify(status="ready", model=current_recogniser().identity)
    response = jsonify(status="not ready", error=f"not ready: {reason}")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, 503


@site.get("/metrics")
def metrics() -> Response:
    body, content_type = server_state().metrics.exposition()
    return Response(body, content_type=content_type)


@site.post("/api/predict")
def predict() -> Response:
    return timed_answer(current_recogniser().read_digit)


@site.post("/api/predict_number")
def predict_number() -> Response:
    return timed_answer(current_recogniser().read_number)


@site.post("/api/explain")
def explain() -> Response:
    return timed_answer(current_recogniser().explain_digit, heavy=True)


@site.post("/api/predict_batch")
def predict_batch() -> Response:
    """Up to ``MAX_BATCH`` pictures of one digit each, read with one forward pass; each result
    is a reading as from ``/api/predict``, or ``{"error", "status"}`` for a picture that could
    not be read (the others are read all the same)."""
    started = time.perf_counter()
    pictures = batch_pictures()
    recogniser = current_recogniser()
    with heavy_slot():
        readings = recogniser.read_digits(pictures)
    server_state().metrics.batch_size.observe(len(pictures))
    results = []
    for item in readings:
        if isinstance(item, NpcnnError):
            status, message = status_and_message(item)
            if status == 500:
                raise item
            results.append({"error": message, "status": status})
        else:
            results.append(item)
    return jsonify(
        results=results,
        count=len(results),
        errors=sum("error" in result for result in results),
        model=recogniser.identity,
        ms=round((time.perf_counter() - started) * 1000.0, 2),
    )


# --------------------------------------------------------------------- the app
def load_model(weights_path: str | os.PathLike[str] | None = None) -> npcnn.Sequential:
    """The model in ``weights_path``, ``$NPCNN_WEIGHTS`` or ``weights/mnist_cnn.npz``.

    A missing or bad file raises ``npcnn.errors.ModelFileError``.
    """
    return npcnn.load(weights_file(weights_path))


def weights_file(weights_path: str | os.PathLike[str] | None = None) -> Path:
    """``weights_path``, ``$NPCNN_WEIGHTS`` or ``weights/mnist_cnn.npz``; ``ModelFileError``
    when it is not a file."""
    path = Path(weights_path or os.environ.get("NPCNN_WEIGHTS") or DEFAULT_WEIGHTS)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}: train one with `make train`")
    return path


def create_app(
    weights_path: str | os.PathLike[str] | None = None,
    model: Any = None,
    *,
    warm_up: bool | str = True,
    heavy_limit: int | None = None,
) -> Flask:
    """The app around ``model``, or around the model loaded once from ``weights_path``.

    ``warm_up``: ``True`` warms the model up before returning (the app is ready at once),
    ``"background"`` on a thread (``/livez`` answers at once, ``/readyz`` once it is done),
    ``False`` not at all (until ``app.extensions["npcnn.server"].warm_up()``).
    ``heavy_limit``: heavy requests at once (``$NPCNN_HEAVY_LIMIT``, default ``HEAVY_LIMIT``).

    It sets the maths to one thread for the whole process (``npcnn.set_threads(1)``): one
    request works on one small image, so BLAS and Numba threads would only wait for each other
    (one 28x28 image took 100 ms instead of 0.3 ms with 2 threads on a busy 2-core machine).
    Requests run in parallel on the server's threads and processes instead.
    """
    npcnn.set_threads(1)
    metrics = Metrics()
    if model is not None:
        recogniser = Recogniser(model, observe=metrics.observe_stage)
    else:
        recogniser = Recogniser.from_file(weights_file(weights_path), observe=metrics.observe_stage)
    metrics.model_info.labels(recogniser.name, recogniser.version).set(1)
    if heavy_limit is None:
        heavy_limit = int(os.environ.get("NPCNN_HEAVY_LIMIT") or HEAVY_LIMIT)
    state = ServerState(recogniser, metrics, max(1, heavy_limit))

    app = Flask(__name__, root_path=str(HERE))
    app.request_class = InMemoryRequest
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_UPLOAD_BYTES,  # a data URL sent as a text form field
        MAX_FORM_PARTS=MAX_FORM_PARTS,
    )
    app.extensions["npcnn"] = recogniser
    app.extensions["npcnn.server"] = state
    app.register_blueprint(site)
    app.register_error_handler(Exception, error_answer)
    app.before_request(start_request)
    app.after_request(finish_response)
    app.teardown_request(end_request)
    if warm_up == "background":
        state.warm_up_in_background()
    elif warm_up:
        state.warm_up()
    return app


# --------------------------------------------------------------------- servers
@contextmanager
def multiprocess_metrics_dir() -> Iterator[str]:
    """``$PROMETHEUS_MULTIPROC_DIR`` for the worker processes' metrics, set for the block: the
    given directory emptied of old files, or a new temporary one, removed afterwards."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for old in Path(given).glob("*.db"):  # a previous run's values would be added in
            old.unlink()
        yield given
        return
    path = tempfile.mkdtemp(prefix="npcnn-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield path
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


def serve_gunicorn(args: argparse.Namespace) -> None:
    """Serve with gunicorn: ``args.workers`` processes of ``args.threads`` threads each (gthread
    workers), the metrics of all of them in one ``/metrics``.

    Each worker loads the model itself after the fork and warms it up in the background
    (``/livez`` at once, ``/readyz`` when warm).  On SIGTERM a worker stops being ready, keeps
    serving for ``args.drain_seconds`` (for load balancers to notice), then finishes its requests
    and exits.
    """
    from gunicorn.app.base import BaseApplication

    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set")

    def child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # its in-flight gauge goes; counts stay

    def post_worker_init(worker: Any) -> None:
        state: ServerState = worker.wsgi.extensions["npcnn.server"]
        stop = worker.handle_exit

        def drain_then_stop(signum: int, frame: Any) -> None:
            state.begin_drain()
            if args.drain_seconds > 0:
                threading.Timer(args.drain_seconds, stop, (signum, frame)).start()
            else:
                stop(signum, frame)

        signal.signal(signal.SIGTERM, drain_then_stop)

    class Server(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": f"{args.host}:{args.port}",
                "workers": args.workers,
                "worker_class": "gthread" if args.threads > 1 else "sync",
                "threads": args.threads,
                "timeout": 60,
                "graceful_timeout": int(args.drain_seconds) + 30,
                "keepalive": 5,
                "proc_name": "npcnn",
                "child_exit": child_exit,
                "post_worker_init": post_worker_init,
                "control_socket_disable": True,  # gunicorn >= 25: no ~/.gunicorn/gunicorn.ctl
            }
            for key, value in options.items():
                if key in self.cfg.settings:  # an older gunicorn lacks the newer settings
                    self.cfg.set(key, value)

        def load(self) -> Flask:
            return create_app(args.weights, warm_up="background", heavy_limit=args.heavy_limit)

    with multiprocess_metrics_dir():
        Server().run()


def serve_waitress(args: argparse.Namespace) -> None:
    """Serve with waitress: ``args.workers`` processes of ``args.threads`` threads each.

    One process serves on its own.  Several share one listening socket, opened here and handed
    to each (``waitress_process``, started fresh by ``multiprocessing``'s spawn); this process
    only watches them (``supervise``), and the metrics of all of them are in one ``/metrics``.
    """
    if args.workers == 1:
        waitress_process(args)
        return
    listener = socket.create_server((args.host, args.port), backlog=2048)
    with multiprocess_metrics_dir():
        supervise(listener, args)


def waitress_process(args: argparse.Namespace, listener: socket.socket | None = None) -> None:
    """One waitress process: the app (warmed up in the background: ``/livez`` at once,
    ``/readyz`` when warm) on ``listener``, or on ``args.host:args.port``.  On SIGTERM it stops
    being ready, keeps serving for ``args.drain_seconds``, then closes."""
    from waitress import create_server

    if listener is not None:  # a fresh interpreter started by ``supervise``
        logging.basicConfig(level=logging.INFO, handlers=[log_handler()])
    app = create_app(args.weights, warm_up="background", heavy_limit=args.heavy_limit)
    where = {"sockets": [listener]} if listener else {"host": args.host, "port": args.port}
    server = create_server(
        app,
        threads=args.threads,
        ident="npcnn",
        # Slow clients cost a socket here, not a thread: allow many (poll(), not select()'s 1024
        # descriptors), and drop one that sends nothing for 30 s.
        connection_limit=1000,
        asyncore_use_poll=True,
        channel_timeout=30,
        **where,
    )

    state: ServerState = app.extensions["npcnn.server"]

    def drain_then_stop(signum: int, frame: Any) -> None:
        if not state.draining and args.drain_seconds > 0:  # the SIGTERM: drain, then stop
            state.begin_drain()
            threading.Timer(args.drain_seconds, os.kill, (os.getpid(), signal.SIGTERM)).start()
            return
        state.begin_drain()
        raise SystemExit(0)  # ends waitress's loop (in this, the main thread)

    signal.signal(signal.SIGTERM, drain_then_stop)
    try:
        server.run()  # returns on SystemExit or KeyboardInterrupt
    finally:
        server.close()


def supervise(listener: socket.socket, args: argparse.Namespace) -> None:
    """Keep ``args.workers`` waitress processes serving on ``listener``: start them, start a new
    one when one dies (unless they keep dying at start), and on SIGTERM or SIGINT pass SIGTERM
    on (each drains, see ``waitress_process``) and wait for them."""
    import multiprocessing
    from multiprocessing.connection import wait

    from prometheus_client import multiprocess

    spawn = multiprocessing.get_context("spawn")
    workers: dict[int, tuple[Any, float]] = {}  # pid -> (process, start time)
    stopping = threading.Event()
    quick_deaths = 0

    def start_one() -> None:
        process = spawn.Process(target=waitress_process, args=(args, listener), name="npcnn")
        process.start()
        workers[process.pid] = (process, time.monotonic())
        log.info("started worker %d", process.pid)

    def stop(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(args.workers):
        start_one()
    while not stopping.is_set():
        wait([process.sentinel for process, _ in workers.values()], timeout=0.5)
        for pid, (process, started) in list(workers.items()):
            if process.is_alive() or stopping.is_set():
                continue
            del workers[pid]
            multiprocess.mark_process_dead(pid)  # its in-flight gauge goes; its counts stay
            log.warning("worker %d exited with %s", pid, process.exitcode)
            quick_deaths = quick_deaths + 1 if time.monotonic() - started < 10 else 0
            if quick_deaths >= 3 * args.workers:
                log.error("the workers keep dying as they start: stopping")
                stopping.set()
                break
            start_one()
    for process, _ in workers.values():
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + args.drain_seconds + 30
    for pid, (process, _) in workers.items():
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
        multiprocess.mark_process_dead(pid)
    listener.close()


# --------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Serve the npcnn draw-a-digit app.")
    parser.add_argument("--host", default=env("NPCNN_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("NPCNN_PORT", "5000")))
    parser.add_argument("--weights", default=env("NPCNN_WEIGHTS") or str(DEFAULT_WEIGHTS))
    parser.add_argument(
        "--production",
        action="store_true",
        help="serve with a production WSGI server (waitress in --workers processes)",
    )
    parser.add_argument(
        "--server",
        choices=("gunicorn", "waitress"),
        default=env("NPCNN_SERVER", "waitress"),
        help="with --production: waitress (the default) or gunicorn (behind a proxy only)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env("NPCNN_WORKERS") or 0),
        help="worker processes (default 0: one per core)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(env("NPCNN_THREADS") or 0),
        help="threads per process (default 4)",
    )
    parser.add_argument(
        "--heavy-limit",
        type=int,
        default=int(env("NPCNN_HEAVY_LIMIT") or 0),
        help="heavy requests (explain, batch) at once per process; more get 503 + Retry-After"
        " (default 0: half the threads, so that the other half keeps serving light requests)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=float(env("NPCNN_DRAIN_SECONDS") or 0),
        help="on SIGTERM, answer /readyz 503 but keep serving this long before stopping",
    )
    args = parser.parse_args(argv)
    args.workers = args.workers or os.cpu_count() or 1
    args.threads = args.threads or 4
    args.heavy_limit = args.heavy_limit or max(1, args.threads // 2)
    try:
        load_model(args.weights)  # a missing or bad file is said now, not by every worker
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, handlers=[log_handler()])
    url = f"http://{args.host}:{args.port}/"
    if args.production and args.server == "gunicorn":
        print(
            f"npcnn app (gunicorn, {args.workers} processes x {args.threads} threads) on {url}",
            flush=True,
        )
        serve_gunicorn(args)
    elif args.production:
        print(
            f"npcnn app (waitress, {args.workers} processes x {args.threads} threads) on {url}",
            flush=True,
        )
        serve_waitress(args)
    else:
        app = create_app(args.weights, heavy_limit=args.heavy_limit)
        print(f"npcnn app (Flask development server) on {url}", flush=True)
        app.run(host=args.host, port=args.port, debug=False, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
