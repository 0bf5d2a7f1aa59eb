"""Reading request bodies, bounded, and turning errors into HTTP answers.

Every way a client may send a picture (multipart file, a data URL in a form field, JSON, a raw
``image/*`` body) is read here; JSON is bounded before parsing.  ``ERROR_STATUS`` is the one map
from errors of bad input to HTTP statuses, and ``error_answer`` the app's one error handler: every
error is ``{"error": "..."}`` with its status, and anything unexpected a logged 500 that tells the
client nothing of the internals.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from typing import Any

from flask import Request, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from npcnn.digits.errors import ImageError, NoInkError
from npcnn.digits.feedback import FeedbackError, StoreUnavailable, UploadTooLarge
from npcnn.digits.recogniser import TooManyMarksError, decode_base64_image
from npcnn.errors import NpcnnError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # whole request body; bigger -> 413
MAX_BATCH = 64  # pictures in one /api/predict_batch; more -> 413
MAX_FORM_PARTS = MAX_BATCH + 16  # multipart parts (files and fields); more -> 413
# Brackets, braces and commas in a JSON body: a bound on its nesting and its number of values,
# checked before parsing (a 64-picture batch of data URLs has about 130).
MAX_JSON_STRUCTURE = 512
RETRY_AFTER_SECONDS = 1

log = logging.getLogger("npcnn.app")


class RequestError(NpcnnError):
    """The request carries no image to read (a missing field, a body that is not JSON)."""


class UnsupportedContentType(RequestError):
    """The request's Content-Type is none of multipart/form-data, JSON and image/*."""


class BatchTooLarge(RequestError):
    """A batch of more than ``MAX_BATCH`` pictures."""


class Overloaded(NpcnnError):
    """Every heavy-request slot of this process is taken: try again shortly (503)."""


class UndoRefused(NpcnnError):
    """An undo without the correction's valid undo token, or after its window (403)."""


class CorrectionNotFound(NpcnnError):
    """No correction with this id (404)."""


class RateLimited(NpcnnError):
    """Too many requests from one client: try again after ``retry_after`` seconds (429)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
    (UploadTooLarge, 413),  # a correction's upload larger than the store keeps
    (FeedbackError, 400),  # a bad correction: nothing stored
    (StoreUnavailable, 503),  # the corrections database is down
    (RateLimited, 429),
    (UndoRefused, 403),
    (CorrectionNotFound, 404),
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
    elif isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
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
