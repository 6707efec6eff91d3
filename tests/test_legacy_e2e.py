"""The legacy fallback (``CONTENT_ASGI_LEGACY_ORIGIN``): a route only pulpcore-content
serves (a test plugin's aiohttp routes, tests/legacy_origin.py, on a real pulpcore-content)
asked through our app (granian) answers as pulpcore-content answers it directly."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import family, free_port, rss
from tests.helpers import (
    LEGACY_ROUTES,
    TEST_ROOT,
    content_app,
    legacy_content_app,
    metered_env,
    scrape,
    stop_server,
    value,
    wait_for,
)
from tests.legacy_origin import BLOCK, GZIPPED, block, pattern

ROUTES = LEGACY_ROUTES
FILE = os.urandom(300 * 1024)
MIB = 1 << 20
GIB = 1 << 30
#: Headers the two answers may differ in: the time they were made (the server in front
#: stamps its own Date).
VARYING = {"date"}
#: Headers of one connection, sent by each server for its own (RFC 9110 §7.6.1).
DURATION = "pulp_content_request_duration_seconds_count"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding"}


@pytest.fixture(scope="module")
def served_file() -> str:
    os.makedirs(TEST_ROOT, exist_ok=True)
    path = os.path.join(TEST_ROOT, "legacy-file.bin")
    with open(path, "wb") as out:
        out.write(FILE)
    return path


@pytest.fixture(scope="module")
def legacy(served_file) -> Iterator[object]:
    running = legacy_content_app({"LEGACY_TEST_FILE": served_file})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def front_files(tmp_path_factory) -> tuple[str, str]:
    """The front's access log and Prometheus directory."""
    where = tmp_path_factory.mktemp("front")
    (where / "prometheus").mkdir()
    return str(where / "access.log"), str(where / "prometheus")


@pytest.fixture(scope="module")
def front(legacy, front_files) -> Iterator[object]:
    """Our app (granian) with the fallback pointing at ``legacy``."""
    access, prometheus = front_files
    running = content_app(env=metered_env(prometheus,
                                          PULP_CONTENT_ASGI_LEGACY_ORIGIN=legacy.base),
                          extra=["--access-logfile", access])
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def uvicorn_front(legacy) -> Iterator[object]:
    running = content_app("uvicorn", env={"PULP_CONTENT_ASGI_LEGACY_ORIGIN": legacy.base})
    yield running
    stop_server(running)


def both(legacy, front, method: str, path: str, **kwargs) -> tuple[httpx.Response, ...]:
    """The same request asked of pulpcore-content directly and through our app."""
    return tuple(httpx.request(method, server.url(path), timeout=60, **kwargs)
                 for server in (legacy, front))


def end_to_end(response: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.multi_items()
            if k not in VARYING and k not in HOP_BY_HOP]


def same_answer(direct: httpx.Response, proxied: httpx.Response) -> None:
    """Status, every end-to-end header (repeated ones and their order included), the
    framing (chunked or not) and the bytes."""
    assert proxied.status_code == direct.status_code
    assert end_to_end(proxied) == end_to_end(direct)
    assert len(proxied.headers.get_list("date")) == 1  # the server's own, not two
    assert proxied.headers.get("transfer-encoding") == direct.headers.get("transfer-encoding")
    assert proxied.content == direct.content


def test_a_legacy_only_route_answers_as_pulpcore_content(legacy, front):
    direct, proxied = both(legacy, front, "GET", ROUTES + "bytes/300000")
    same_answer(direct, proxied)
    assert proxied.status_code == 200 and proxied.content == pattern(0, 300000)
    assert proxied.headers.get_list("set-cookie") == ["first=1; Path=/", "second=2; Path=/"]
    assert proxied.headers["x-legacy-plugin"] == "bytes"


def test_uvicorn_forwards_the_same_answer(legacy, uvicorn_front):
    for path in ("bytes/300000", "chunked/100000", "file", "missing"):
        same_answer(*both(legacy, uvicorn_front, "GET", ROUTES + path))
    same_answer(*both(legacy, uvicorn_front, "HEAD", ROUTES + "file"))


def test_forwarded_requests_are_logged_and_counted(front, front_files):
    before = value(scrape(front), DURATION, method="GET", status="2xx", route="legacy")
    httpx.get(front.url(ROUTES + "bytes/1234"), headers={"User-Agent": "logged-legacy"})
    httpx.get(front.url(ROUTES + "missing"), headers={"User-Agent": "logged-legacy"})
    lines: list[str] = []

    def written() -> bool:
        with open(front_files[0]) as log:
            lines[:] = [x for x in log if '"logged-legacy"' in x]
        return len(lines) == 2

    assert wait_for(written)
    assert f'"GET {ROUTES}bytes/1234 HTTP/1.1" 200 1234 ' in lines[0]
    assert f'"GET {ROUTES}missing HTTP/1.1" 404 ' in lines[1]
    after = scrape(front)
    assert value(after, DURATION, method="GET", status="2xx", route="legacy") == before + 1
    assert value(after, DURATION, method="GET", status="4xx", route="legacy") >= 1


