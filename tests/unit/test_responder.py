"""The single responder, table-driven: headers in → status, headers, body out. No
database, no server (RFC 9110 §13.2.2 order, §14 ranges as nginx reads them, §15.4.5 304
headers). Every row runs for a stored file and for a live download alike."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.utils.http import http_date

from pulp_content_asgi.serving.representation import FileSource, Representation
from pulp_content_asgi.serving.responder import Request, respond
from pulp_content_asgi.serving.response import FileRange, Parts, StreamRange

DATA = bytes(range(256)) * 4  # 1024 bytes
ETAG = '"abc"'
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DATE = http_date(WHEN.timestamp())
META = {"Content-Type": "application/x-rpm", "Cache-Control": "no-cache", "Vary": "Accept",
        "Expires": "0"}


class Live:
    """A live source that is never read here (the responder only picks the range)."""

    def chunks(self, offset, length, step):  # pragma: no cover - not sent in these tests
        raise AssertionError("not sent")

    def release(self) -> None:  # pragma: no cover
        pass


def file_rep(**over) -> Representation:
    values = dict(source=FileSource(lambda: io.BytesIO(DATA), "/srv/a"), size=len(DATA),
                  headers=META, etag=ETAG, last_modified=WHEN, artifact_size=len(DATA))
    return Representation(**{**values, **over})


def live_rep(size: int | None = len(DATA)) -> Representation:
    return Representation(Live(), size, META, ETAG, WHEN, artifact_size=size, live=True)


def body_rep() -> Representation:
    return Representation(DATA, len(DATA), {"Content-Type": "application/json"}, ETAG, None,
                          ranges=False)


KINDS = {"file": file_rep, "live": live_rep}


def selected(body) -> tuple[int, int | None] | list | bytes | None:
    """The bytes a body selects: (offset, length) of a range, a list of ranges for a
    multipart body (its part headers left out), or the bytes themselves."""
    if isinstance(body, (FileRange, StreamRange)):
        return (body.offset, body.length)
    if isinstance(body, Parts):
        return [selected(p) for p in body.pieces if not isinstance(p, bytes)]
    return body


@pytest.mark.parametrize("kind", ["file", "live"])
@pytest.mark.parametrize(
    ("headers", "status", "body", "content_range"),
    [
        ({}, 200, (0, 1024), None),
        ({"Range": "bytes=0-9"}, 206, (0, 10), "bytes 0-9/1024"),
        ({"Range": "bytes=1000-"}, 206, (1000, 24), "bytes 1000-1023/1024"),
        ({"Range": "bytes=-24"}, 206, (1000, 24), "bytes 1000-1023/1024"),
        ({"Range": "bytes=0-9", "If-Range": ETAG}, 206, (0, 10), "bytes 0-9/1024"),
        ({"Range": "bytes=0-9", "If-Range": DATE}, 206, (0, 10), "bytes 0-9/1024"),
        ({"Range": "bytes=0-9", "If-Range": '"other"'}, 200, (0, 1024), None),
        ({"Range": "bytes=0-9", "If-Range": "W/" + ETAG}, 200, (0, 1024), None),
        ({"Range": "bytes=5000-"}, 416, b"416: Range Not Satisfiable", "bytes */1024"),
        ({"Range": "bytes=abc"}, 416, b"416: Range Not Satisfiable", "bytes */1024"),
        # nginx's reading of Range (protocol/ranges.py): invalid sets and sets with no
        # satisfiable range are 416; other units and overlaps beyond the size are ignored;
        # several ranges are a multipart 206, in the order asked.
        ({"Range": "bytes=5-1"}, 416, b"416: Range Not Satisfiable", "bytes */1024"),
        ({"Range": "bytes=-1-11"}, 416, b"416: Range Not Satisfiable", "bytes */1024"),
        ({"Range": "items=0-9"}, 200, (0, 1024), None),
        ({"Range": "bytes=0-1023,0-9"}, 200, (0, 1024), None),
        ({"Range": "bytes=1-2,5-1"}, 206, (1, 2), "bytes 1-2/1024"),
        ({"Range": "bytes=10-19,0-1"}, 206, [(10, 10), (0, 2)], None),
        ({"Range": "bytes=0-1,-2", "If-Range": ETAG}, 206, [(0, 2), (1022, 2)], None),
        ({"Range": "bytes=0-1,5-6", "If-Range": '"other"'}, 200, (0, 1024), None),
        ({"Range": "bytes=0-1,5-6", "If-Range": DATE}, 206, [(0, 2), (5, 2)], None),
        ({"If-None-Match": ETAG}, 304, None, None),
        ({"If-None-Match": "*"}, 304, None, None),
        ({"If-None-Match": '"other"', "If-Modified-Since": DATE}, 200, (0, 1024), None),
        ({"If-Modified-Since": DATE}, 304, None, None),
        ({"If-Match": '"other"'}, 412, b"412: Precondition Failed", None),
        ({"If-Match": ETAG, "Range": "bytes=0-0"}, 206, (0, 1), "bytes 0-0/1024"),
        ({"If-Unmodified-Since": "Thu, 01 Jan 2026 00:00:00 GMT"}, 412,
         b"412: Precondition Failed", None),
        # Preconditions come before Range: a 304 even with an unsatisfiable range.
        ({"If-None-Match": ETAG, "Range": "bytes=5000-"}, 304, None, None),
    ],
)
def test_every_path_answers_alike(kind, headers, status, body, content_range):
    response = respond(KINDS[kind](), Request("GET", headers))
    assert response.status == status
    assert selected(response.body) == body
    assert response.headers.get("Content-Range") == content_range


@pytest.mark.parametrize("kind", ["file", "live"])
def test_304_keeps_exactly_the_cache_headers(kind):
    response = respond(KINDS[kind](), Request("GET", {"If-None-Match": ETAG}))
    assert response.status == 304 and response.body is None
    assert dict(response.headers) == {"Cache-Control": "no-cache", "Vary": "Accept",
                                      "Expires": "0", "ETag": ETAG, "Last-Modified": DATE}


@pytest.mark.parametrize("kind", ["file", "live"])
def test_416_keeps_validators_and_artifact_size(kind):
    response = respond(KINDS[kind](), Request("GET", {"Range": "bytes=2000-"}))
    assert response.status == 416
    assert response.body == b"416: Range Not Satisfiable"
    assert dict(response.headers) == {
        "Cache-Control": "no-cache", "ETag": ETAG, "Last-Modified": DATE,
        "X-PULP-ARTIFACT-SIZE": "1024", "Content-Range": "bytes */1024",
        "Content-Type": "text/plain; charset=utf-8"}


def test_412_is_a_plain_error():
    response = respond(file_rep(), Request("HEAD", {"If-Match": '"x"'}))
    assert (response.status, response.body) == (412, b"412: Precondition Failed")


@pytest.mark.parametrize("kind", ["file", "live"])
def test_head_has_the_get_headers_and_no_body(kind):
    get = respond(KINDS[kind](), Request("GET", {"Range": "bytes=0-9"}, "1.1"))
    head = respond(KINDS[kind](), Request("HEAD", {"Range": "bytes=0-9"}, "1.1"))
    assert (head.status, dict(head.headers), head.body) == (get.status, dict(get.headers), None)


def test_file_headers():
    response = respond(file_rep(), Request("GET", {}))
    assert dict(response.headers) == {
        **META, "ETag": ETAG, "Last-Modified": DATE, "X-PULP-ARTIFACT-SIZE": "1024",
        "Accept-Ranges": "bytes", "Content-Length": "1024"}
    assert response.artifact_size == 1024
    assert isinstance(response.body, FileRange) and response.body.whole
    assert response.body.path == "/srv/a"


@pytest.mark.parametrize(("version", "length"), [("1.1", None), ("1", "1024"),
                                                 ("1.0", "1024")])
def test_a_whole_live_stream_declares_its_length_only_to_http_10(version, length):
    """HTTP/1.1 clients see a cut download as a broken chunked body; HTTP/1.0 has no
    chunks, so only a declared length can show it."""
    response = respond(live_rep(), Request("GET", {}, version))
    assert response.headers.get("Content-Length") == length


def test_a_live_stream_does_not_advertise_ranges():
    """As pulpcore-content's streams (make parity compares it); ranges still work."""
    assert "Accept-Ranges" not in respond(live_rep(), Request("GET", {})).headers


