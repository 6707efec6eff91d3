"""Writing a response over ASGI, with bounded memory and one disconnect policy.

File bodies are read in ``chunk_size`` steps on the loop's default executor (never the
ORM threads, so downloads cannot starve lookups), and the next step is read only once the
server has passed the previous one on (:func:`_passed_on`): a client that reads slowly
holds one chunk in the worker, never a queue of them (issue #18; bench/slowmem.py
measures what a slow reader costs). A whole local file goes to a server that offers
``http.response.pathsend`` (granian) to send itself; that choice is made here, at send
time, for every path alike. When the client goes away the copy stops and the file or
stream is released: a listener on ``receive`` cancels it, since some servers (uvicorn)
silently drop writes after a disconnect.

A body that fails after its headers went out (:class:`~.response.BodyFailed`: a live
download failed or lost its spool file, a stored file ended early) is logged here, once,
with its cause and what the operator can do, and the response is left incomplete: the
server then closes the connection, so the client sees the cut (a chunked body without
its last chunk, or fewer bytes than its ``Content-Length``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from pulp_content_asgi.serving.response import (
    BodyFailed,
    FileRange,
    Parts,
    Response,
    StreamRange,
    text,
)

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
PATHSEND = "http.response.pathsend"
#: Bytes read from a live download's spool per step: pulpcore's downloaders hand data
#: over in pieces of up to 1 MiB, so larger steps would only wait for more.
STREAM_STEP = 1024 * 1024


@dataclass(frozen=True)
class Sending:
    """How this server and these settings send bodies (built once per app)."""

    chunk_size: int = 256 * 1024
    pathsend: bool = True

    def offers_pathsend(self, scope: Mapping[str, Any]) -> bool:
        return self.pathsend and PATHSEND in (scope.get("extensions") or {})


def _start(response: Response, extra: Mapping[str, str]) -> dict[str, Any]:
    # ASGI wants lower-case header names.
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
               for k, v in response.headers.items()]
    if isinstance(response.body, bytes) and not any(
            k.lower() == "content-length" for k in response.headers):
        headers.append((b"content-length", str(len(response.body)).encode()))
    if response.cache is not None:
        headers.append((b"x-pulp-cache", response.cache.encode()))
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    return {"type": "http.response.start", "status": response.status, "headers": headers}


async def _passed_on(send: Send, chunk: bytes) -> None:
    """Send ``chunk`` (more body follows) and return once the server has passed it on.

    The empty body message that follows it is answered only then: uvicorn waits for its
    transport to drain before any send (its buffer limit is 0 here:
    server/uvicorn_http.py), and granian accepts a body message only once hyper has taken
    the one before (a channel of one; hyper stops taking them while it holds
    ``max_buffer_size`` bytes: server/runners.py). Servers skip empty body messages.
    """
    await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": True})


async def _copy_file(handle: IO[bytes], body: FileRange, chunk_size: int, send: Send,
                     more: bool = False) -> None:
    """Send the range; ``more`` says whether other body messages follow it."""
    loop = asyncio.get_running_loop()
    what = body.path or "the object-storage file"
    remaining = body.length
    try:
        await loop.run_in_executor(None, handle.seek, body.offset)
    except OSError as exc:
        raise BodyFailed(f"reading {what} failed ({exc}); check the storage it lives "
                         "in") from exc
    while remaining > 0:
        try:
            chunk = await loop.run_in_executor(None, handle.read, min(chunk_size, remaining))
        except OSError as exc:
            raise BodyFailed(f"reading {what} failed ({exc}); check the storage it lives "
                             "in") from exc
        if not chunk:
            raise BodyFailed(f"{what} ended {remaining} bytes before the size its artifact "
                             "records: the stored file is damaged; check it in the storage")
        remaining -= len(chunk)
        if not more and remaining == 0:
            await send({"type": "http.response.body", "body": chunk, "more_body": False})
            return
        await _passed_on(send, chunk)
        del chunk  # passed on: not held while the next one is read


async def _copy_stream(body: StreamRange, chunk_size: int, send: Send) -> None:
    # Headers out now: granian holds them until the first body message, and would turn
    # a download that fails before any byte into its own 500 instead of a cut.
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    async for chunk in body.source.chunks(body.offset, body.length, chunk_size):
        await _passed_on(send, chunk)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _copy_parts(body: Parts, handle: IO[bytes] | None, chunk_size: int, send: Send
                      ) -> None:
    """A multipart body: each piece in turn, every range of a file read from ``handle``."""
    for piece in body.pieces:
        if isinstance(piece, bytes):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        elif isinstance(piece, FileRange):
            assert handle is not None
            await _copy_file(handle, piece, chunk_size, send, more=True)
        else:
            async for chunk in piece.source.chunks(piece.offset, piece.length, STREAM_STEP):
                await _passed_on(send, chunk)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def until_disconnect(receive: Receive) -> None:
    """Return once the client has gone (``http.disconnect``); other messages (the empty
    request body of a GET) are skipped. Cancel it when done waiting: every ASGI server
    takes a cancelled ``receive`` (Starlette's streaming responses do the same)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _open(body: FileRange) -> IO[bytes] | None:
    try:
        return await asyncio.get_running_loop().run_in_executor(None, body.open)
    except OSError as exc:
        log.error("Could not open %s to send it (%s); check the storage it lives in.",
                  body.path or "an object-storage file", exc)
        return None


async def send_response(response: Response, scope: Mapping[str, Any], receive: Receive,
                        send: Send, how: Sending, extra: Mapping[str, str] | None = None
                        ) -> bool:
    """Send ``response``; False when the client left before the body was complete.

    ``extra`` headers are per-request ones the response does not carry (Correlation-ID).
    """
    extra = extra or {}
    body = response.body
    if isinstance(body, FileRange):
        if body.whole and body.path is not None and how.offers_pathsend(scope):
            await send(_start(response, extra))
            await send({"type": PATHSEND, "path": body.path})
            return True
        handle = await _open(body)
        if handle is None:
            return await send_response(
                text(500, "The file could not be read from storage; the server log has "
                          "the details."), scope, receive, send, how, extra)
        await send(_start(response, extra))
        return await _stream(_copy_file(handle, body, how.chunk_size, send), handle.close,
                             receive, scope)
    if isinstance(body, StreamRange):
        await send(_start(response, extra))
        return await _stream(_copy_stream(body, STREAM_STEP, send),
                             body.source.release, receive, scope)
    if isinstance(body, Parts):
        return await _send_parts(response, body, scope, receive, send, how, extra)
    await send(_start(response, extra))
    head = scope.get("method") == "HEAD"
    await send({"type": "http.response.body", "body": b"" if head or body is None else body})
    return True


async def _send_parts(response: Response, body: Parts, scope: Mapping[str, Any],
                      receive: Receive, send: Send, how: Sending, extra: Mapping[str, str]
                      ) -> bool:
    """A multipart body: the file is opened once, before the headers (so a file that
    cannot be opened is still a clean 500), and released once at the end."""
    files = [p for p in body.pieces if isinstance(p, FileRange)]
    handle = await _open(files[0]) if files else None
    if files and handle is None:
        return await send_response(
            text(500, "The file could not be read from storage; the server log has "
                      "the details."), scope, receive, send, how, extra)
    live = body.live

    def cleanup() -> None:
        if handle is not None:
            handle.close()
        if live is not None:
            live.release()

    await send(_start(response, extra))
    return await _stream(_copy_parts(body, handle, how.chunk_size, send), cleanup, receive,
                         scope)


async def _stream(copying: Awaitable[None], cleanup: Callable[[], None], receive: Receive,
                  scope: Mapping[str, Any]) -> bool:
    """Run ``copying`` until done or the client leaves; then ``cleanup``. False when the
    body is incomplete: the client left, or the body failed (logged here)."""
    copy = asyncio.ensure_future(copying)
    watch = asyncio.ensure_future(until_disconnect(receive))
    try:
        await asyncio.wait((copy, watch), return_when=asyncio.FIRST_COMPLETED)
        if copy.done():
            try:
                copy.result()
            except BodyFailed as exc:
                log.warning("Cut short the answer to %s %s after its headers were sent: %s.",
                            scope.get("method"), scope.get("path"), exc)
                return False
            return True
        copy.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await copy
        return False
    finally:
        watch.cancel()
        cleanup()
