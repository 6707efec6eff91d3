"""The bench's own helpers that need no server: the port range every server is started in,
the command line's run kinds, and which method an S3 presigned URL is signed for (what the
object-storage check relies on: moto does not check it)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from bench import objects, plan, servers

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("spec", ["25500", "25599-25500", "a-b", "80-90", "25500-70000", ""])
def test_a_port_range_must_be_low_high_above_1023(spec: str) -> None:
    with pytest.raises(ValueError, match="ports"):
        servers.parse_ports(spec)


def test_ports_are_taken_from_the_range_and_a_held_one_is_skipped() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        ports = servers.Ports()
        ports.configure(servers.parse_ports(f"{port}-{port}"))
        with pytest.raises(RuntimeError, match=f"no free port in {port}-{port}"):
            ports.take()
    assert ports.take() == port


def test_full_and_quick_runs_keep_their_fixed_points() -> None:
    for argv in (["--seconds", "2"], ["--quick", "--scenarios", "objects"],
                 ["--repeats", "1"]):
        with pytest.raises(SystemExit):
            plan.arguments(argv)
    full = plan.make_plan(plan.arguments([]))
    assert (full.concurrency, full.worker_counts, full.repeats) == ((16, 64, 256), (1, 2), 3)
    assert full.scenarios == frozenset(plan.SCENARIOS) and not full.smoke


def test_a_smoke_run_is_short_and_says_what_it_measures() -> None:
    smoke = plan.make_plan(plan.arguments(["--smoke", "--seconds", "2", "--scenarios",
                                           "objects,published", "--concurrency", "16,64"]))
    assert (smoke.repeats, smoke.seconds, smoke.duration(256), smoke.warmup()) == (1, 2, 2, 2)
    assert smoke.meta()["scenarios"] == ["published", "objects"]
    assert smoke.meta()["smoke"] and smoke.concurrency == (16, 64)
    with pytest.raises(SystemExit):
        plan.arguments(["--smoke", "--scenarios", "objects,nope"])


def _presigned(method: str, endpoint: str = "http://127.0.0.1:9", key: str = "a/k") -> str:
    import boto3
    from botocore.config import Config

    # SigV4, as the benchmark's domain asks (boto3 presigns SigV2 by default).
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench-secret",
                          config=Config(signature_version="s3v4"))
    operation = {"GET": "get_object", "HEAD": "head_object"}[method]
    return str(client.generate_presigned_url(operation, Params={"Bucket": "b", "Key": key},
                                             HttpMethod=method))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_signed_method_is_recovered_from_a_presigned_url(method: str) -> None:
    assert objects.signed_for(_presigned(method), "bench", "bench-secret") == method


def test_a_url_not_validly_signed_has_no_method() -> None:
    url = _presigned("GET")
    assert objects.signed_for(url, "bench", "other-secret") is None
    assert objects.signed_for(url.replace("/b/a/k", "/b/a/other"), "bench",
                              "bench-secret") is None
    assert objects.signed_for("http://127.0.0.1:9/b/a/k", "bench", "bench-secret") is None
    v2 = "http://127.0.0.1:9/b/a/k?AWSAccessKeyId=bench&Signature=x&Expires=1796022137"
    assert objects.signed_for(v2, "bench", "bench-secret") is None  # SigV2: not S3's v4


# --- the object-storage check against a stand-in app and store ------------------------

BODY = bytes(range(256)) * 16


class _Stand:
    """What the stand-in answers: the app's status, which method its redirect is signed
    for, which key it points at, and the bytes the store holds."""

    status = 302
    sign_head_as = "HEAD"
    key = "artifact/ab/cd"
    stored = BODY


@pytest.fixture
def stand_in() -> Iterator[tuple[str, type[_Stand]]]:
    """A loopback HTTP server in a thread: ``/pulp/content/…`` is the app (302 to a
    presigned URL on this same server), ``/bucket/…`` the store."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Stand(_Stand):
        pass

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.startswith("/pulp/content/"):
                signed = Stand.sign_head_as if self.command == "HEAD" else "GET"
                self.send_response(Stand.status)
                self.send_header("Location", _presigned(signed, base, Stand.key))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(Stand.stored)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(Stand.stored)

        do_GET = do_HEAD = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Stand
    finally:
        server.shutdown()
        server.server_close()


def _check(base: str) -> dict[str, Any]:
    return objects.check(base, "/pulp/content/", ["d/f.bin"], {"d/f.bin": BODY},
                         {"d/f.bin": f"{base}/b/artifact/ab/cd"},
                         {"access_key": "bench", "secret_key": "bench-secret"})


def test_the_check_passes_redirects_signed_for_each_method(stand_in: Any) -> None:
    base, _ = stand_in
    found = _check(base)
    assert found["ok"] and found["problems"] == []
    assert [(r["method"], r["status"], r["signed_for"], r["followed_status"])
            for r in found["requests"]] == [("GET", 302, "GET", 200), ("HEAD", 302, "HEAD", 200)]


@pytest.mark.parametrize(("wrong", "problem"), [
    ({"sign_head_as": "GET"}, "HEAD /pulp/content/d/f.bin: Location signed for GET, "
                              "expected HEAD"),
    ({"key": "artifact/ab/other"}, "is not the object"),
    ({"stored": BODY[:-1] + b"x"}, "GET /pulp/content/d/f.bin: following Location gave "
                                   "4096 bytes that are not the file's 4096"),
    ({"stored": BODY[:100]}, "HEAD /pulp/content/d/f.bin: the object's Content-Length is "
                             "100, expected 4096"),
    ({"status": 200}, "GET /pulp/content/d/f.bin: status 200, expected 302"),
])
def test_the_check_names_what_is_wrong(stand_in: Any, wrong: dict[str, Any],
                                       problem: str) -> None:
    base, stand = stand_in
    for name, value in wrong.items():
        setattr(stand, name, value)
    found = _check(base)
    assert not found["ok"]
    assert any(problem in p for p in found["problems"]), found["problems"]
