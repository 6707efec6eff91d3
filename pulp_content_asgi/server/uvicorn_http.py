"""uvicorn's httptools protocol, with its transport buffering nothing past the kernel's
and a bound on a request's header section.

uvicorn makes a response's next ``send`` wait while its transport buffers more than
asyncio's default high-water mark (64 KiB), and lets it go on at 16 KiB. A client that
reads slowly therefore held 64 KiB of queued chunks in the worker plus the chunk the app
was about to send, and a chunk stays in memory whole until its last byte has left. With
the high-water mark at 0 (and so the low one: asyncio's ``set_write_buffer_limits``),
a send waits until the kernel has taken everything before it: together with
serving/send.py, which reads the next chunk only then, a slow client holds one chunk.
A client that keeps up never waits (the kernel takes each write whole).

uvicorn bounds request heads only with its h11 protocol (``h11_max_incomplete_event_size``);
with httptools a header section of any size was read into memory and served: a 300 MiB
header was answered 200 after 181 s with the worker's RSS up by 290 MiB, and the worker's
other clients waited up to 19 s meanwhile. Past ``max_head`` bytes the request is
answered ``431 Request Header Fields Too Large`` (RFC 6585, section 5) and the
connection closed, as granian answers past its buffer and aiohttp (pulpcore-content)
answers 400 past 8 KiB a field.

uvicorn takes the protocol class as its ``http`` setting (``uvicorn.Config(http=...)``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pulp_content_asgi.server.runners import MAX_HEADER_BYTES

#: What a header section past the bound is answered (RFC 6585, section 5).
REFUSED = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
           b"content-type: text/plain; charset=utf-8\r\n"
           b"connection: close\r\n"
           b"content-length: 32\r\n"
           b"\r\n"
           b"Request header fields too large\n")


class ContentHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` whose transport pauses sends whenever it holds bytes,
    and which refuses a request head longer than :attr:`max_head` bytes."""

    #: Bytes of a request line and header fields a request may send (as uvicorn's h11
    #: protocol is given). The parser holds at most this plus one read (256 KiB).
    max_head = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Bytes fed to the parser since the current request's head began; whether the
        #: parser is in a head (not in a body); heads completed on this connection.
        self._head = 0
        self._in_head = True
        self._heads = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=0)

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._in_head, self._head = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def data_received(self, data: bytes) -> None:
        # Counted after parsing, and only a read that began and ended in one head and
        # completed none: such a read was all head. A read that completed a head may
        # carry a body or pipelined requests, and one that ended a body may begin the
        # next head: those bytes are not counted (at most one read of them). Bodies are
        # the app's to bound.
        heads, was_in_head = self._heads, self._in_head
        super().data_received(data)
        if self.transport.is_closing() or self._heads != heads or not (
                was_in_head and self._in_head):
            return
        self._head += len(data)
        if self._head > self.max_head:
            self._refuse()

    def _refuse(self) -> None:
        # Written like uvicorn's own 400 for a request it cannot parse; a response still
        # being sent on this connection (pipelining) is cut instead of interleaved.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(REFUSED)
        self.transport.close()
