"""Metrics: the Prometheus scrape summed over workers, and OTLP export to a real receiver."""

from __future__ import annotations

import collections
import gzip
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pulp_content_asgi.devtools import data
from tests.helpers import (
    DEADLINE,
    METRICS,
    content_app,
    metered_env,
    on_demand,
    per_worker,
    scrape,
    stop_server,
    url,
    value,
    wait_for,
)
from tests.upstream import Behaviour

DURATION = "pulp_content_request_duration_seconds_count"


def published(unique: str, files: dict[str, bytes]) -> str:
    repo = data.repository(f"metrics-{unique}", files)
    data.distribute(f"metrics-{unique}", publication=data.publish(repo.latest_version()))
    return f"/pulp/content/metrics-{unique}/"


def test_metrics_endpoint_is_off_by_default(server):
    response = httpx.get(server.url(METRICS))
    assert response.status_code == 404


def test_prometheus_scrape_sums_every_worker(unique, tmp_path):
    body = os.urandom(10_000)
    base = published(unique, {"f.bin": body})
    shared = tmp_path / "prometheus"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"stale")  # a previous run's: must be removed
    running = content_app(env=metered_env(str(shared), PULP_CACHE_ENABLED="true"),
                          workers=2)

    def served_by() -> dict[str, float]:
        """Successful GETs of content counted by each worker, from its own files."""
        return {pid: value(found, DURATION, method="GET", status="2xx",
                           route="stream_content")
                for pid, found in per_worker(str(shared)).items()}

    try:
        # A connection per request, until the kernel has given some to each worker.
        responses = []
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(limits=limits) as client:
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline and (
                    len(responses) < 60 or len([c for c in served_by().values() if c]) < 2):
                responses.append(client.get(running.url(base + "f.bin")))
        assert [(r.status_code, r.content) for r in responses] == [(200, body)] * len(
            responses)
        per_pid = served_by()
        assert len([c for c in per_pid.values() if c > 0]) == 2, per_pid
        assert sum(per_pid.values()) == len(responses)
        gets = len(responses)
        heads = [httpx.head(running.url(base + "f.bin")) for _ in range(3)]
        assert [r.status_code for r in heads] == [200] * 3
        missing = [httpx.get(running.url(base + f"nope-{i}")) for i in range(4)]
        assert [r.status_code for r in missing] == [404] * 4
        sent = sum(len(r.content) for r in responses + missing)

        first = scrape(running)
        assert value(first, DURATION, method="GET", status="2xx",
                     route="stream_content") == gets
        assert value(first, DURATION, method="HEAD", status="2xx", route="stream_content") == 3
        assert value(first, DURATION, method="GET", status="4xx", route="stream_content") == 4
        assert value(first, "pulp_content_sent_bytes_total") == sent
        assert value(first, "pulp_content_artifacts_size_bytes_total",
                     domain="default") == (gets + 3) * len(body)
        hits = value(first, "pulp_content_cache_requests_total", result="hit")
        misses = value(first, "pulp_content_cache_requests_total", result="miss")
        # Each worker misses f.bin at most once; 404s are cached too.
        assert hits + misses == gets + 3 + 4 and misses >= 2 and hits >= 1
        assert not (shared / "counter_1.db").exists()

        # Whichever worker answers, the content numbers are the same; scrapes count too.
        for _ in range(4):
            again = scrape(running)
            assert value(again, DURATION, method="GET", status="2xx",
                         route="stream_content") == gets
        assert value(again, DURATION, method="GET", status="2xx", route="metrics") >= 4
    finally:
        stop_server(running)


def test_prometheus_on_demand_latency_and_collapsed_downloads(upstream, tmp_path):
    running = content_app(env=metered_env(str(tmp_path)))
    try:
        blob = os.urandom(2 * 1024 * 1024)
        distribution, prefix, _ = on_demand(upstream, {"slow.bin": blob, "gone.bin": b"x"})
        gate = threading.Event()
        upstream.behaviour[prefix + "slow.bin"] = Behaviour(gate=gate)
        upstream.behaviour[prefix + "gone.bin"] = Behaviour(status=404)
        target = url(running, distribution, "slow.bin")

        with ThreadPoolExecutor(5) as pool:
            pending = [pool.submit(httpx.get, target, timeout=120) for _ in range(5)]
            # The download is held upstream until all five requests are on it.
            joined = wait_for(lambda: value(
                scrape(running), "pulp_content_ondemand_collapsed_requests_total") == 4)
            gate.set()
            responses = [p.result(timeout=120) for p in pending]
        assert joined
        assert [(r.status_code, r.content) for r in responses] == [(200, blob)] * 5
        assert upstream.hits[prefix + "slow.bin"] == 1
        assert httpx.get(url(running, distribution, "gone.bin")).status_code == 404

        found = scrape(running)
        assert value(found, "pulp_content_ondemand_collapsed_requests_total") == 4
        assert value(found, "pulp_content_upstream_latency_seconds_count", outcome="ok") == 1
        assert value(found, "pulp_content_upstream_latency_seconds_sum", outcome="ok") > 0
        assert value(found, "pulp_content_upstream_latency_seconds_count",
                     outcome="error") == 1
        assert wait_for(lambda: value(scrape(running), "pulp_content_ondemand_downloads")
                        == 0)  # all finished
        assert value(found, "pulp_content_artifacts_size_bytes_total",
                     domain="default") == 5 * len(blob)
    finally:
        gate.set()
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
            response = httpx.get(running.url(base + "o.txt"))
            assert (response.status_code, response.content) == (200, body)
        assert httpx.get(running.url(base + "missing")).status_code == 404
        assert httpx.get(running.url("/pulp/content/")).status_code == 200

        def exported() -> bool:
            """The last export has every request made above (cumulative counts)."""
            def count(status: str, route: str) -> int:
                # GETs only: the readiness probe that started the server was a HEAD.
                return sum(p.count for p in _latest(
                    points, "content.request_duration",
                    lambda a: (a["http.method"], a["http.route"], a["http.status_code"])
                    == ("GET", route, status)))
            sizes = _latest(points, "artifacts.size.counter", lambda a: True)
            return (count("2xx", "stream_content"), count("4xx", "stream_content"),
                    count("2xx", "list_distributions"),
                    sum(p.as_int for p in sizes)) == (7, 1, 1, 7 * len(body))

        assert wait_for(exported), dict(points)

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
