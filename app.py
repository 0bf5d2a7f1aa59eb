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
- ``POST /api/feedback``       a correction: the picture (``image``) and its true ``label`` (0-9
                               or ``none``) -> 201 ``{"id", "undo_token", ...}`` once stored
- ``DELETE /api/feedback/<id>`` undo a correction within ``UNDO_SECONDS`` (with its undo token)
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
whole requests to the app's threads, so slow clients cannot hold them (gunicorn reads requests on
the app's threads: a dozen slow clients stop two gthread workers dead, one stops a sync worker;
it needs a buffering proxy such as nginx in front, and there its sync workers, ``--threads 1``,
serve about 25% more requests/s under load).  Several waitress processes share one listening
socket (``serve_waitress``): 1.5-1.6x the requests/s of one process on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template

import npcnn
from npcnn.digits.recogniser import Recogniser
from npcnn.digits.web.corrections import Corrections
from npcnn.digits.web.hooks import end_request, finish_response, log_handler, start_request
from npcnn.digits.web.limits import HEAVY_LIMIT, ServerState, heavy_slot, no_slot, server_state
from npcnn.digits.web.metrics import Metrics
from npcnn.digits.web.processes import serve_gunicorn, serve_waitress
from npcnn.digits.web.requests import (
    MAX_BATCH,
    MAX_FORM_PARTS,
    MAX_UPLOAD_BYTES,
    RETRY_AFTER_SECONDS,
    InMemoryRequest,
    batch_pictures,
    error_answer,
    image_bytes,
    status_and_message,
)
from npcnn.errors import ModelFileError, NpcnnError

__all__ = ["MAX_BATCH", "MAX_FORM_PARTS", "MAX_UPLOAD_BYTES", "create_app", "log_handler", "main"]

HERE = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = HERE / "weights" / "mnist_cnn.npz"

site = Blueprint("site", __name__)


# --------------------------------------------------------------------- pages and endpoints
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


@site.post("/api/feedback")
def feedback() -> tuple[Response, int]:
    """A user's correction, stored: 201 ``{"id", "undo_token", ...}`` only once committed."""
    return jsonify(corrections().add_from_request()), 201


@site.delete("/api/feedback/<int:correction_id>")
def undo_feedback(correction_id: int) -> tuple[str, int]:
    """Undo a correction within its window, with its undo token: 204."""
    corrections().undo_from_request(correction_id)
    return "", 204


def corrections() -> Corrections:
    return current_app.extensions["npcnn.corrections"]


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
    database_url: str | None = None,
    feedback_per_minute: float | None = None,
    feedback_burst: int | None = None,
) -> Flask:
    """The app around ``model``, or around the model loaded once from ``weights_path``.

    ``warm_up``: ``True`` warms the model up before returning (the app is ready at once),
    ``"background"`` on a thread (``/livez`` answers at once, ``/readyz`` once it is done),
    ``False`` not at all (until ``app.extensions["npcnn.server"].warm_up()``).
    ``heavy_limit``: heavy requests at once (``$NPCNN_HEAVY_LIMIT``, default ``HEAVY_LIMIT``).
    ``database_url``: the corrections database (default ``$NPCNN_DATABASE_URL``, else a SQLite
    file), opened on the first correction; ``feedback_per_minute``/``feedback_burst``: the
    per-client rate limit of corrections (``$NPCNN_FEEDBACK_PER_MINUTE``, ``$NPCNN_FEEDBACK_BURST``).

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
    app.extensions["npcnn.corrections"] = Corrections(
        recogniser, database_url, per_minute=feedback_per_minute, burst=feedback_burst
    )
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


def process_app(args: argparse.Namespace) -> Flask:
    """One server process's app, warmed up in the background (``/livez`` at once, ``/readyz``
    when warm): the factory that ``npcnn.digits.web.processes`` calls in every worker."""
    return create_app(args.weights, warm_up="background", heavy_limit=args.heavy_limit)


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
    # One secret for the undo tokens of every worker process (an undo may reach another one).
    os.environ.setdefault("NPCNN_UNDO_SECRET", secrets.token_hex(32))
    url = f"http://{args.host}:{args.port}/"
    if args.production and args.server == "gunicorn":
        print(
            f"npcnn app (gunicorn, {args.workers} processes x {args.threads} threads) on {url}",
            flush=True,
        )
        serve_gunicorn(args, process_app)
    elif args.production:
        print(
            f"npcnn app (waitress, {args.workers} processes x {args.threads} threads) on {url}",
            flush=True,
        )
        serve_waitress(args, process_app)
    else:
        app = create_app(args.weights, heavy_limit=args.heavy_limit)
        print(f"npcnn app (Flask development server) on {url}", flush=True)
        app.run(host=args.host, port=args.port, debug=False, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
