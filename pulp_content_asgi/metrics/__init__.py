"""What the app measures, recorded once and sent to every enabled sink.

pulpcore-content emits ``content.request_duration`` and ``artifacts.size.counter`` over
OTLP when ``OTEL_ENABLED``; we emit the same instruments under the same names and
attributes (so dashboards keep working), plus bytes sent, cache hits and misses,
upstream latency and collapsed on-demand downloads. Operators without a collector turn on
``CONTENT_ASGI_PROMETHEUS_ENABLED`` and scrape one path that sums every worker process.
With both off, :func:`current` is a recorder whose methods do nothing, so the hot path
pays one attribute check.
"""

from __future__ import annotations

import functools
import logging
from typing import Protocol

log = logging.getLogger(__name__)

#: ``http.route`` values, the names of pulpcore-content's handler functions.
ROUTE_LISTING = "list_distributions"
ROUTE_CONTENT = "stream_content"
ROUTE_HEALTH = "health"
ROUTE_METRICS = "metrics"
ROUTE_LIVE = "live_route"  # a plugin's Django route (pulp_container's blobs)
ROUTE_UNKNOWN = "unknown"
#: Requests the legacy fallback forwarded to pulpcore-content (bridge/legacy.py).
ROUTE_LEGACY = "legacy"


def normalized_status(status: int) -> str:
    """``2xx``, ``4xx``…: pulpcore's ``http.status_code`` attribute (bounded cardinality)."""
    return f"{status // 100}xx" if 100 <= status < 600 else ""


class Sink(Protocol):
    """One destination for measurements (OpenTelemetry, Prometheus)."""

    def request(self, method: str, status: int, route: str, seconds: float,
                sent: int) -> None: ...
    def artifact(self, size: int, domain: str) -> None: ...
    def cache(self, hit: bool) -> None: ...
    def upstream(self, seconds: float, ok: bool) -> None: ...
    def downloads(self, delta: int) -> None: ...
    def collapsed(self) -> None: ...
    def abandoned(self) -> None: ...
    def close(self) -> None: ...


class Recorder:
    """Fans each measurement out to the enabled sinks; ``enabled`` is False with none."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self.enabled = bool(sinks)

    def request(self, method: str, status: int, route: str, seconds: float,
                sent: int) -> None:
        """A finished request: duration to the last byte and body bytes handed over."""
        for sink in self.sinks:
            sink.request(method, status, route, seconds, sent)

    def artifact(self, size: int, domain: str) -> None:
        """An artifact answered (file, proxied object, redirect or download), by size."""
        for sink in self.sinks:
            sink.artifact(size, domain)

    def cache(self, hit: bool) -> None:
        for sink in self.sinks:
            sink.cache(hit)

    def upstream(self, seconds: float, ok: bool) -> None:
        """Time from asking a remote to its first byte (or to the failure)."""
        for sink in self.sinks:
            sink.upstream(seconds, ok)

    def downloads(self, delta: int) -> None:
        """On-demand downloads this process leads, started (+1) or ended (-1)."""
        for sink in self.sinks:
            sink.downloads(delta)

    def collapsed(self) -> None:
        """A request that joined a download already in flight instead of starting one."""
        for sink in self.sinks:
            sink.collapsed()

    def abandoned(self) -> None:
        """A download cancelled because no client was receiving it and more than
        ``CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES`` were left to fetch."""
        for sink in self.sinks:
            sink.abandoned()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def build() -> Recorder:
    """The recorder the settings ask for (``OTEL_ENABLED``, ``CONTENT_ASGI_PROMETHEUS_*``)."""
    from django.conf import settings

    from pulp_content_asgi import conf

    sinks: list[Sink] = []
    if getattr(settings, "OTEL_ENABLED", False):
        from pulp_content_asgi.metrics.otel import OtelSink

        sinks.append(OtelSink())
    if conf.current().prometheus_enabled:
        from pulp_content_asgi.metrics.prometheus import PrometheusSink

        sinks.append(PrometheusSink())
    return Recorder(sinks)


@functools.lru_cache(maxsize=1)
def current() -> Recorder:
    """This process's recorder, built on first use."""
    return build()
