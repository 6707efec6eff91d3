"""Measurements as OpenTelemetry instruments, exported over OTLP like pulpcore's.

The meter comes from pulpcore's ``init_otel_meter("pulp-content")``, so the exporter,
its endpoint and interval are configured exactly as for pulpcore-content (the standard
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_METRIC_EXPORT_INTERVAL`` variables).
"""

from __future__ import annotations

from typing import Any


class OtelSink:
    """pulpcore-content's two instruments, same names and attributes, plus ours."""

    def __init__(self) -> None:
        from pulpcore.app.util import get_worker_name
        from pulpcore.metrics import init_otel_meter

        meter = init_otel_meter("pulp-content")
        self.worker = get_worker_name()
        self.duration = meter.create_histogram(
            "content.request_duration", unit="ms",
            description="Tracks the duration of HTTP requests")
        self.sizes = meter.create_counter(
            "artifacts.size.counter", unit="Bytes",
            description="Counts the size of served artifacts")
        self.sent = meter.create_counter(
            "content.bytes_sent", unit="By",
            description="Response body bytes handed to the server")
        self.cached = meter.create_counter(
            "content.cache.requests", unit="{request}",
            description="Requests that looked in the response cache, by result (hit, miss)")
        self.latency = meter.create_histogram(
            "content.upstream.latency", unit="ms",
            description="On-demand: time from asking a remote to its first byte")
        self.in_flight = meter.create_up_down_counter(
            "content.ondemand.downloads", unit="{download}",
            description="On-demand downloads in flight that this worker leads")
        self.joined = meter.create_counter(
            "content.ondemand.collapsed", unit="{request}",
            description="Requests served by a download already in flight")
        self.dropped = meter.create_counter(
            "content.ondemand.abandoned", unit="{download}",
            description="On-demand downloads cancelled because no client was receiving "
                        "them and too much was left to fetch")

    def request(self, method: str, status: int, route: str, seconds: float,
                sent: int) -> None:
        from pulp_content_asgi.metrics import normalized_status

        attributes: dict[str, Any] = {
            "http.method": method, "http.status_code": normalized_status(status),
            "http.route": route, "worker.name": self.worker}
        self.duration.record(seconds * 1000, attributes=attributes)
        if sent:
            self.sent.add(sent, attributes={"worker.name": self.worker})

    def artifact(self, size: int, domain: str) -> None:
        self.sizes.add(size, {"domain_name": domain, "worker_process": self.worker})

    def cache(self, hit: bool) -> None:
        self.cached.add(1, {"result": "hit" if hit else "miss", "worker.name": self.worker})

    def upstream(self, seconds: float, ok: bool) -> None:
        self.latency.record(seconds * 1000, {"outcome": "ok" if ok else "error",
                                             "worker.name": self.worker})

    def downloads(self, delta: int) -> None:
        self.in_flight.add(delta, {"worker.name": self.worker})

    def collapsed(self) -> None:
        self.joined.add(1, {"worker.name": self.worker})

    def abandoned(self) -> None:
        self.dropped.add(1, {"worker.name": self.worker})

    def close(self) -> None:
        """Nothing to do: the SDK's provider exports what is left when the process exits."""