def test_head_range_and_conditional_requests_pass_through(legacy, front):
    same_answer(*both(legacy, front, "HEAD", ROUTES + "file"))
    direct, proxied = both(legacy, front, "GET", ROUTES + "file",
                           headers={"Range": "bytes=100-4195"})
    same_answer(direct, proxied)
    assert proxied.status_code == 206 and proxied.content == FILE[100:4196]
    etag = proxied.headers["etag"]
    direct, proxied = both(legacy, front, "GET", ROUTES + "file",
                           headers={"If-None-Match": etag})
    same_answer(direct, proxied)
    assert proxied.status_code == 304


def test_chunked_and_encoded_bodies_pass_through_unchanged(legacy, front):
    direct, proxied = both(legacy, front, "GET", ROUTES + "chunked/200000")
    same_answer(direct, proxied)
    assert proxied.content == pattern(0, 200000) and "content-length" not in proxied.headers
    raw = []
    for server in (legacy, front):
        with httpx.stream("GET", server.url(ROUTES + "gzip")) as response:
            raw.append((response.headers["content-encoding"],
                        response.headers["content-length"], b"".join(response.iter_raw())))
    assert raw[1] == raw[0] == ("gzip", str(len(GZIPPED)), GZIPPED)  # not decompressed


@pytest.mark.parametrize("path", ["missing", "fail", "not-a-route"])
def test_errors_pass_through(legacy, front, path):
    direct, proxied = both(legacy, front, "GET", ROUTES + path)
    same_answer(direct, proxied)
    assert proxied.status_code == (500 if path == "fail" else 404)


