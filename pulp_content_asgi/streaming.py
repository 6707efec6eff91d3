"""Sending a prepared response over ASGI, with bounded memory and one disconnect policy.

File bodies are read in ``CONTENT_ASGI_CHUNK_SIZE`` steps on the loop's default executor
(never the ORM threads, so downloads cannot starve lookups) and each step waits for the
server's flow control, so a slow client holds one chunk, not the file. When the client
goes away the copy stops and the file is closed: a listener on ``receive`` cancels it,
since some servers (uvicorn) silently drop writes after a disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from pulp_content_asgi import conf
from pulp_content_asgi.ondemand.respond import SpoolBody
from pulp_content_asgi.render import FileBody, PathSend, Prepared

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def _start(prepared: Prepared, length: int | None) -> dict[str, Any]:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in prepared.headers.items()
               if k.lower() != "content-length"]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http.response.start", "status": prepared.status, "headers": headers}


async def _copy_file(body: FileBody, send: Send) -> None:
    loop = asyncio.get_running_loop()
    chunk_size = conf.current().chunk_size
    await loop.run_in_executor(None, body.file.seek, body.offset)
    remaining = body.length
    while remaining > 0:
        chunk = await loop.run_in_executor(None, body.file.read, min(chunk_size, remaining))
        if not chunk:
            raise OSError(f"file ended {remaining} bytes early")
        remaining -= len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})


async def _copy_spool(body: SpoolBody, send: Send) -> None:
    chunk_size = 4 * conf.current().chunk_size  # the downloader's own 1 MiB steps
    # Headers out now: granian holds them until the first body message, and would turn
    # a download that fails before any byte into its own 500 instead of a cut.
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    async for chunk in body.fetch.spool.read(body.offset, body.length, chunk_size, body.hold):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_response(prepared: Prepared, method: str, receive: Receive, send: Send) -> bool:
    """Send ``prepared``; False when the client left before the body was complete."""
    body = prepared.body
    declared = prepared.headers.get("Content-Length")
    if isinstance(body, FileBody):
        await send(_start(prepared, int(prepared.headers["Content-Length"])))
        return await _stream(_copy_file(body, send), body.file.close, receive)
    if isinstance(body, SpoolBody):
        # No Content-Length on a whole unverified stream: a cut-off stays detectable.
        await send(_start(prepared, int(declared) if declared is not None else None))
        return await _stream(_copy_spool(body, send), body.release, receive)
    if isinstance(body, PathSend):
        await send(_start(prepared, int(prepared.headers["Content-Length"])))
        await send({"type": "http.response.pathsend", "path": body.path})
        return True
    if not isinstance(body, bytes):  # no body: HEAD, 304, HEAD of a download
        await send(_start(prepared, int(declared) if declared is not None else None))
        await send({"type": "http.response.body", "body": b""})
        return True
    await send(_start(prepared, int(declared) if declared is not None else len(body)))
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
    return True


async def _stream(copying: Awaitable[None], cleanup: Callable[[], None], receive: Receive
                  ) -> bool:
    """Run ``copying`` until done or the client leaves; then ``cleanup``."""
    copy = asyncio.ensure_future(copying)
    watch = asyncio.ensure_future(_until_disconnect(receive))
    try:
        await asyncio.wait((copy, watch), return_when=asyncio.FIRST_COMPLETED)
        if copy.done():
            copy.result()
            return True
        copy.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await copy
        return False
    finally:
        watch.cancel()
        cleanup()
