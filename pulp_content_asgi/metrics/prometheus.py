"""Measurements for a Prometheus scrape, summed over every worker process.

A scrape reaches one worker, but each worker counts only its own requests. Workers
therefore write their values to memory-mapped files in one directory
(``prometheus_client``'s multiprocess mode, the approach gunicorn deployments use), and
whichever worker answers the scrape adds them all up. ``pulp-content-asgi`` creates that
directory before the workers start and removes it when the server stops; under another
launcher set ``CONTENT_ASGI_PROMETHEUS_DIR`` (one directory per instance, emptied before
start), or the scrape reports only the worker that answered.

Labels carry no worker name: the sum over workers is the point, and per-PID series would
grow with every restart (OpenTelemetry keeps pulpcore's ``worker.name`` attribute).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

log = logging.getLogger(__name__)

#: The variable ``prometheus_client`` reads, at import time, to choose multiprocess mode.
ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds; request durations span cached 304s and multi-GiB downloads.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0, float("inf"))
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def prepare_directory(configured: str) -> str | None:
    """Give the workers about to start one empty shared directory (the CLI calls this).

    Returns the directory to remove at exit (a temporary one), or None for a configured
    directory, which is only emptied.
    """
    if configured:
        os.makedirs(configured, exist_ok=True)
        for name in os.listdir(configured):
            if name.endswith(".db"):
                os.unlink(os.path.join(configured, name))
        os.environ[ENV] = configured
        return None
    path = tempfile.mkdtemp(prefix="pulp-content-asgi-metrics-")
    os.environ[ENV] = path
    return path


def remove_directory(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


class PrometheusSink:
    """The instruments, named by Prometheus conventions (``_seconds``, ``_total``)."""

    def __init__(self) -> None:
        from pulp_content_asgi import conf

        configured = conf.current().prometheus_dir
        if configured and not os.environ.get(ENV):
            os.makedirs(configured, exist_ok=True)
            os.environ[ENV] = configured
        self.shared = bool(os.environ.get(ENV))
        if not self.shared:
            log.warning("Prometheus metrics cover only the worker that answers the scrape: "
                        "start with pulp-content-asgi or set CONTENT_ASGI_PROMETHEUS_DIR.")
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        own: dict[str, Any] = {"registry": None if self.shared else self.registry}
        self.duration = Histogram(
            "pulp_content_request_duration_seconds",
            "Time from request to the last body byte handed to the server.",
            ["method", "status", "route"], buckets=BUCKETS, **own)
        self.sent = Counter("pulp_content_sent_bytes", "Response body bytes sent.", **own)
        self.sizes = Counter("pulp_content_artifacts_size_bytes",
                             "Sizes of the artifacts answered (files, objects, redirects, "
                             "downloads).", ["domain"], **own)
        self.cached = Counter("pulp_content_cache_requests",
                              "Requests that looked in the response cache.", ["result"], **own)
        self.latency = Histogram("pulp_content_upstream_latency_seconds",
                                 "On-demand: time from asking a remote to its first byte.",
                                 ["outcome"], buckets=BUCKETS, **own)
        self.in_flight = Gauge("pulp_content_ondemand_downloads",
                               "On-demand downloads in flight, led by this instance.",
                               multiprocess_mode="livesum", **own)
        self.joined = Counter("pulp_content_ondemand_collapsed_requests",
                              "Requests served by a download already in flight.", **own)
        self.dropped = Counter("pulp_content_ondemand_abandoned",
                               "On-demand downloads cancelled because no client was "
                               "receiving them and too much was left to fetch.", **own)

    def request(self, method: str, status: int, route: str, seconds: float,
                sent: int) -> None:
        from pulp_content_asgi.metrics import normalized_status

        self.duration.labels(method, normalized_status(status), route).observe(seconds)
        if sent:
            self.sent.inc(sent)

    def artifact(self, size: int, domain: str) -> None:
        self.sizes.labels(domain).inc(size)

    def cache(self, hit: bool) -> None:
        self.cached.labels("hit" if hit else "miss").inc()

    def upstream(self, seconds: float, ok: bool) -> None:
        self.latency.labels("ok" if ok else "error").observe(seconds)

    def downloads(self, delta: int) -> None:
        self.in_flight.inc(delta)

    def collapsed(self) -> None:
        self.joined.inc()

    def abandoned(self) -> None:
        self.dropped.inc()

    def render(self) -> bytes:
        """The exposition text, all workers summed (reads files: call off the loop)."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        if not self.shared:
            return bytes(generate_latest(self.registry))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return bytes(generate_latest(registry))

    def close(self) -> None:
        """A stopping worker's in-flight gauge must not linger in the sum."""
        if self.shared:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
