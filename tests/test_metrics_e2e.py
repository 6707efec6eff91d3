"""Metrics: the Prometheus scrape summed over workers, and OTLP export to a real receiver."""

from __future__ import annotations

import asyncio
import collections
import gzip
import os
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pulp_content_asgi.devtools import data
from tests.conftest import content_app, stop_server
from tests.test_ondemand_e2e import on_demand, url
from tests.upstream import Behaviour

METRICS = "/pulp/content-asgi/metrics/"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by name and labels."""
    found: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def scrape(server) -> dict:
    response = httpx.get(server.url(METRICS))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


def published(unique: str, files: dict[str, bytes]) -> str:
    repo = data.repository(f"metrics-{unique}", files)
    data.distribute(f"metrics-{unique}", publication=data.publish(repo.latest_version()))
    return f"/pulp/content/metrics-{unique}/"


def test_metrics_endpoint_is_off_by_default(server):
    assert httpx.get(server.url(METRICS)).status_code == 404


def _per_worker_counts(directory: str) -> dict[str, float]:
    """Request counts recorded by each worker process, read from its own files."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    counts = {}
    pids = {name.rsplit("_", 1)[1][:-3] for name in os.listdir(directory)
            if name.startswith("histogram_")}
    for pid in pids:
        alone = tempfile.mkdtemp()
        try:
            for name in os.listdir(directory):
                if name.endswith(f"_{pid}.db"):
                    shutil.copy(os.path.join(directory, name), alone)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=alone)
            found = samples(generate_latest(registry).decode())
            counts[pid] = value(found, "pulp_content_request_duration_seconds_count",
                                method="GET", status="2xx", route="stream_content")
        finally:
            shutil.rmtree(alone)
    return counts


def test_prometheus_scrape_sums_every_worker(unique, tmp_path):
    body = os.urandom(10_000)
    base = published(unique, {"f.bin": body})
    shared = tmp_path / "prometheus"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"stale")  # a previous run's: must be removed
    running = content_app(env={"PULP_CONTENT_ASGI_PROMETHEUS_ENABLED": "true",
                               "PULP_CONTENT_ASGI_PROMETHEUS_DIR": str(shared),
                               "PULP_CACHE_ENABLED": "true"}, workers=2)
    try:
        async def many() -> list[httpx.Response]:
            # A connection per request, so both workers get some of them.
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits) as client:
                return await asyncio.gather(
                    *(client.get(running.url(base + "f.bin")) for _ in range(60)))

        responses = asyncio.run(many())
        assert all(r.status_code == 200 and r.content == body for r in responses)
        heads = [httpx.head(running.url(base + "f.bin")) for _ in range(3)]
        assert all(r.status_code == 200 for r in heads)
        missing = [httpx.get(running.url(base + f"nope-{i}")) for i in range(4)]
        assert all(r.status_code == 404 for r in missing)
        sent = sum(len(r.content) for r in responses + missing)

        first = scrape(running)
        name = "pulp_content_request_duration_seconds_count"
        assert value(first, name, method="GET", status="2xx", route="stream_content") == 60
        assert value(first, name, method="HEAD", status="2xx", route="stream_content") == 3
        assert value(first, name, method="GET", status="4xx", route="stream_content") == 4
        assert value(first, "pulp_content_sent_bytes_total") == sent
        assert value(first, "pulp_content_artifacts_size_bytes_total",
                     domain="default") == 63 * len(body)
        hits = value(first, "pulp_content_cache_requests_total", result="hit")
        misses = value(first, "pulp_content_cache_requests_total", result="miss")
        assert hits + misses == 67 and misses >= 2 and hits >= 1  # 404s are cached too
        assert not (shared / "counter_1.db").exists()

        per_worker = _per_worker_counts(str(shared))
        assert sum(per_worker.values()) == 60
        assert len([c for c in per_worker.values() if c > 0]) == 2, per_worker

        # Whichever worker answers, the content numbers are the same; scrapes count too.
        for _ in range(4):
            again = scrape(running)
            assert value(again, name, method="GET", status="2xx",
                         route="stream_content") == 60
        assert value(again, name, method="GET", status="2xx", route="metrics") >= 4
    finally:
        stop_server(running)