def test_the_request_arrives_as_a_reverse_proxy_forwards_it(front):
    sent = {"Host": "pulp.example.com", "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https", "Via": "1.1 cdn", "User-Agent": "dnf/4.14",
            "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "drop me",
            "Keep-Alive": "timeout=5", "TE": "trailers", "Cookie": "a=1"}
    echo = httpx.get(front.url(ROUTES + "echo?b=%2F&a=1&a=2"), headers=sent).json()
    got = {k.lower(): v for k, v in echo["headers"]}
    assert echo["method"] == "GET" and echo["path_qs"] == ROUTES + "echo?b=%2F&a=1&a=2"
    assert got["host"] == "pulp.example.com"  # pulpcore-content builds the same URLs
    assert got["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert got["x-forwarded-proto"] == "https"  # the front proxy's, not our hop's
    assert got["x-forwarded-host"] == "pulp.example.com"
    assert got["via"] == "1.1 cdn, 1.1 pulp-content-asgi"
    assert got["user-agent"] == "dnf/4.14" and got["cookie"] == "a=1"
    assert not {"x-secret-hop", "keep-alive", "te", "transfer-encoding"} & set(got)
    assert "content-length" not in got  # a GET without a body goes on without one
    plain = {k.lower(): v for k, v in httpx.get(front.url(ROUTES + "echo"),
                                                headers={"Host": "h"}).json()["headers"]}
    assert plain["x-forwarded-for"] == "127.0.0.1"
    assert plain["x-forwarded-proto"] == "http" and plain["x-forwarded-host"] == "h"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_request_bodies_stream_upstream(front, method):
    blob = os.urandom(5 * MIB + 3)
    sized = httpx.request(method, front.url(ROUTES + "echo"), content=blob, timeout=60)
    assert sized.status_code == 200
    assert sized.json()["method"] == method
    assert (sized.json()["length"], sized.json()["sha256"]) == \
        (len(blob), hashlib.sha256(blob).hexdigest())

    def pieces() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for i in range(0, len(blob), MIB):
            yield blob[i:i + MIB]

    chunked = httpx.request(method, front.url(ROUTES + "echo"), content=pieces(),
                            timeout=60).json()
    assert (chunked["length"], chunked["sha256"]) == (len(blob),
                                                      hashlib.sha256(blob).hexdigest())


def test_the_content_prefix_and_the_health_path_stay_ours(front, unique):
    repo = data.repository(f"legacy-{unique}", {"a.txt": b"ours"})
    distribution = data.distribute(f"legacy-{unique}",
                                   publication=data.publish(repo.latest_version()))
    served = httpx.get(front.url(f"/pulp/content/{distribution.base_path}/a.txt"))
    # Our ETag is the sha256 (pulpcore-content's is aiohttp's mtime-and-size one).
    assert served.headers["etag"] == f'"{hashlib.sha256(b"ours").hexdigest()}"'
    assert httpx.get(front.url("/pulp/content/nowhere-at-all/x")).status_code == 404
    health = httpx.get(front.url("/pulp/content-asgi/health/"))
    assert health.status_code == 200 and health.json()["database"] == "ok"


def test_without_the_setting_such_paths_are_404(server):
    response = httpx.get(server.url(ROUTES + "bytes/10"))
    assert response.status_code == 404 and response.text == "404: Not Found"


def test_an_unreachable_origin_is_a_502_naming_it():
    nowhere = f"http://127.0.0.1:{free_port()}"
    running = content_app(env={"PULP_CONTENT_ASGI_LEGACY_ORIGIN": nowhere})
    try:
        response = httpx.get(running.url(ROUTES + "bytes/10"))
        assert response.status_code == 502
        assert nowhere in response.text and "CONTENT_ASGI_LEGACY_ORIGIN" in response.text
        assert wait_for(lambda: nowhere in running.log())
    finally:
        stop_server(running)


def test_an_origin_that_does_not_answer_is_a_504():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the kernel; nobody ever answers
    origin = f"http://127.0.0.1:{silent.getsockname()[1]}"
    running = content_app(env={"PULP_CONTENT_ASGI_LEGACY_ORIGIN": origin,
                               "PULP_CONTENT_ASGI_LEGACY_TIMEOUT": "1"})
    try:
        response = httpx.get(running.url(ROUTES + "bytes/10"), timeout=60)
        assert response.status_code == 504
        assert origin in response.text and "CONTENT_ASGI_LEGACY_TIMEOUT" in response.text
    finally:
        stop_server(running)
        silent.close()


def test_a_client_that_leaves_closes_the_upstream_stream(legacy, front, unique):
    events = legacy.url(ROUTES + "events")
    with httpx.stream("GET", front.url(f"{ROUTES}bytes/{GIB}?id={unique}"),
                      timeout=60) as response:
        assert response.status_code == 200
        next(response.iter_raw(MIB))
    assert wait_for(lambda: httpx.get(events).json().get(unique) == "aborted")


def test_an_upstream_cut_reaches_the_client_as_a_cut(front):
    with pytest.raises(httpx.RemoteProtocolError), \
            httpx.stream("GET", front.url(ROUTES + "cut/2000000"), timeout=60) as response:
        assert response.status_code == 200
        response.read()


def test_one_gib_through_the_fallback_keeps_worker_rss_flat(legacy, front, unique):
    """A slow client for the first 200 MiB: the proxy must hold a chunk, not the body."""
    workers = family(front.pid)
    baseline = max(rss(p) for p in workers)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max([peak[0]] + [rss(p) for p in family(front.pid)])
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    digest, received = hashlib.sha256(), 0
    try:
        with httpx.stream("GET", front.url(f"{ROUTES}bytes/{GIB}?id=gib-{unique}"),
                          timeout=120) as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(GIB)
            for i, chunk in enumerate(response.iter_raw(MIB)):
                digest.update(chunk)
                received += len(chunk)
                if i < 200:
                    time.sleep(0.005)  # a slow reader: backpressure reaches the origin
    finally:
        done.set()
        sampler.join()
    expected = hashlib.sha256()
    for i in range(GIB // BLOCK):
        expected.update(block(i))
    assert received == GIB and digest.hexdigest() == expected.hexdigest()
    growth = peak[0] - baseline
    print(f"worker RSS {baseline / MIB:.0f} MiB, peak {peak[0] / MIB:.0f} MiB")
    assert growth < 64 * MIB, f"RSS grew by {growth / MIB:.0f} MiB"


@pytest.mark.parametrize("server", ["front", "uvicorn_front"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_sent_with_an_upgrade_request_is_forwarded_whole(
        request: pytest.FixtureRequest, server: str, framing: str) -> None:
    """``curl --http2 -d ...`` on an http:// URL asks to upgrade to h2c with a body (RFC
    7540 section 3.2); the content app takes no upgrade and must answer the request over
    HTTP/1.1 (RFC 9110 section 7.8), its body included, as pulpcore-content and granian
    do: the echo route gets the 100 bytes. (Or it refuses the request, a 4xx.)

    uvicorn: httptools ends an upgrade request at its head (message complete, no body),
    so the app receives an empty body while the head says 100 bytes; forwarded with its
    ``Content-Length: 100`` and no bytes, pulpcore-content waits for them and the client
    gets no answer (stock uvicorn alike, when the body shares the head's read)."""
    from tests.adversarial import exchange

    running = request.getfixturevalue(server)
    blob = bytes(range(100))
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(blob), blob) if framing == "chunked" else blob
    framed = (b"Transfer-Encoding: chunked" if framing == "chunked"
              else b"Content-Length: %d" % len(blob))
    answers = exchange(running.base, b"POST " + ROUTES.encode() + b"echo HTTP/1.1\r\nHost: x"
                       b"\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n"
                       b"HTTP2-Settings: AAMAAABkAARAAAAA\r\n" + framed + b"\r\n\r\n" + body)
    assert len(answers) == 1, [a.status for a in answers]
    if 400 <= answers[0].status < 500:
        return  # refused: acceptable
    echoed = json.loads(answers[0].body)
    assert (answers[0].status, echoed["length"], echoed["sha256"]) == (
        200, 100, hashlib.sha256(blob).hexdigest())
