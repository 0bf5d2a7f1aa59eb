"""Serving the app in production: waitress in several processes sharing one listening socket,
watched by a supervisor that restarts a worker that dies, or gunicorn; each process drains on
SIGTERM, and the metrics of all of them are gathered in one ``/metrics``.

``make_app(args)`` builds a process's Flask app (``app.py``'s factory); it must be a module-level
function, since ``waitress_process`` runs in a fresh interpreter started by ``spawn``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

from npcnn.digits.web.hooks import log_handler
from npcnn.digits.web.limits import ServerState

log = logging.getLogger("npcnn.app")
AppFactory = Callable[[argparse.Namespace], Flask]


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


def serve_gunicorn(args: argparse.Namespace, make_app: AppFactory) -> None:
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
            return make_app(args)

    with multiprocess_metrics_dir():
        Server().run()


def serve_waitress(args: argparse.Namespace, make_app: AppFactory) -> None:
    """Serve with waitress: ``args.workers`` processes of ``args.threads`` threads each.

    One process serves on its own.  Several share one listening socket, opened here and handed
    to each (``waitress_process``, started fresh by ``multiprocessing``'s spawn); this process
    only watches them (``supervise``), and the metrics of all of them are in one ``/metrics``.
    """
    if args.workers == 1:
        waitress_process(args, make_app)
        return
    listener = socket.create_server((args.host, args.port), backlog=2048)
    with multiprocess_metrics_dir():
        supervise(listener, args, make_app)


def waitress_process(
    args: argparse.Namespace, make_app: AppFactory, listener: socket.socket | None = None
) -> None:
    """One waitress process: the app (warmed up in the background: ``/livez`` at once,
    ``/readyz`` when warm) on ``listener``, or on ``args.host:args.port``.  On SIGTERM it stops
    being ready, keeps serving for ``args.drain_seconds``, then closes."""
    from waitress import create_server

    if listener is not None:  # a fresh interpreter started by ``supervise``
        logging.basicConfig(level=logging.INFO, handlers=[log_handler()])
    app = make_app(args)
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


def supervise(listener: socket.socket, args: argparse.Namespace, make_app: AppFactory) -> None:
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
        process = spawn.Process(
            target=waitress_process, args=(args, make_app, listener), name="npcnn"
        )
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
