"""uvicorn's httptools protocol, with its transport buffering nothing past the kernel's.

uvicorn makes a response's next ``send`` wait while its transport buffers more than
asyncio's default high-water mark (64 KiB), and lets it go on at 16 KiB. A client that
reads slowly therefore held 64 KiB of queued chunks in the worker plus the chunk the app
was about to send, and a chunk stays in memory whole until its last byte has left. With
the high-water mark at 0 (and so the low one: asyncio's ``set_write_buffer_limits``),
a send waits until the kernel has taken everything before it: together with
serving/send.py, which reads the next chunk only then, a slow client holds one chunk.
A client that keeps up never waits (the kernel takes each write whole).

uvicorn takes the protocol class as its ``http`` setting (``uvicorn.Config(http=...)``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class UnbufferedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` whose transport pauses sends whenever it holds bytes."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=0)
