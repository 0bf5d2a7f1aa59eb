"""One server process's own state: its recogniser and metrics, whether it is ready (warmed up,
not shutting down), and its heavy-request slots (explanations and batches past the limit are
answered 503 at once instead of queueing)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app

from npcnn.digits.recogniser import Recogniser
from npcnn.digits.web.metrics import Metrics, endpoint_label
from npcnn.digits.web.requests import RETRY_AFTER_SECONDS, Overloaded

HEAVY_LIMIT = 2  # heavy requests at once per process (the command line: half the threads)

log = logging.getLogger("npcnn.app")


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
