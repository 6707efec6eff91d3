"""Hostile connections the fuzzers of tests/test_fuzz_e2e.py do not send (issue #17): a
header section of many MiB, and an HTTP/2 connection (granian speaks HTTP/2 with prior
knowledge on the content port) that never sends a request. Found by hand while reviewing
the adversarial suite; both servers the runner offers are tried.

- A header section far past any server's limit is refused (a 4xx, or the connection
  closed without an answer), as granian answers 431 and pulpcore-content's aiohttp 400:
  uvicorn's httptools protocol has no limit, buffers it all and serves the request (a
  300 MiB header: 200 after 181 s, worker RSS +290 MiB; while it arrived, other clients
  of the worker waited 11-19 s for a 1 KB file that takes 3 ms otherwise).
- ``CONTENT_ASGI_HEADER_TIMEOUT`` is the defence against connections that never finish
  a request (tests/test_slow_clients_e2e.py checks it for HTTP/1.1); an HTTP/2
  connection that sends the preface and nothing else was still open after 90 s.
"""

from __future__ import annotations

import contextlib
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.adversarial import exchange, parse_answers
from tests.helpers import closed_by_server, content_app, raw_get, stop_server

pytestmark = pytest.mark.adversarial

HUGE = 16 * 1024 * 1024


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_a_16_mib_header_section_is_refused_not_served(server):
    running = content_app(server)
    try:
        request = (b"GET /pulp/content/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   b"X-Big: " + b"a" * HUGE + b"\r\n\r\n")
        answers = exchange(running.base, request)
        assert all(400 <= a.status < 500 for a in answers), [a.status for a in answers]
        assert raw_get(running, "/pulp/content/")[0] == 200
    finally:
        stop_server(running)


def test_granian_closes_an_http2_connection_that_sends_no_request():
    """As test_granian_closes_headers_that_never_end_after_the_header_timeout, over
    HTTP/2 with prior knowledge: the client-connection preface, then silence. Closed well
    before the 25 s the HTTP/1.1 test allows (or HTTP/2 refused at once)."""
    running = content_app("granian", env={"PULP_CONTENT_ASGI_HEADER_TIMEOUT": "2"})
    try:
        where = urlsplit(running.base)
        with socket.create_connection((where.hostname, where.port), timeout=1) as sock:
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            assert closed_by_server(sock, 25), (
                "granian kept an HTTP/2 connection without a request open")
        assert raw_get(running, "/pulp/content/")[0] == 200
    finally:
        stop_server(running)


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_what_is_not_one_long_head_is_not_refused(server):
    """The bound counts one request's head, not a connection's bytes: 1,500 pipelined
    requests sent in one write (about 100 KiB, past the 64 KiB bound) are each answered,
    a request body of 1 MiB is the app's to answer (405: the content app takes no
    bodies), and a head just under the bound is served."""
    running = content_app(server)
    try:
        one = b"GET /pulp/content/ HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 30 + b"\r\n\r\n"
        last = b"GET /pulp/content/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answers = exchange(running.base, one * 1499 + last)
        assert [a.status for a in answers] == [200] * 1500
        body = b"b" * (1 << 20)
        posted = exchange(running.base, b"POST /pulp/content/ HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert [a.status for a in posted] == [405]
        near = exchange(running.base, b"GET /pulp/content/ HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\nX-Big: " + b"a" * (60 * 1024) + b"\r\n\r\n")
        assert [a.status for a in near] == [200]
    finally:
        stop_server(running)


# --- request smuggling: a body that is itself a request ------------------------------------

EMBEDDED = b"GET /pulp/content/ HTTP/1.1\r\nHost: x\r\n\r\n"  # the root listing: 200, HTML


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


#: Framings of a GET whose body is :data:`EMBEDDED` (RFC 9112 section 6: what a server must
#: take as the body, or refuse with 400 and close). None is one a front proxy would read
#: differently without the server noticing.
DESYNC = {
    "content-length": [(b"Content-Length", b"%d" % len(EMBEDDED))],
    "chunked": [(b"Transfer-Encoding", b"chunked")],
    "te.cl": [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"4")],
    "cl.te": [(b"Content-Length", b"4"), (b"Transfer-Encoding", b"chunked")],
    "te-space": [(b"Transfer-Encoding", b" chunked"), (b"Content-Length", b"4")],
    "te-list": [(b"Transfer-Encoding", b"chunked, identity"), (b"Content-Length", b"4")],
    "te-xchunked": [(b"Transfer-Encoding", b"xchunked"), (b"Content-Length", b"4")],
    "te-twice": [(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"identity")],
    "cl-twice": [(b"Content-Length", b"4"), (b"Content-Length", b"%d" % len(EMBEDDED))],
    "cl-list": [(b"Content-Length", b"4, %d" % len(EMBEDDED))],
}


@pytest.fixture(scope="module")
def small_file():
    from pulp_content_asgi.devtools import data
    from tests.helpers import unique_name

    name = f"wire-{unique_name()}"
    repo = data.repository(name, {"small.txt": b"small\n"})
    distribution = data.distribute(name, publication=data.publish(repo.latest_version()))
    return f"/pulp/content/{distribution.base_path}/small.txt".encode()


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_a_body_is_never_answered_as_a_request(server, small_file):
    """For every framing in :data:`DESYNC`: the answers are the file's, then the next
    request's (the same file again), in order, or stop at a 400 and a close; never an
    answer to the embedded request (the root listing's HTML), which is what a request
    smuggled past a proxy that reads the framing otherwise would get."""
    running = content_app(server)
    try:
        for case, framing in DESYNC.items():
            chunked = any(v.strip().lower().startswith(b"chunked") for k, v in framing
                          if k == b"Transfer-Encoding")
            body = _chunked(EMBEDDED) if chunked else EMBEDDED
            head = b"".join(k + b": " + v + b"\r\n" for k, v in framing)
            raw = (b"GET " + small_file + b" HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + body
                   + b"GET " + small_file + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answers = [(a.status, a.body) for a in exchange(running.base, raw)]
            assert not any(b"<html" in body.lower() for _, body in answers), (case, answers)
            served = [a for a in answers if a[0] == 200]
            assert served == [(200, b"small\n")] * len(served), (case, answers)
            rest = answers[len(served):]
            assert rest == [] or (len(rest) == 1 and rest[0][0] == 400), (case, answers)
            if case in ("content-length", "chunked"):  # well framed: both answered
                assert answers == [(200, b"small\n")] * 2, (case, answers)
    finally:
        stop_server(running)


# --- what the head bound does not count (uvicorn: server/uvicorn_http.py) -----------------

@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_a_16_mib_trailer_section_is_refused_not_read(server):
    """A chunked request's trailer section (RFC 9112 section 7.1.2) is a header section
    too: one of 16 MiB is refused, as a 16 MiB head is, and the request pipelined behind
    it is not served. (The first request may be answered before its trailers arrive.)

    uvicorn's bound counts only reads that begin and end in a head, so the trailers of a
    request (read after its head completed) are never counted: httptools buffers them
    whole (a 256 MiB trailer field: worker RSS +340 MiB, the next request served 200,
    another client of the worker waiting 42.6 s for the root listing). granian hangs up."""
    running = content_app(server)
    try:
        request = (b"GET /pulp/content/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                   b"\r\n\r\n0\r\nX-Big: " + b"a" * HUGE + b"\r\n\r\n"
                   b"GET /pulp/content/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = exchange(running.base, request)
        assert all(400 <= a.status < 500 for a in answers[1:]), [a.status for a in answers]
        assert raw_get(running, "/pulp/content/")[0] == 200
    finally:
        stop_server(running)


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_a_head_begun_in_the_read_that_ends_a_body_is_bounded(server):
    """A request whose head is 541 KiB, sent so that its first 240 KiB share a write
    (so, once the connection's receive window has grown, one read) with the end of the
    previous request's body, and its last 240 KiB and its end share another: refused
    (a 4xx or a close), as any head past the bound.

    uvicorn's bound skips a read that ends a body and one that completes a head ("at
    most one read of them"), so this head is counted 60 KiB of 541 and served 200 (five
    runs of five): the bound is about 64 KiB + 2 x 250 KB (uvloop's read size), not the
    64 KiB + one read its docstring states. The pauses only let the server read each
    write apart; a server that counts every byte of a head refuses it however it reads."""
    running = content_app(server)

    def fields(size: int, tag: bytes) -> bytes:
        out = b""
        while len(out) < size:
            out += b"X-%s%d: %s\r\n" % (tag, len(out), b"v" * 1000)
        return out

    warm = 8 << 20
    head = (b"GET /pulp/content/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
            fields(240 << 10, b"A"), fields(60 << 10, b"B"), fields(240 << 10, b"C") + b"\r\n")
    try:
        statuses = _exchange_in_writes(running.base, [
            b"POST /pulp/content/ HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: %d\r\n\r\n" % warm + b"b" * (warm - 10),
            b"b" * 10 + head[0] + head[1], head[2], head[3]])
        assert all(400 <= s < 500 for s in statuses[1:]), (
            f"a {sum(map(len, head)) >> 10} KiB head: {statuses}")
        assert raw_get(running, "/pulp/content/")[0] == 200
    finally:
        stop_server(running)


def _exchange_in_writes(base: str, writes: list[bytes]) -> list[int]:
    """Send ``writes`` one at a time (a second apart, so the server tends to read each
    apart; no outcome waits on the pause: a bound that counts every byte refuses however
    they are read) on one connection, then read until it closes: the statuses."""
    where = urlsplit(base)
    received = bytearray()
    with socket.create_connection((where.hostname, where.port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for number, data in enumerate(writes):
                if number:
                    time.sleep(1)
                sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early: read what it said
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 16):
                received += chunk
    return [a.status for a in parse_answers(bytes(received), cut_ok=True)]


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_a_96_kib_head_is_refused_however_its_reads_fall(server):
    """A 98,303-byte head (96 KiB less a byte), past the 64 KiB bound by half of it, is
    refused: its first 16,383 bytes share the read that ends a body, the next 64 KiB
    come in a read of their own and its last 16 KiB (with its end) in another.

    uvicorn (server/uvicorn_http.py) counts no byte of a piece in which the parser made
    progress: the piece that ends the body and the piece that completes the head each
    hide up to a piece. With 16 KiB pieces the bound was 64 + 2 x 16 KiB: 98,303 bytes
    were served 200 (one more refused). With 4 KiB pieces it is at most 72 KiB."""
    running = content_app(server)
    size, lead = 16383 + 65536 + 16384, 16383
    start = b"GET /pulp/content/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    fields = b""
    while len(start) + len(fields) + 2 < size:
        room = size - len(start) - len(fields) - 2 - len(b"X-A0000: \r\n")
        fields += b"X-A%04d: %s\r\n" % (len(fields) // 1000, b"v" * max(1, min(990, room)))
    head = start + fields + b"\r\n"
    assert len(head) == size, len(head)
    body = 4096
    try:
        statuses = _exchange_in_writes(running.base, [
            b"POST /pulp/content/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % body
            + b"b" * (body - 1),
            b"b" + head[:lead], head[lead:lead + 65536], head[lead + 65536:]])
        assert all(400 <= s < 500 for s in statuses[1:]), f"a {size}-byte head: {statuses}"
        assert raw_get(running, "/pulp/content/")[0] == 200
    finally:
        stop_server(running)


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
@pytest.mark.parametrize("writes", ["one write", "two writes"])
def test_the_body_of_a_refused_upgrade_is_never_answered_as_a_request(server, writes):
    """A GET with ``Connection: Upgrade`` and ``Upgrade: h2c`` (which this server does not
    take up) and a body (``Content-Length``) that ends with :data:`EMBEDDED`, at byte
    16,384 of the connection: the embedded request must never be answered (the root
    listing's HTML), as in test_a_body_is_never_answered_as_a_request.

    httptools stops at an upgrade's head and uvicorn drops the rest of that
    ``data_received``; its parser starts afresh on the next one, inside the body. Stock
    uvicorn so answers the embedded request when the body comes in a read of its own
    ("two writes"); server/uvicorn_http.py's first 16 KiB pieces made any single write do
    it ("one write"): the first request was answered 404, then the listing. Now the
    upgrade request is answered and the connection closed, nothing more read."""
    running = content_app(server)
    head = (b"GET /pulp/content/no-such-distribution/ HTTP/1.1\r\nHost: x\r\n"
            b"Connection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 00000\r\n\r\n")
    body = b"f" * (16384 - len(head)) + EMBEDDED
    data = head.replace(b"00000", b"%05d" % len(body)) + body
    assert data.index(EMBEDDED) == 16384
    parts = [data] if writes == "one write" else [data[:16384], data[16384:]]
    try:
        where = urlsplit(running.base)
        received = bytearray()
        with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
            for number, part in enumerate(parts):
                if number:
                    time.sleep(1)  # paces the writes apart; no outcome waits on it
                sock.sendall(part)
            with contextlib.suppress(ConnectionResetError, TimeoutError):
                while chunk := sock.recv(1 << 16):
                    received += chunk
        assert b"Index of /pulp/content/" not in received, bytes(received)
        assert raw_get(running, "/pulp/content/")[0] == 200
    finally:
        stop_server(running)


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_an_upgrade_asked_without_a_body_is_answered(server, small_file):
    """``curl --http2`` on an http:// URL asks to upgrade to h2c (RFC 7540 section 3.2's
    Upgrade, HTTP2-Settings): the content app does not switch protocols and answers the
    request over HTTP/1.1 (RFC 9110 section 7.8), the file whole."""
    running = content_app(server)
    try:
        answers = exchange(running.base, b"GET " + small_file + b" HTTP/1.1\r\nHost: x\r\n"
                           b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                           b"HTTP2-Settings: AAMAAABkAARAAAAA\r\n\r\n")
        assert [(a.status, a.body) for a in answers] == [(200, b"small\n")]
    finally:
        stop_server(running)
