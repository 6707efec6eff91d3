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
other clients waited up to 19 s meanwhile; a chunked body's trailer section likewise (256
MiB: +340 MiB). Past ``max_head`` bytes fed to the parser without progress (no head
completed, no body byte) the request is answered ``431 Request Header Fields Too Large``
(RFC 6585, section 5) and the connection closed, as granian answers past its buffer and
aiohttp (pulpcore-content) answers 400 past 8 KiB a field; a trailer section past it
closes the connection (its request may be answered already).

uvicorn takes the protocol class as its ``http`` setting (``uvicorn.Config(http=...)``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pulp_content_asgi.server.runners import MAX_HEADER_BYTES


def _plain(status: bytes, text: str) -> bytes:
    """A whole ``text/plain`` response that closes the connection."""
    body = text.encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body)


#: What a header section past the bound is answered (RFC 6585, section 5).
REFUSED = _plain(b"431 Request Header Fields Too Large", "Request header fields too large\n")


#: Bytes handed to the parser at a time, so that the bound is checked between pieces: a
#: read (up to 256 KiB under uvloop) that ends a body and begins a head, or that holds a
#: trailer section, is counted piece by piece, not skipped whole. The piece that ends a
#: body and the one that completes a head go uncounted, so a head of up to
#: ``max_head`` + 2 pieces (72 KiB) can pass, never more.
PIECE = 4 * 1024


#: What a request that asks to upgrade and declares a body gets (see on_headers_complete).
UPGRADE_WITH_BODY = _plain(b"400 Bad Request",
                           "A request asking to upgrade the connection cannot carry a body "
                           "here; send it without Upgrade.\n")


class ContentHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` whose transport pauses sends whenever it holds bytes,
    and which refuses a request whose header or trailer section runs past
    :attr:`max_head` bytes."""

    #: Bytes of a request line and header fields (or of a chunked body's trailer fields)
    #: a request may send, as uvicorn's h11 protocol is given.
    max_head = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Bytes fed to the parser since it last made progress (a head completed, body
        #: bytes, a message completed): what it may be holding as head or trailer fields.
        self._unparsed = 0
        self._progress = 0
        #: A request asked to upgrade the connection (h2c, websocket: neither is taken).
        self._upgraded = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=0)

    def on_headers_complete(self) -> None:
        self._progress += 1
        if _asks_upgrade(self.headers) and _declares_body(self.headers):
            # httptools ends an upgrade request at its head and leaves the body unread,
            # so the app would get an empty body while the head declares one (the legacy
            # fallback then forwarded a Content-Length with no bytes, and the origin
            # waited for them). It cannot be framed here: refused before the app runs.
            self._upgraded = True
            self._answer_and_close(UPGRADE_WITH_BODY)
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._progress += 1
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._progress += 1
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._upgraded:
            return  # after a refused upgrade: neither a body nor a request (see below)
        # Piece by piece, so that at most one piece of a head or trailer section goes
        # uncounted: a piece in which the parser made progress may end with the start of
        # the next head, which is not known to be one yet. Chunk-size lines between body
        # bytes are counted too, but every chunk's bytes reset the count.
        for start in range(0, len(data), PIECE):
            progress = self._progress
            super().data_received(data[start:start + PIECE])
            if self.transport.is_closing():
                return
            if self.parser.should_upgrade():
                self._end_after_upgrade()
                return
            if self._progress != progress:
                self._unparsed = 0
                continue
            self._unparsed += min(PIECE, len(data) - start)
            if self._unparsed > self.max_head:
                self._refuse()
                return

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn's warns twice per request and advises installing a WebSocket library;
        # the content app takes no upgrade on purpose (runners.py: ws="none").
        self.logger.debug("Upgrade not supported; answering over HTTP/1.1, then closing.")

    def _end_after_upgrade(self) -> None:
        """A request asked to switch protocols (``Upgrade``: h2c, websocket), which the
        content app never does: it is answered over HTTP/1.1 and then the connection is
        closed, and nothing more is read from it. uvicorn drops the rest of the read in
        which the upgrade came and parses the next as a new request, so a request hidden
        in the upgrade request's body was answered (RFC 9110 section 7.8 lets a server
        ignore Upgrade; it must then not lose track of where the body ends)."""
        self._upgraded = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        else:
            self.transport.close()

    def _refuse(self) -> None:
        self._answer_and_close(REFUSED)

    def _answer_and_close(self, response: bytes) -> None:
        # Written like uvicorn's own 400 for a request it cannot parse; a response still
        # being sent on this connection (pipelining) is cut instead of interleaved.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(response)
        self.transport.close()


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The comma-separated tokens of every ``name`` field, lower-cased."""
    return [token.strip().lower() for field, value in headers if field == name
            for token in value.split(b",")]


def _asks_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    """``Upgrade`` with ``Connection: upgrade`` (RFC 9110 section 7.8), as httptools
    reads it (``headers``: uvicorn's, names lower-cased)."""
    return any(field == b"upgrade" for field, _ in headers) and b"upgrade" in _tokens(
        headers, b"connection")


def _declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """A ``Transfer-Encoding``, or a ``Content-Length`` other than 0."""
    return any(field == b"transfer-encoding" for field, _ in headers) or any(
        token != b"0" for token in _tokens(headers, b"content-length"))
