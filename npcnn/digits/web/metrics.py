"""The server's Prometheus metrics: requests by endpoint and status, latencies, reading stages,
requests in flight, shed requests, batch sizes, ready workers and the model being served."""

from __future__ import annotations

import os

from flask import request


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
