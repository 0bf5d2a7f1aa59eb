"""A fault under load: 8 clients post corrections to the real production server (``app.py
--production``, waitress in 2 processes) while the whole server is killed with SIGKILL; after a
restart, every acknowledged correction (201 received) is in the export, and nothing is there that
was not sent - at most one extra row per client (committed, but the answer died with the
server).  On a SQLite file (whose ``PRAGMA integrity_check`` must say ``ok``) and on a throwaway
PostgreSQL database.

Bounded: 8 clients x at most 40 requests, the kill after ~1 s (or 106 answers), a timeout on every request and
wait.  Each correction carries a unique key in its PNG (a tEXt chunk), so each stored row names
the request it came from (the store keeps the original upload).
"""

from __future__ import annotations

import csv
import http.client
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from app_helpers import ROOT, draw_digit
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from npcnn.digits.feedback import FeedbackStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "digits"))
import postgres_cluster  # noqa: E402

postgres_cluster_fixture = postgres_cluster.postgres_cluster_fixture
postgres_database_fixture = postgres_cluster.postgres_database_fixture

pytestmark = pytest.mark.slow

CLIENTS = 8
MAX_REQUESTS = 40  # per client
FIRST_ACK_WITHIN_S = 30.0  # a busy 2-core machine may take seconds over a worker's first write
KILL_AFTER_S = 1.0  # after the first acknowledgement
KILL_AFTER_ACKS = CLIENTS * MAX_REQUESTS // 3  # or sooner, on a fast machine: mid-load for sure
BOUNDARY = "npcnn-fault-boundary"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(weights: Path, db_url: str, port: int, metrics_dir: Path, log) -> subprocess.Popen:
    """``app.py --production`` (2 waitress processes) in a process group of its own; returns once
    both workers are ready."""
    command = [sys.executable, str(ROOT / "app.py"), "--production", "--port", str(port)]
    command += ["--weights", str(weights), "--workers", "2", "--threads", "4"]
    env = {
        **os.environ,
        "NPCNN_DATABASE_URL": db_url,
        "NPCNN_FEEDBACK_PER_MINUTE": "1000000",  # every client is 127.0.0.1: no rate limit here
        "NPCNN_FEEDBACK_BURST": "100000",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited at start"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                if b"npcnn_workers_ready 2.0" in answer.read():
                    return process
        except OSError:
            pass
        time.sleep(0.2)
    kill_group(process)
    raise AssertionError("the server was not ready in 60 s")


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def keyed_png(base: Image.Image, key: str) -> bytes:
    info = PngInfo()
    info.add_text("npcnn-test-key", key)
    buffer = io.BytesIO()
    base.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def key_of(upload: bytes) -> str:
    return Image.open(io.BytesIO(upload)).text["npcnn-test-key"]


def post_correction(port: int, picture: bytes, label: str) -> tuple[int, dict]:
    import json

    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\n'
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + picture
    body += (
        f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="label"\r\n\r\n{label}'
        f"\r\n--{BOUNDARY}--\r\n"
    ).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST",
            "/api/feedback",
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def run_fault(weights: Path, db_url: str, tmp_path: Path) -> dict[str, int]:
    """The load, the kill, the restart and the checks; the figures."""
    port = free_port()
    log = tempfile.TemporaryFile()
    sent: dict[str, str] = {}  # key -> label
    acknowledged: dict[str, int] = {}  # key -> id
    errors: list[str] = []
    lock = threading.Lock()
    pictures = [draw_digit(c % 10) for c in range(CLIENTS)]
    server = start_server(weights, db_url, port, tmp_path / "metrics1", log)
    started = time.monotonic()

    def client(number: int) -> None:
        for i in range(MAX_REQUESTS):
            key = f"{number}-{i}-{uuid.uuid4().hex[:8]}"
            label = str((number + i) % 10)
            with lock:
                sent[key] = label
            try:
                status, body = post_correction(port, keyed_png(pictures[number], key), label)
            except (OSError, http.client.HTTPException):
                return  # the server is gone (killed mid-answer: IncompleteRead), unacknowledged
            if status == 201:
                with lock:
                    acknowledged[key] = body["id"]
            else:
                with lock:
                    errors.append(f"{status} {body}")
                return

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        first = started + FIRST_ACK_WITHIN_S  # the kill comes mid-load: after some writes ...
        while time.monotonic() < first and not acknowledged and not errors:
            time.sleep(0.01)
        deadline = time.monotonic() + KILL_AFTER_S  # ... and before all of them
        while time.monotonic() < deadline and len(acknowledged) < KILL_AFTER_ACKS:
            time.sleep(0.01)
        kill_group(server)  # SIGKILL: the supervisor and both workers, mid-load
        killed_after = time.monotonic() - started
        for thread in threads:
            thread.join(timeout=15)
        assert not any(thread.is_alive() for thread in threads)
        server = start_server(weights, db_url, port, tmp_path / "metrics2", log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            assert answer.status == 200
    finally:
        kill_group(server, signal.SIGTERM)
        log.seek(0)
        server_log = log.read().decode(errors="replace")
        log.close()
    assert not errors, errors[:5]

    out = tmp_path / "export"
    with FeedbackStore(db_url) as store:
        exported = store.export(out)
        keys = {row.id: key_of(row.upload) for row in store.iter_rows(with_upload=True)}
        labels = {row.id: row.label for row in store.iter_rows()}
    with open(out / "labels.csv", newline="") as handle:
        export_ids = {int(row["id"]) for row in csv.DictReader(handle)}
    assert exported == len(export_ids) == len(keys)
    # acknowledged ⊆ export ⊆ sent, row by row
    for key, row_id in acknowledged.items():
        assert row_id in export_ids, (key, row_id)
        assert keys[row_id] == key
    exported_keys = list(keys.values())
    assert len(set(exported_keys)) == len(exported_keys)  # nothing stored twice
    assert set(exported_keys) <= set(sent)
    assert all(labels[row_id] == sent[key] for row_id, key in keys.items())
    extra = len(export_ids) - len(acknowledged)
    assert 0 <= extra <= CLIENTS, server_log[-2000:]
    assert len(acknowledged) > 0, "nothing was acknowledged before the kill"
    assert len(sent) < CLIENTS * MAX_REQUESTS, "the kill came after the load had ended"
    figures = {
        "sent": len(sent),
        "acknowledged": len(acknowledged),
        "exported": len(export_ids),
        "extra": extra,
        "killed_after_ms": round(killed_after * 1000),
    }
    print(f"\n{db_url.split(':')[0]}: {figures}")
    return figures


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    trained = ROOT / "weights" / "mnist_cnn.npz"
    if not trained.is_file():
        pytest.skip("no shipped model to serve")
    return trained


def test_sigkill_under_load_on_sqlite(weights: Path, tmp_path: Path) -> None:
    database = tmp_path / "feedback.sqlite3"
    started = time.monotonic()
    run_fault(weights, f"sqlite:///{database}", tmp_path)
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert time.monotonic() - started < 60


def test_sigkill_under_load_on_postgresql(weights: Path, tmp_path: Path, postgres_database) -> None:
    started = time.monotonic()
    run_fault(weights, postgres_database, tmp_path)
    assert time.monotonic() - started < 60
