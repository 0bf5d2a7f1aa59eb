"""Load benchmark of the drawing app's ``POST /api/predict``.

Starts the app (``app.py --production --server S --workers N --threads T``) in a subprocess on
127.0.0.1 (a free port), waits until it is ready (``/readyz``), then:

1. one client, sequential requests (after a warm-up): the latency a user feels;
2. N concurrent clients (threads, one keep-alive connection each), R requests each, bounded by
   ``--max-seconds``: throughput (requests/s) and the latency under load.

Each request POSTs the same 280 x 280 PNG drawing of a digit (dark ink on white) as
multipart/form-data, like the page does.  Prints a table, or JSON with ``--json``.

``--compare`` runs several servers in turn in one run (``--rounds`` times, alternating, so that
the drift of a shared machine hits all of them), one table row per server and load::

    python benchmarks/bench_server.py [--clients 8] [--requests 200] [--weights PATH] [--json]
    python benchmarks/bench_server.py --server waitress --workers 2 --threads 4
    python benchmarks/bench_server.py --compare waitress:1x4 gunicorn:1x2 gunicorn:2x2 --rounds 2
    python benchmarks/bench_server.py --url http://127.0.0.1:5000   # an already running server

A server is ``NAME:WORKERSxTHREADS``: ``waitress:1x4`` is one waitress process of 4 threads,
``gunicorn:2x2`` two gunicorn worker processes (gthread) of 2 threads each.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, NamedTuple

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
BOUNDARY = "npcnn-bench-boundary"


def digit_png(size: int = 280) -> bytes:
    """A hand-drawn-looking '3' in dark ink on white, as PNG bytes."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    s = size / 280
    strokes = [
        [(95, 70), (130, 55), (170, 62), (185, 90), (165, 125), (130, 138)],
        [(130, 138), (175, 150), (190, 185), (170, 220), (130, 230), (92, 215)],
    ]
    for stroke in strokes:
        points = [(x * s, y * s) for x, y in stroke]
        draw.line(points, fill=20, width=int(18 * s), joint="curve")
        for x, y in (points[0], points[-1]):
            r = 9 * s
            draw.ellipse((x - r, y - r, x + r, y + r), fill=20)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def multipart_body(png: bytes) -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="image"; filename="drawing.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerSpec(NamedTuple):
    """Which server to start: ``waitress`` or ``gunicorn``, its processes and threads each."""

    server: str
    workers: int
    threads: int

    @classmethod
    def parse(cls, text: str) -> ServerSpec:
        """``gunicorn:2x2`` -> ServerSpec("gunicorn", 2, 2)."""
        try:
            server, shape = text.split(":")
            workers, threads = (int(n) for n in shape.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected NAME:WORKERSxTHREADS, got {text!r}"
            ) from None
        if server not in ("gunicorn", "waitress") or workers < 1 or threads < 1:
            raise argparse.ArgumentTypeError(f"bad server {text!r}")
        return cls(server, workers, threads)

    def __str__(self) -> str:
        return f"{self.server} {self.workers}x{self.threads}"


