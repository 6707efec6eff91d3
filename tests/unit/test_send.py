"""Sending a response over ASGI, in-process with a recording ``send`` (no server):
pathsend is chosen at send time for any path, bodies are bounded, sources released."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import tempfile

import pytest

from pulp_content_asgi.serving.response import (
    BodyFailed,
    FileRange,
    Parts,
    Response,
    StreamRange,
)
from pulp_content_asgi.serving.send import Sending, send_response

DATA = os.urandom(100_000)
PATHSEND = {"extensions": {"http.response.pathsend": {}}}


@pytest.fixture
def local_file():
    with tempfile.NamedTemporaryFile(delete=False) as handle:
        handle.write(DATA)
    yield handle.name
    os.unlink(handle.name)


SMALL_CHUNKS = Sending(chunk_size=16_384)


def run(response: Response, scope: dict, how: Sending = SMALL_CHUNKS,
        disconnect: asyncio.Event | None = None, extra: dict | None = None):
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        await (disconnect or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    complete = asyncio.run(send_response(response, {"method": "GET", **scope}, receive, send,
                                         how, extra))
    return complete, sent


def body_of(sent: list[dict]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def file_range(path: str, offset: int = 0, length: int = len(DATA)) -> FileRange:
    return FileRange(lambda: open(path, "rb"), offset, length, len(DATA), path)


def test_a_whole_local_file_goes_through_pathsend_when_offered(local_file):
    response = Response(200, {"Content-Length": str(len(DATA))}, file_range(local_file))
    complete, sent = run(response, PATHSEND)
    assert complete and [m["type"] for m in sent] == ["http.response.start",
                                                       "http.response.pathsend"]
    assert sent[1]["path"] == local_file


@pytest.mark.parametrize("scope", [{}, PATHSEND])
def test_ranges_and_unoffered_pathsend_are_copied_in_bounded_chunks(local_file, scope):
    ranged = "extensions" in scope
    body = file_range(local_file, 10, 50_000) if ranged else file_range(local_file)
    complete, sent = run(Response(206 if ranged else 200, {}, body), scope)
    chunks = [m for m in sent if m["type"] == "http.response.body"]
    assert complete and body_of(sent) == DATA[body.offset:body.offset + body.length]
    assert max(len(m["body"]) for m in chunks) <= 16_384
    assert chunks[-1]["more_body"] is False


def test_object_storage_files_are_never_pathsent():
    body = FileRange(lambda: io.BytesIO(DATA), 0, len(DATA), len(DATA), None)
    complete, sent = run(Response(200, {}, body), PATHSEND)
    assert complete and body_of(sent) == DATA
    assert all(m["type"] != "http.response.pathsend" for m in sent)


def test_pathsend_can_be_turned_off(local_file):
    complete, sent = run(Response(200, {}, file_range(local_file)), PATHSEND,
                         Sending(chunk_size=65_536, pathsend=False))
    assert complete and body_of(sent) == DATA


def test_a_file_that_cannot_be_opened_is_a_500_before_any_header():
    def missing():
        raise FileNotFoundError("/nonexistent/x")

    body = FileRange(missing, 0, 10, 10, "/nonexistent/x")
    _, sent = run(Response(200, {"Content-Length": "10"}, body), {})
    assert sent[0]["status"] == 500 and b"could not be read" in body_of(sent)


def test_typed_facts_and_extra_headers_become_lower_case_headers():
    response = Response(200, {"Content-Type": "text/plain"}, b"hi", cache="HIT")
    _, sent = run(response, {}, extra={"Correlation-ID": "abc"})
    assert dict(sent[0]["headers"]) == {b"content-type": b"text/plain",
                                        b"content-length": b"2", b"x-pulp-cache": b"HIT",
                                        b"correlation-id": b"abc"}
    assert body_of(sent) == b"hi"


def test_head_sends_the_length_and_no_body():
    _, sent = run(Response(404, {}, b"404: Not Found"), {"method": "HEAD"})
    assert dict(sent[0]["headers"])[b"content-length"] == b"14" and body_of(sent) == b""


async def _handed_to_a_full_server(response: Response) -> list[int]:
    """Body bytes of each body message handed to a server whose buffer is full once it
    holds some: every send after the first body bytes waits, as uvicorn's do while its
    transport has unsent bytes and granian's while hyper has not taken the last message.
    The client then leaves (the response ends cut; the waiting send never returns)."""
    given: list[int] = []
    waiting, gone = asyncio.Event(), asyncio.Event()

    async def send(message: dict) -> None:
        if message["type"] != "http.response.body":
            return
        full = any(given)
        given.append(len(message.get("body", b"")))
        if full:
            waiting.set()
            await asyncio.Event().wait()

    async def receive() -> dict:
        await gone.wait()
        return {"type": "http.disconnect"}

    sending = asyncio.ensure_future(send_response(response, {"method": "GET"}, receive,
                                                  send, SMALL_CHUNKS))
    await waiting.wait()
    gone.set()
    assert await sending is False
    return given


def test_a_client_that_reads_nothing_is_handed_one_chunk_of_a_file(local_file):
    """The next chunk is read only once the server has passed the last one on (issue
    #18): a slow client holds one chunk in the worker, not one more read ahead."""
    given = asyncio.run(_handed_to_a_full_server(Response(200, {}, file_range(local_file))))
    assert given == [16_384, 0]


def test_a_client_that_reads_nothing_is_handed_one_chunk_of_a_live_stream():
    live = Live([b"a" * 1000, b"b" * 1000, b"c" * 1000])
    given = asyncio.run(_handed_to_a_full_server(Response(200, {}, StreamRange(live, 0, None))))
    assert given == [0, 1000, 0] and live.released == 1  # headers out, one piece


class Live:
    def __init__(self, pieces: list[bytes], forever: bool = False) -> None:
        self.pieces, self.forever, self.released = pieces, forever, 0

    async def chunks(self, offset, length, step):
        for piece in self.pieces:
            yield piece
        if self.forever:
            await asyncio.Event().wait()

    def release(self) -> None:
        self.released += 1


def test_a_live_stream_is_sent_and_released():
    live = Live([b"ab", b"cd"])
    complete, sent = run(Response(200, {}, StreamRange(live, 0, None)), {})
    assert complete and body_of(sent) == b"abcd" and live.released == 1
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_a_client_that_leaves_stops_the_stream_and_releases_it():
    live = Live([b"ab"], forever=True)
    gone = asyncio.Event()

    async def main():
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)
            if message.get("body") == b"ab":
                gone.set()

        async def receive() -> dict:
            await gone.wait()
            return {"type": "http.disconnect"}

        return await send_response(Response(200, {}, StreamRange(live, 0, None)),
                                   {"method": "GET"}, receive, send, Sending())

    assert asyncio.run(main()) is False
    assert live.released == 1


