"""``/api/feedback``: users' corrections of wrong answers, read from the request, checked, and
handed to the corrections store (``npcnn.digits.feedback``).

A correction is a picture and its true label.  The server never trusts what the client says the
model saw or answered: it recomputes the model's 28x28 input, the prediction and its confidence
from the picture itself with the app's recogniser, so the stored data is what this model really
did (the optional ``index`` picks one digit of a number, segmented as ``/api/predict_number``
does).  It answers 201 only once the store has committed the row.

**Undo.**  The 201 answer carries an ``undo_token``: ``<deadline>.<HMAC>`` over the row id and its
deadline (``UNDO_SECONDS`` after creation), signed with a secret of the server
(``$NPCNN_UNDO_SECRET``; the command line sets one shared by all its worker processes, else each
app draws its own).  ``DELETE /api/feedback/<id>`` with that token (header ``X-Undo-Token`` or
JSON ``{"undo_token": ...}``) deletes the row before the deadline; nobody can delete a row
without its token, and nothing is deleted after the window.

**Rate limit.**  ``feedback.RateLimiter`` per client, keyed by the remote address, in memory only
(never stored): past it, 429 with ``Retry-After``.

**Faults.**  The store is created on first use from ``NPCNN_DATABASE_URL`` (or the URL given to
``create_app``); a database that is down gives 503 on these routes only: predictions and
``/readyz`` never touch it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from typing import Any

import numpy as np
from flask import request

from npcnn.digits.feedback import (
    Correction,
    FeedbackError,
    FeedbackStore,
    RateLimiter,
    UploadTooLarge,
    normalise_label,
)
from npcnn.digits.recogniser import Recogniser, decode_base64_image
from npcnn.digits.web.requests import (
    CorrectionNotFound,
    RateLimited,
    RequestError,
    UndoRefused,
    is_json,
    json_body,
    unsupported,
)

UNDO_SECONDS = 30.0  # how long a correction may be undone
FEEDBACK_PER_MINUTE = 30.0  # corrections per client and minute, after a burst
FEEDBACK_BURST = 10


class Corrections:
    """The app's side of the corrections: the store (created on first use), the rate limiter
    and the undo tokens' secret.  One per app; thread-safe."""

    def __init__(
        self,
        recogniser: Recogniser,
        database_url: str | None = None,
        per_minute: float | None = None,
        burst: int | None = None,
        undo_seconds: float = UNDO_SECONDS,
        secret: bytes | None = None,
    ) -> None:
        self.recogniser = recogniser
        self.database_url = database_url
        env = os.environ.get
        per_minute = per_minute or float(env("NPCNN_FEEDBACK_PER_MINUTE") or FEEDBACK_PER_MINUTE)
        burst = burst or int(env("NPCNN_FEEDBACK_BURST") or FEEDBACK_BURST)
        self.limiter = RateLimiter(per_minute=per_minute, burst=burst)
        self.undo_seconds = undo_seconds
        given = env("NPCNN_UNDO_SECRET")
        self.secret = secret or (given.encode() if given else secrets.token_bytes(32))
        self._store: FeedbackStore | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> FeedbackStore:
        """The corrections store, created on first use (creating it connects to nothing)."""
        with self._lock:
            if self._store is None:
                self._store = FeedbackStore(self.database_url)
            return self._store

    # ------------------------------------------------------------------ the routes' work
    def check_rate(self) -> None:
        """Take a token of this client's bucket, or ``RateLimited`` (429)."""
        wait = self.limiter.check(request.remote_addr or "-")
        if wait > 0:
            raise RateLimited(
                f"too many corrections from this client: try again in {wait:.0f} s", wait
            )

    def add_from_request(self) -> dict[str, Any]:
        """Read, check, recompute and store the correction of the current request; the 201
        answer ``{"id", "undo_token", "undo_seconds", "label", "predicted", "confidence"}``."""
        self.check_rate()
        data, label, index = correction_request()
        label = normalise_label(label)
        store = self.store
        if len(data) > store.max_upload_bytes:
            raise UploadTooLarge(
                f"the upload is {len(data):,} bytes; at most {store.max_upload_bytes:,}"
                " are kept with a correction"
            )
        seen = self.recogniser.read_for_correction(data, index)
        correction = Correction(
            image=np.clip(seen["image"], 0.0, 1.0),
            label=label,
            predicted=seen["predicted"],
            confidence=min(1.0, max(0.0, float(seen["confidence"]))),
            model_version=self.recogniser.version,
            upload=data,
        )
        row_id = store.add(correction)  # returns once committed
        return {
            "id": row_id,
            "undo_token": self.undo_token(row_id, time.time() + self.undo_seconds),
            "undo_seconds": self.undo_seconds,
            "label": label,
            "predicted": str(seen["predicted"]),
            "confidence": seen["confidence"],
        }

    def undo_from_request(self, row_id: int) -> None:
        """Delete correction ``row_id`` if the request carries its valid, unexpired undo token."""
        token = request.headers.get("X-Undo-Token")
        if not token and is_json(request.mimetype):
            payload = json_body()
            token = payload.get("undo_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise UndoRefused("an undo needs the correction's undo_token (header X-Undo-Token)")
        deadline_text, _, _ = token.partition(".")
        try:
            deadline = int(deadline_text) / 1000.0
        except ValueError:
            raise UndoRefused("this undo token is not valid for this correction") from None
        if not hmac.compare_digest(token, self.undo_token(row_id, deadline)):
            raise UndoRefused("this undo token is not valid for this correction")
        if time.time() > deadline:
            raise UndoRefused(
                f"too late to undo: corrections can be undone for {self.undo_seconds:g} s"
            )
        if not self.store.delete(row_id):
            raise CorrectionNotFound(f"no correction {row_id} (already undone?)")

    def undo_token(self, row_id: int, deadline: float) -> str:
        """``<deadline in ms>.<HMAC-SHA256 of id and deadline>``."""
        millis = int(deadline * 1000)
        message = f"{int(row_id)}.{millis}".encode()
        return f"{millis}.{hmac.new(self.secret, message, hashlib.sha256).hexdigest()}"


def correction_request() -> tuple[bytes, object, int | None]:
    """The picture's bytes, the label as sent and the optional digit ``index``, from multipart
    (file or data-URL field ``image``, fields ``label`` and ``index``) or JSON."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is not None:
            data = upload.read()
        elif isinstance(request.form.get("image"), str):
            data = decode_base64_image(request.form["image"])
        else:
            raise RequestError("missing the file field 'image' in the multipart form")
        if "label" not in request.form:
            raise FeedbackError("missing the field 'label': a digit 0-9 or 'none'")
        return data, request.form["label"], digit_index(request.form.get("index"))
    if is_json(mimetype):
        payload = json_body()
        if not isinstance(payload, dict) or "image" not in payload or "label" not in payload:
            raise RequestError(
                'the JSON body must be an object like {"image": "<data URL>", "label": "7"}'
            )
        if not isinstance(payload["image"], str):
            raise RequestError("'image' must be a string: a data URL or base64")
        return (
            decode_base64_image(payload["image"]),
            payload["label"],
            digit_index(payload.get("index")),
        )
    raise unsupported(mimetype, "multipart/form-data or JSON")


def digit_index(value: object) -> int | None:
    """The optional ``index`` of one digit in a number: a whole number 0..99, or ``None``."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise FeedbackError("index must be a whole number 0-99")
    try:
        index = int(value) if isinstance(value, (int, str)) else None
    except ValueError:
        index = None
    if index is None or not 0 <= index < 100:
        raise FeedbackError("index must be a whole number 0-99 (the digit's place, from the left)")
    return index