def test_a_live_range_always_declares_its_length():
    response = respond(live_rep(), Request("GET", {"Range": "bytes=0-9"}, "1.1"))
    assert response.headers["Content-Length"] == "10"


def test_a_stream_of_unknown_size_ignores_ranges():
    response = respond(live_rep(size=None), Request("GET", {"Range": "bytes=0-9"}))
    assert response.status == 200 and "Accept-Ranges" not in response.headers
    assert selected(response.body) == (0, None) and "Content-Length" not in response.headers


def test_generated_bodies_ignore_ranges_but_honour_validators():
    """As aiohttp's web.Response: no ranges; an ETag the plugin set gives 304s."""
    whole = respond(body_rep(), Request("GET", {"Range": "bytes=0-9"}))
    assert (whole.status, whole.body, whole.headers["Content-Length"]) == (200, DATA, "1024")
    assert "Accept-Ranges" not in whole.headers
    assert respond(body_rep(), Request("GET", {"If-None-Match": ETAG})).status == 304


def test_without_validators_preconditions_do_not_apply():
    """Listings carry no validators: sent whole, as pulpcore does."""
    rep = Representation(b"<html/>", 7, {"Content-Type": "text/html"}, ranges=False)
    response = respond(rep, Request("GET", {"If-Match": '"x"', "If-None-Match": "*"}))
    assert (response.status, response.body) == (200, b"<html/>")


