"""pulpcore-content with a test plugin's own aiohttp routes: a route only the legacy app
serves, for the legacy fallback's tests (tests/test_legacy_e2e.py).

Run as ``python -m tests.legacy_origin --bind 127.0.0.1:PORT --workers 1`` (the
``pulpcore-content`` command's flags). It adds routes to pulpcore's aiohttp ``app`` the way
a plugin's ``content`` module does (pulp_container's ``app.add_routes``), then starts
pulpcore-content's own gunicorn server, which adds the content routes as usual.

Routes, all under ``/pulp/legacy-test/``:

* ``bytes/{size}?id=X``: ``size`` bytes of :func:`pattern` with ``Content-Length``, an
  ETag and two ``Set-Cookie`` fields; ``events`` records ``X`` as ``complete`` or
  ``aborted`` (the client of this server, the proxy, went away);
* ``chunked/{size}``: the same bytes without ``Content-Length`` (chunked);
* ``cut/{size}``: half of them, chunked, then the connection is dropped;
* ``file``: aiohttp's ``FileResponse`` of ``$LEGACY_TEST_FILE`` (HEAD, Range, 304);
* ``gzip``: a gzip-encoded body (``Content-Encoding: gzip``);
* ``echo`` (any method): the request as received, as JSON (body as length and sha256);
* ``missing``: a 404 with the plugin's own body; ``fail``: an unhandled exception (500);
* ``events``: what happened to each ``bytes`` stream, as JSON.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os

from aiohttp import web
from pulpcore.content import app  # sets Django up, as pulpcore-content does

PREFIX = "/pulp/legacy-test/"
BLOCK = 64 * 1024
GZIPPED = gzip.compress(b"legacy plugin text\n" * 100, mtime=0)
events: dict[str, str] = {}


FILLER = bytes(range(256)) * (BLOCK // 256)


def block(index: int) -> bytes:
    """Block ``index`` of the test stream: its number, then a fixed filler (a block out
    of place changes the digest)."""
    return index.to_bytes(8, "big") + FILLER[8:]


def pattern(offset: int, length: int) -> bytes:
    """Bytes ``offset`` to ``offset + length`` of the test stream."""
    if length <= 0:
        return b""
    first, last = offset // BLOCK, (offset + length - 1) // BLOCK
    joined = b"".join(block(i) for i in range(first, last + 1))
    start = offset - first * BLOCK
    return joined[start:start + length]


async def _stream(request: web.Request, size: int, response: web.StreamResponse,
                  stop_at: int | None = None) -> None:
    await response.prepare(request)
    sent = 0
    while sent < (size if stop_at is None else stop_at):
        step = min(BLOCK, size - sent)
        await response.write(pattern(sent, step))
        sent += step


async def streamed(request: web.Request) -> web.StreamResponse:
    size = int(request.match_info["size"])
    key = request.query.get("id", "")
    response = web.StreamResponse(headers={"ETag": '"legacy-bytes"',
                                           "X-Legacy-Plugin": "bytes"})
    response.content_length = size
    response.content_type = "application/octet-stream"
    response.set_cookie("first", "1")
    response.set_cookie("second", "2")
    events[key] = "started"
    try:
        await _stream(request, size, response)
    except (ConnectionError, asyncio.CancelledError):
        events[key] = "aborted"
        raise
    await response.write_eof()
    events[key] = "complete"
    return response


async def chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.enable_chunked_encoding()
    await _stream(request, int(request.match_info["size"]), response)
    await response.write_eof()
    return response


async def cut(request: web.Request) -> web.StreamResponse:
    size = int(request.match_info["size"])
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.enable_chunked_encoding()
    await _stream(request, size, response, stop_at=size // 2)
    raise RuntimeError("the test plugin cuts this response on purpose")


async def served_file(request: web.Request) -> web.FileResponse:
    return web.FileResponse(os.environ["LEGACY_TEST_FILE"])


async def gzipped(request: web.Request) -> web.Response:
    return web.Response(body=GZIPPED, headers={"Content-Encoding": "gzip",
                                               "Content-Type": "text/plain"})


async def echo(request: web.Request) -> web.Response:
    digest, length = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(BLOCK):
        digest.update(chunk)
        length += len(chunk)
    return web.json_response({
        "method": request.method, "path_qs": request.raw_path,
        "headers": [[k.decode(), v.decode()] for k, v in request.raw_headers],
        "length": length, "sha256": digest.hexdigest()})


async def missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound(text="404: the test plugin has no such thing")


async def fail(request: web.Request) -> web.Response:
    raise RuntimeError("the test plugin fails on purpose")


async def stream_events(request: web.Request) -> web.Response:
    return web.json_response(events)


app.add_routes([
    web.get(PREFIX + "bytes/{size}", streamed),
    web.get(PREFIX + "chunked/{size}", chunked),
    web.get(PREFIX + "cut/{size}", cut),
    web.get(PREFIX + "file", served_file),
    web.get(PREFIX + "gzip", gzipped),
    web.route("*", PREFIX + "echo", echo),
    web.get(PREFIX + "missing", missing),
    web.get(PREFIX + "fail", fail),
    web.get(PREFIX + "events", stream_events),
])

if __name__ == "__main__":
    from pulpcore.content.entrypoint import main

    main()