def test_prometheus_on_demand_latency_and_collapsed_downloads(upstream):
    running = content_app(env={"PULP_CONTENT_ASGI_PROMETHEUS_ENABLED": "true"})
    try:
        blob = os.urandom(2 * 1024 * 1024)
        distribution, prefix, _ = on_demand(upstream, {"slow.bin": blob, "gone.bin": b"x"})
        upstream.behaviour[prefix + "slow.bin"] = Behaviour(delay=0.5, chunk_delay=0.01)
        upstream.behaviour[prefix + "gone.bin"] = Behaviour(status=404)
        target = url(running, distribution, "slow.bin")

        async def together() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(client.get(target) for _ in range(5)))

        assert all(r.content == blob for r in asyncio.run(together()))
        assert upstream.hits[prefix + "slow.bin"] == 1
        assert httpx.get(url(running, distribution, "gone.bin")).status_code == 404

        found = scrape(running)
        assert value(found, "pulp_content_ondemand_collapsed_requests_total") == 4
        assert value(found, "pulp_content_upstream_latency_seconds_count", outcome="ok") == 1
        assert value(found, "pulp_content_upstream_latency_seconds_sum", outcome="ok") >= 0.5
        assert value(found, "pulp_content_upstream_latency_seconds_count",
                     outcome="error") == 1
        assert value(found, "pulp_content_ondemand_downloads") == 0  # all finished
        assert value(found, "pulp_content_artifacts_size_bytes_total",
                     domain="default") == 5 * len(blob)
    finally:
        stop_server(running)


class _Collector(BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP receiver: decodes each export and keeps its data points."""

    points: collections.defaultdict[str, list] = collections.defaultdict(list)
    lock = threading.Lock()

    def do_POST(self) -> None:  # http.server dispatches by this name
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        export = ExportMetricsServiceRequest.FromString(raw)
        with self.lock:
            for resource in export.resource_metrics:
                service = {a.key: a.value.string_value for a in resource.resource.attributes}
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        kind = metric.WhichOneof("data")
                        for point in getattr(metric, kind).data_points:
                            attributes = {a.key: a.value.string_value for a in point.attributes}
                            attributes["service.name"] = service.get("service.name", "")
                            self.points[metric.name].append((attributes, point))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector():
    _Collector.points.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Collector.points
    httpd.shutdown()


def _latest(points: dict, name: str, predicate) -> list:
    """The last exported point of each attribute set (cumulative temporality)."""
    latest = {}
    for attributes, point in list(points[name]):
        if predicate(attributes):
            latest[tuple(sorted(attributes.items()))] = point
    return list(latest.values())


def test_otlp_export_matches_pulpcore_instruments(unique, collector):
    endpoint, points = collector
    body = os.urandom(5000)
    base = published(unique, {"o.txt": body})
    running = content_app(env={"PULP_OTEL_ENABLED": "true",
                               "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                               "OTEL_METRIC_EXPORT_INTERVAL": "300"})
    try:
        for _ in range(7):
            assert httpx.get(running.url(base + "o.txt")).content == body
        assert httpx.get(running.url(base + "missing")).status_code == 404
        assert httpx.get(running.url("/pulp/content/")).status_code == 200

        def exported() -> bool:
            content = _latest(points, "content.request_duration",
                              lambda a: a["http.route"] == "stream_content"
                              and a["http.status_code"] == "2xx")
            return bool(content) and content[0].count == 7
        deadline = time.monotonic() + 20
        while not exported() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert exported(), dict(points)

        durations = _latest(points, "content.request_duration", lambda a: True)
        attributes = {tuple(sorted(a.items())) for a, _ in points["content.request_duration"]}
        kinds = {(dict(a)["http.method"], dict(a)["http.status_code"], dict(a)["http.route"])
                 for a in attributes}
        assert {("GET", "2xx", "stream_content"), ("GET", "4xx", "stream_content"),
                ("GET", "2xx", "list_distributions")} <= kinds
        assert all(dict(a)["worker.name"].count("@") == 1 for a in attributes)
        assert all(dict(a)["service.name"] == "pulp-content" for a in attributes)
        assert all(p.sum > 0 for p in durations)

        sizes = _latest(points, "artifacts.size.counter", lambda a: True)
        assert sum(p.as_int for p in sizes) == 7 * len(body)
        assert {a["domain_name"] for a, _ in points["artifacts.size.counter"]} == {"default"}
        sent = _latest(points, "content.bytes_sent", lambda a: True)
        assert sum(p.as_int for p in sent) >= 7 * len(body)
    finally:
        stop_server(running)