@pytest.mark.parametrize("kind", ["file", "live"])
def test_several_ranges_are_one_multipart_body_laid_out_as_nginx_does(kind):
    """RFC 9110 §14.6: part headers name the type and range, the boundary is in the
    Content-Type, the length counts every byte; the validators stay."""
    response = respond(KINDS[kind](), Request("GET", {"Range": "bytes=5-6,0-1"}))
    assert response.status == 206
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.rsplit("=", 1)[1]
    assert len(boundary) == 20
    pieces = response.body.pieces
    assert pieces[0] == (f"\r\n--{boundary}\r\nContent-Type: application/x-rpm\r\n"
                         "Content-Range: bytes 5-6/1024\r\n\r\n").encode()
    assert selected(pieces[1]) == (5, 2)
    assert pieces[2] == (f"\r\n--{boundary}\r\nContent-Type: application/x-rpm\r\n"
                         "Content-Range: bytes 0-1/1024\r\n\r\n").encode()
    assert selected(pieces[3]) == (0, 2)
    assert pieces[4] == f"\r\n--{boundary}--\r\n".encode()
    length = sum(len(p) if isinstance(p, bytes) else p.length for p in pieces)
    assert response.headers["Content-Length"] == str(length)
    assert "Content-Range" not in response.headers
    assert response.headers["ETag"] == ETAG and response.headers["Last-Modified"] == DATE
    head = respond(KINDS[kind](), Request("HEAD", {"Range": "bytes=5-6,0-1"}))
    assert head.status == 206 and head.body is None
    assert head.headers["Content-Length"] == str(length)


def test_several_ranges_of_bytes_in_memory_are_one_body():
    rep = Representation(DATA, len(DATA), {"Content-Type": "text/plain"}, ETAG, None)
    response = respond(rep, Request("GET", {"Range": "bytes=0-1,4-5"}))
    boundary = response.headers["Content-Type"].rsplit("=", 1)[1]
    assert response.body == (
        f"\r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/1024"
        f"\r\n\r\n".encode() + DATA[0:2]
        + f"\r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 4-5/1024"
        f"\r\n\r\n".encode() + DATA[4:6] + f"\r\n--{boundary}--\r\n".encode())
    assert response.headers["Content-Length"] == str(len(response.body))
