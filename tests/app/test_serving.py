"""Serving like a model server, through Flask's test client: liveness and readiness, Prometheus
metrics, the model's identity in every answer, batches read with one forward pass, load
shedding of heavy requests, request ids and the security headers.

Real server processes (gunicorn's workers, SIGTERM, slow clients) are in test_server_process.py.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from app_helpers import (
    assert_error,
    draw_digit,
    metric_value,
    png_bytes,
    post_file,
    scrape,
)
from PIL import Image

import app as app_module

# --------------------------------------------------------------------- liveness and readiness


def test_readyz_is_503_before_the_warm_up_and_200_after(weights_path: Path) -> None:
    app = app_module.create_app(weights_path, warm_up=False)
    client = app.test_client()
    assert client.get("/livez").status_code == 200
    response = client.get("/readyz")
    message = assert_error(response, 503)
    assert "warming up" in message
    assert response.headers["Retry-After"] == "1"
    assert client.get("/api/health").get_json()["ready"] is False

    assert metric_value(scrape(client), "npcnn_workers_ready") == 0
    app.extensions["npcnn.server"].warm_up()
    assert metric_value(scrape(client), "npcnn_workers_ready") == 1
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"
    assert response.get_json()["model"] == app.extensions["npcnn"].identity
    assert client.get("/api/health").get_json()["ready"] is True


def test_readyz_is_503_while_shutting_down_and_livez_still_200(weights_path: Path) -> None:
    app = app_module.create_app(weights_path)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    app.extensions["npcnn.server"].begin_drain()
    assert "shutting down" in assert_error(client.get("/readyz"), 503)
    assert metric_value(scrape(client), "npcnn_workers_ready") == 0
    assert client.get("/livez").status_code == 200
    assert post_file(client, "/api/predict", png_bytes(draw_digit(1))).status_code == 200


def test_background_warm_up_becomes_ready(weights_path: Path) -> None:
    app = app_module.create_app(weights_path, warm_up="background")
    client = app.test_client()
    assert client.get("/livez").status_code == 200
    for thread in threading.enumerate():
        if thread.name == "npcnn-warm-up":
            thread.join(timeout=60)
    assert client.get("/readyz").status_code == 200


def test_a_failed_warm_up_is_never_ready(weights_path: Path, monkeypatch) -> None:
    from npcnn.digits.recogniser import Recogniser

    def broken(self) -> None:
        raise RuntimeError("simulated: the model gives NaN")

    monkeypatch.setattr(Recogniser, "warm_up", broken)
    with pytest.raises(RuntimeError):
        app_module.create_app(weights_path)
    app = app_module.create_app(weights_path, warm_up=False)
    with pytest.raises(RuntimeError):
        app.extensions["npcnn.server"].warm_up()
    message = assert_error(app.test_client().get("/readyz"), 503)
    assert "warm-up failed" in message and "NaN" in message
    assert app.test_client().get("/livez").status_code == 200


# --------------------------------------------------------------------- model identity


def test_the_model_version_is_the_sha256_of_the_weights_file(client, weights_path: Path) -> None:
    version = hashlib.sha256(weights_path.read_bytes()).hexdigest()[:12]
    model = client.get("/api/health").get_json()["model"]
    assert model["version"] == version
    assert re.fullmatch(r"[0-9a-f]{12}", model["version"])
    assert model["weights_file"] == weights_path.name
    assert isinstance(model["name"], str) and model["name"]


def test_every_prediction_answer_names_the_model(client) -> None:
    identity = client.get("/api/health").get_json()["model"]
    expected = {"name": identity["name"], "version": identity["version"]}
    data = png_bytes(draw_digit(4))
    for url in ("/api/predict", "/api/predict_number", "/api/explain"):
        body = post_file(client, url, data).get_json()
        assert body["model"] == expected, url
    batch = post_batch(client, [data, data]).get_json()
    assert batch["model"] == expected
    assert all(result["model"] == expected for result in batch["results"])


def test_a_model_without_a_file_gets_a_version_from_its_parameters(model) -> None:
    first = app_module.create_app(model=model).extensions["npcnn"].version
    again = app_module.create_app(model=model).extensions["npcnn"].version
    assert re.fullmatch(r"[0-9a-f]{12}", first) and first == again


# --------------------------------------------------------------------- batches


def post_batch(client, pictures: list[bytes], field: str = "images"):
    files = [(io.BytesIO(data), f"picture{i}.png") for i, data in enumerate(pictures)]
    return client.post(
        "/api/predict_batch", data={field: files}, content_type="multipart/form-data"
    )


def test_batch_answers_in_order_with_one_forward_pass(client, flask_app, monkeypatch) -> None:
    pictures = [png_bytes(draw_digit(d)) for d in (3, 1, 4, 1, 5, 9, 2, 6)]
    singles = [post_file(client, "/api/predict", p).get_json() for p in pictures]
    model = flask_app.extensions["npcnn"].model
    calls: list[tuple[int, ...]] = []
    predict = model.predict

    def counted(x, *args, **kwargs):
        calls.append(x.shape)
        return predict(x, *args, **kwargs)

    monkeypatch.setattr(model, "predict", counted)
    response = post_batch(client, pictures)
    assert response.status_code == 200, response.get_json()
    assert calls == [(8, 1, 28, 28)]  # ONE forward pass for the whole batch
    body = response.get_json()
    assert body["count"] == 8 and body["errors"] == 0
    for single, result in zip(singles, body["results"], strict=True):
        assert result["digit"] == single["digit"]
        np.testing.assert_allclose(result["probabilities"], single["probabilities"], atol=1e-5)
        assert result["preview"] == single["preview"]


def test_a_bad_item_gets_its_own_error_and_the_others_are_read(client, monkeypatch, flask_app):
    good = png_bytes(draw_digit(7))
    blank = png_bytes(Image.new("L", (100, 100), 255))
    model = flask_app.extensions["npcnn"].model
    calls = []
    predict = model.predict
    monkeypatch.setattr(model, "predict", lambda x, *a, **k: calls.append(x.shape) or predict(x))
    body = post_batch(client, [good, b"not an image", blank, b"", good]).get_json()
    statuses = [result.get("status", 200) for result in body["results"]]
    assert statuses == [200, 400, 422, 400, 200]
    assert body["errors"] == 3
    assert "nothing to recognise" in body["results"][2]["error"]
    assert body["results"][0]["digit"] == body["results"][4]["digit"]
    assert calls == [(2, 1, 28, 28)]


def test_batch_as_json_with_per_item_errors(client) -> None:
    import base64

    data = "data:image/png;base64," + base64.b64encode(png_bytes(draw_digit(2))).decode()
    response = client.post("/api/predict_batch", json={"images": [data, "!!!", 12, data]})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r.get("status", 200) for r in results] == [200, 400, 400, 200]
    assert "base64" in results[1]["error"] and "string" in results[2]["error"]


def test_a_batch_where_nothing_is_readable_still_answers_each_item(client) -> None:
    body = post_batch(client, [b"x", b"y"]).get_json()
    assert [r["status"] for r in body["results"]] == [400, 400]


def test_batch_limits_and_bad_requests(client) -> None:
    one = png_bytes(draw_digit(1, size=40))
    message = assert_error(post_batch(client, [one] * (app_module.MAX_BATCH + 1)), 413)
    assert str(app_module.MAX_BATCH) in message
    assert post_batch(client, [one] * app_module.MAX_BATCH).status_code == 200
    assert_error(client.post("/api/predict_batch", json={"images": ["A"] * 65}), 413)
    assert "images" in assert_error(post_batch(client, [one], field="image"), 400)
    for bad in ({"images": []}, {"images": "abc"}, {"image": "abc"}, [1, 2]):
        assert_error(client.post("/api/predict_batch", json=bad), 400)
    assert_error(client.post("/api/predict_batch", data=one, content_type="image/png"), 415)
    assert_error(client.get("/api/predict_batch"), 405)


# --------------------------------------------------------------------- metrics


def test_metrics_count_a_scripted_burst_exactly(weights_path: Path) -> None:
    app = app_module.create_app(weights_path)
    client = app.test_client()
    good, bad = png_bytes(draw_digit(3)), b"garbage"
    before = scrape(client)
    for i in range(12):
        post_file(client, "/api/predict", good if i % 3 else bad)  # 8 good, 4 bad
    for _ in range(3):
        post_file(client, "/api/explain", good)
    post_batch(client, [good, good, bad])
    client.get("/api/nope")
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    requests = "npcnn_http_requests_total"
    assert delta(requests, endpoint="/api/predict", method="POST", status="200") == 8
    assert delta(requests, endpoint="/api/predict", method="POST", status="400") == 4
    assert delta(requests, endpoint="/api/explain", method="POST", status="200") == 3
    assert delta(requests, endpoint="/api/predict_batch", method="POST", status="200") == 1
    assert delta(requests, endpoint="unmatched", method="GET", status="404") == 1
    latency = "npcnn_http_request_duration_seconds_count"
    assert delta(latency, endpoint="/api/predict") == 12
    # preprocessing: 8 + 3 + 2 pictures that could be read; the model: 8 + 3 + 1 (the batch)
    assert delta("npcnn_stage_duration_seconds_count", stage="preprocess") == 13
    assert delta("npcnn_stage_duration_seconds_count", stage="model") == 12
    assert delta("npcnn_batch_images_count") == 1 and delta("npcnn_batch_images_sum") == 3
    assert metric_value(after, "npcnn_http_requests_in_flight") == 1  # the scrape itself
    identity = app.extensions["npcnn"].identity
    assert metric_value(after, "npcnn_model_info", **identity) == 1


def test_metrics_are_prometheus_text(client) -> None:
    # one reading first, so that the latency histograms have samples however the tests are split
    assert post_file(client, "/api/predict", png_bytes(draw_digit(1))).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    for name in (
        "npcnn_http_requests_total",
        "npcnn_http_request_duration_seconds_bucket",
        "npcnn_stage_duration_seconds",
        "npcnn_http_requests_in_flight",
        "npcnn_model_info",
    ):
        assert name in text, name
    assert "_created" not in text


# --------------------------------------------------------------------- load shedding


def test_heavy_requests_past_the_limit_get_503_with_retry_after(weights_path, monkeypatch):
    app = app_module.create_app(weights_path, heavy_limit=1)
    recogniser = app.extensions["npcnn"]
    entered, release = threading.Event(), threading.Event()
    explain_digit = recogniser.explain_digit

    def slow_explain(data: bytes):
        entered.set()
        release.wait(timeout=30)
        return explain_digit(data)

    monkeypatch.setattr(recogniser, "explain_digit", slow_explain)
    data = png_bytes(draw_digit(6))
    first: list = []
    holder = threading.Thread(
        target=lambda: first.append(post_file(app.test_client(), "/api/explain", data))
    )
    holder.start()
    try:
        assert entered.wait(timeout=30)
        client = app.test_client()
        for url, send in (
            ("/api/explain", lambda: post_file(client, "/api/explain", data)),
            ("/api/predict_batch", lambda: post_batch(client, [data])),
        ):
            response = send()
            assert "busy" in assert_error(response, 503), url
            assert response.headers["Retry-After"] == "1"
        # light requests and the probes are not held up by the heavy ones
        assert post_file(client, "/api/predict", data).status_code == 200
        assert client.get("/readyz").status_code == 200
    finally:
        release.set()
        holder.join(timeout=30)
    assert first[0].status_code == 200
    assert post_file(app.test_client(), "/api/explain", data).status_code == 200
    shed = scrape(app.test_client())
    assert metric_value(shed, "npcnn_shed_requests_total", endpoint="/api/explain") == 1
    assert metric_value(shed, "npcnn_shed_requests_total", endpoint="/api/predict_batch") == 1


def test_a_burst_of_heavy_requests_gets_some_503_and_no_500(weights_path, monkeypatch) -> None:
    app = app_module.create_app(weights_path, heavy_limit=2)
    recogniser = app.extensions["npcnn"]
    explain_digit = recogniser.explain_digit
    start = threading.Barrier(12)

    def slowed(data: bytes):  # long enough that the burst overlaps on any machine
        threading.Event().wait(0.2)
        return explain_digit(data)

    monkeypatch.setattr(recogniser, "explain_digit", slowed)
    data = png_bytes(draw_digit(8))
    responses: list = []

    def one() -> None:
        client = app.test_client()
        start.wait(timeout=30)
        responses.append(post_file(client, "/api/explain", data))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(r.status_code for r in responses)
    assert len(statuses) == 12 and set(statuses) <= {200, 503}, statuses
    assert 1 <= statuses.count(200) <= 12 - 1 and statuses.count(503) >= 1, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "1" and response.get_json()["error"]


# --------------------------------------------------------------------- request ids and headers


def test_request_ids_are_echoed_when_sane_and_generated_otherwise(client) -> None:
    sane = "req-2026.11_28:abc/def"
    assert client.get("/livez", headers={"X-Request-ID": sane}).headers["X-Request-ID"] == sane
    for insane in ("", "a b", "x" * 200, "<script>", "id\twith\ttabs", "ünïcode"):
        got = client.get("/livez", headers={"X-Request-ID": insane}).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", got), insane
    first = client.get("/livez").headers["X-Request-ID"]
    assert first != client.get("/livez").headers["X-Request-ID"]
    response = post_file(client, "/api/predict", b"garbage", filename="x.png")
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_log_lines_carry_the_request_id(client) -> None:
    import logging

    stream = io.StringIO()
    handler = app_module.log_handler(stream)
    logger = logging.getLogger("npcnn")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        client.post("/api/predict", data=b"junk", headers={"X-Request-ID": "trace-42"})
        logging.getLogger("npcnn.app").info("outside any request")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    lines = stream.getvalue().splitlines()
    assert any("trace-42" in line and "POST /api/predict 415" in line for line in lines), lines
    assert any(" - npcnn.app: outside any request" in line for line in lines), lines


@pytest.mark.parametrize("path", ["/", "/api/health", "/api/nope", "/static/app.js", "/metrics"])
def test_security_headers_on_every_answer(client, path: str) -> None:
    response = client.get(path)
    policy = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Request-ID"]


def test_the_page_has_no_inline_script_or_style(client) -> None:
    html = client.get("/").get_data(as_text=True)
    for script in re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S | re.I):
        assert script.strip() == "", "inline script"
    assert re.findall(r"<script\b[^>]*>", html, flags=re.I) == [
        s for s in re.findall(r"<script\b[^>]*>", html, flags=re.I) if "src=" in s
    ]
    assert "<style" not in html.lower()
    assert not re.search(r"\sstyle\s*=", html, flags=re.I)
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I)  # onclick= and the like
    assert "javascript:" not in html.lower()