class Slices:
    """A live source that serves slices of DATA (reads may come in any order)."""

    def __init__(self) -> None:
        self.released = 0

    async def chunks(self, offset, length, step):
        yield DATA[offset:offset + length]

    def release(self) -> None:
        self.released += 1


def test_a_multipart_body_from_a_file_opens_it_once_and_sends_every_piece(local_file):
    opened = []

    def open_once():
        opened.append(1)
        return open(local_file, "rb")

    pieces = (b"[head 1]", FileRange(open_once, 70_000, 20_000, len(DATA), local_file),
              b"[head 2]", FileRange(open_once, 5, 3, len(DATA), local_file), b"[end]")
    complete, sent = run(Response(206, {}, Parts(pieces)), PATHSEND)
    assert complete and len(opened) == 1
    assert body_of(sent) == b"[head 1]" + DATA[70_000:90_000] + b"[head 2]" + DATA[5:8] + b"[end]"
    assert all(m["type"] != "http.response.pathsend" for m in sent)
    assert [m["more_body"] for m in sent[1:]][-1] is False
    assert all(m["more_body"] for m in sent[1:-1])


def test_a_multipart_body_from_a_live_source_is_sent_and_released_once():
    live = Slices()
    pieces = (b"<1>", StreamRange(live, 9, 4), b"<2>", StreamRange(live, 0, 2), b"<end>")
    complete, sent = run(Response(206, {}, Parts(pieces)), {})
    assert complete and body_of(sent) == b"<1>" + DATA[9:13] + b"<2>" + DATA[0:2] + b"<end>"
    assert live.released == 1


def test_a_multipart_body_whose_file_cannot_be_opened_is_a_500_before_any_header():
    def missing():
        raise FileNotFoundError("/nonexistent/x")

    body = Parts((b"h", FileRange(missing, 0, 1, 10, None), b"e"))
    _, sent = run(Response(206, {}, body), {})
    assert sent[0]["status"] == 500 and b"could not be read" in body_of(sent)


class Failing:
    """A live source that sends ``first``, then cannot go on (its download failed)."""

    def __init__(self, first: bytes) -> None:
        self.first, self.released = first, 0

    async def chunks(self, offset, length, step):
        yield self.first
        raise BodyFailed("its spool file /w/ondemand-x is gone; keep cleaners away")

    def release(self) -> None:
        self.released += 1


def _cut_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "pulp_content_asgi.serving.send" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("multipart", [False, True])
def test_a_live_body_that_fails_after_its_headers_is_cut_and_logged_once(caplog, multipart):
    """The client sees the cut (no last body message: the server closes the connection
    mid-body); the operator reads one line naming the request, the cause and the cure."""
    live = Failing(b"ab")
    body = Parts((b"<1>", StreamRange(live, 0, 4), b"<end>")) if multipart \
        else StreamRange(live, 0, None)
    with caplog.at_level(logging.WARNING, logger="pulp_content_asgi"):
        complete, sent = run(Response(206 if multipart else 200, {}, body),
                             {"path": "/pulp/content/d/s.bin"})
    assert complete is False and live.released == 1
    assert body_of(sent) == (b"<1>ab" if multipart else b"ab")
    assert all(m.get("more_body") for m in sent[1:])  # never ended: a cut
    assert _cut_warnings(caplog) == [
        "Cut short the answer to GET /pulp/content/d/s.bin after its headers were sent: "
        "its spool file /w/ondemand-x is gone; keep cleaners away."]


def test_a_stored_file_that_ends_early_is_cut_and_logged_once(local_file, caplog):
    """A file shorter than its artifact's size (damaged storage) is a cut the operator
    hears about, not a client that 'went away'."""
    body = file_range(local_file, 0, len(DATA) + 10)
    with caplog.at_level(logging.WARNING, logger="pulp_content_asgi"):
        complete, sent = run(Response(200, {}, body), {"path": "/pulp/content/d/f"})
    assert complete is False and body_of(sent) == DATA
    assert all(m.get("more_body") for m in sent[1:])
    (warning,) = _cut_warnings(caplog)
    assert f"{local_file} ended 10 bytes before the size its artifact records" in warning
