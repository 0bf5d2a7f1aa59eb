"""What happens around every request: its id (``X-Request-ID``), the security headers, and its
count, time and access-log line; the log handler whose lines carry the request id."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from flask import Response, g, has_request_context, request

from npcnn.digits.web.limits import server_state
from npcnn.digits.web.metrics import endpoint_label

REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}")

access_log = logging.getLogger("npcnn.access")


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