def start_server(
    weights: str | None, spec: ServerSpec, log: IO[bytes]
) -> tuple[subprocess.Popen, str]:
    """Start ``app.py --production`` (its output goes to ``log``, a file: a pipe nobody reads
    would fill up and stall the server) and wait until every worker is ready (each warms up on
    its own): ``/metrics`` counts them in ``npcnn_workers_ready``."""
    port = free_port()
    command = [
        sys.executable,
        str(ROOT / "app.py"),
        "--production",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--server",
        spec.server,
        "--workers",
        str(spec.workers),
        "--threads",
        str(spec.threads),
    ]
    if weights:
        command += ["--weights", weights]
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited:\n{log.read().decode(errors='replace')}")
        try:
            with urllib.request.urlopen(url + "/metrics", timeout=2) as response:
                ready = re.search(rb"^npcnn_workers_ready (\S+)$", response.read(), re.M)
            if ready and float(ready[1]) >= spec.workers:
                return process, url
        except OSError:  # refused while starting
            pass
        time.sleep(0.2)
    stop_server(process)
    raise SystemExit("the server was not ready within 120 s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Client:
    """One keep-alive HTTP connection that POSTs the drawing and times each answer."""

    def __init__(self, url: str, path: str, body: bytes) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.path, self.body = path, body
        self.headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def post(self) -> tuple[float, bool]:
        """(latency in ms, ok?)"""
        started = time.perf_counter()
        try:
            self.connection.request("POST", self.path, body=self.body, headers=self.headers)
            response = self.connection.getresponse()
            payload = response.read()
            ok = response.status == 200 and b'"digit"' in payload
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            ok = False
        return (time.perf_counter() - started) * 1000.0, ok

    def close(self) -> None:
        self.connection.close()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(latencies: list[float], errors: int, seconds: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(latencies) / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(statistics.fmean(latencies), 2) if latencies else float("nan"),
    }


def run_single(url: str, path: str, body: bytes, requests: int, warmup: int) -> dict[str, float]:
    client = Client(url, path, body)
    for _ in range(warmup):
        client.post()
    latencies, errors = [], 0
    started = time.perf_counter()
    for _ in range(requests):
        ms, ok = client.post()
        latencies.append(ms)
        errors += not ok
    seconds = time.perf_counter() - started
    client.close()
    return summarise(latencies, errors, seconds)


def run_concurrent(
    url: str, path: str, body: bytes, clients: int, requests: int, max_seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start_together = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker() -> None:
        client = Client(url, path, body)
        mine, bad = [], 0
        start_together.wait()
        for _ in range(requests):
            if time.perf_counter() > deadline[0]:
                break
            ms, ok = client.post()
            mine.append(ms)
            bad += not ok
        client.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline[0] = started + max_seconds
    start_together.wait()
    for thread in threads:
        thread.join()
    return summarise(latencies, errors[0], time.perf_counter() - started)


def bench_one(args: argparse.Namespace, spec: ServerSpec | None, body: bytes) -> dict[str, object]:
    """Start the ``spec`` server (or use ``args.url``), run both loads, stop it."""
    process = None
    server_log = tempfile.TemporaryFile()
    try:
        if args.url:
            url = args.url.rstrip("/")
        else:
            process, url = start_server(args.weights, spec, server_log)
        with urllib.request.urlopen(url + "/api/health", timeout=10) as response:
            model = json.load(response).get("model", {})
        single = run_single(url, args.endpoint, body, args.single, args.warmup)
        concurrent = run_concurrent(
            url, args.endpoint, body, args.clients, args.requests, args.max_seconds
        )
    finally:
        if process is not None:
            stop_server(process)
        server_log.close()
    return {
        "server": str(spec) if spec else args.url,
        "model": model.get("name"),
        "model_version": model.get("version"),
        "backend": model.get("backend"),
        "single_client": single,
        "concurrent": {"clients": args.clients, **concurrent},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--single", type=int, default=200, help="sequential single-client requests")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="cap of the concurrent run")
    parser.add_argument("--server", choices=("gunicorn", "waitress"), default="waitress")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per process")
    parser.add_argument(
        "--compare",
        nargs="+",
        type=ServerSpec.parse,
        metavar="NAME:WxT",
        help="servers to run in turn, e.g. waitress:1x4 gunicorn:1x2 gunicorn:2x2",
    )
    parser.add_argument("--rounds", type=int, default=1, help="with --compare: alternations")
    parser.add_argument("--weights", default=os.environ.get("NPCNN_WEIGHTS"))
    parser.add_argument("--endpoint", default="/api/predict")
    parser.add_argument("--url", help="benchmark this running server instead of starting one")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.single < 1 or args.rounds < 1:
        parser.error("--clients, --requests, --single and --rounds must be at least 1")
    specs = args.compare or [ServerSpec(args.server, args.workers, args.threads)]
    if args.url:
        specs, args.rounds = [None], 1

    png = digit_png()
    body = multipart_body(png)
    runs = []
    for round_number in range(args.rounds):
        for spec in specs:
            run = bench_one(args, spec, body)
            run["round"] = round_number + 1
            runs.append(run)
            if not args.json:
                print(f"  done: {run['server']}, round {round_number + 1}", file=sys.stderr)

    result = {
        "endpoint": args.endpoint,
        "image": "280x280 PNG drawing, multipart/form-data",
        "png_bytes": len(png),
        "cpu_count": os.cpu_count(),
        "runs": runs,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"POST {args.endpoint}: {result['image']} ({len(png)} bytes), model {runs[0]['model']}"
        f" {runs[0]['model_version']} ({runs[0]['backend']}), {result['cpu_count']} CPUs"
    )
    columns = ("requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms")
    header = f"{'server (procs x threads)':<26}{'load':<11}" + "".join(f"{c:>9}" for c in columns)
    print(header)
    print("-" * len(header))
    for run in runs:
        label = f"{run['server']}" + (f" #{run['round']}" if args.rounds > 1 else "")
        for load, row in (
            ("1 client", run["single_client"]),
            (f"{args.clients} clients", run["concurrent"]),
        ):
            print(
                f"{label:<26}{load:<11}{row['requests']:>9}{row['errors']:>9}"
                f"{row['requests_per_s']:>9.1f}{row['p50_ms']:>9.2f}{row['p90_ms']:>9.2f}"
                f"{row['p99_ms']:>9.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
