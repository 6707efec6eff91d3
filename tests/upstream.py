"""A real HTTP server on loopback standing in for upstream repositories.

It serves files from a dict, counts requests per path, and misbehaves on demand: wrong
bytes, truncated bodies, stalls, slow bodies and error statuses. A ``gate`` holds a
response until the test opens it, so tests wait on events instead of racing the clock.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import threading
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Behaviour:
    status: int = 200
    corrupt: bool = False
    truncate_at: int | None = None
    delay: float = 0.0  # before the headers
    chunk_delay: float = 0.0  # between 64 KiB chunks
    content_type: str | None = None
    # Held before the headers until set (a threading.Event the test sets).
    gate: threading.Event | None = None
    # Held after this many body bytes until set.
    gate_after: int | None = None
    # Extra response headers (validators, a Content-Encoding, cookies...): sent as they
    # are, the body is never encoded by this server.
    headers: dict[str, str] = field(default_factory=dict)


async def _opened(gate: threading.Event, request: web.Request | None = None) -> None:
    """Wait (without blocking the loop) until the test sets ``gate``; stop waiting when
    ``request``'s client hangs up meanwhile (ConnectionResetError)."""
    while not gate.is_set():
        if request is not None and request.transport is None:
            raise ConnectionResetError("the client hung up while the response was held")
        await asyncio.sleep(0.02)


@dataclass
class Upstream:
    files: dict[str, bytes] = field(default_factory=dict)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    hits: collections.Counter = field(default_factory=collections.Counter)
    #: The headers of the last request for each path.
    asked: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Body bytes handed to the connection per path, counted as each 64 KiB write begins
    #: (a closed connection stops the count; a held response counts what came before).
    sent: collections.Counter = field(default_factory=collections.Counter)
    #: Responses per path whose client (the content app's downloader) hung up before the
    #: body was complete.
    hung_up: collections.Counter = field(default_factory=collections.Counter)
    base: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.hits[path] += 1
        self.asked[path] = dict(request.headers)
        how = self.behaviour.get(path, Behaviour())
        if how.delay:
            await asyncio.sleep(how.delay)
        if how.gate is not None and how.gate_after is None:
            await _opened(how.gate)
        if path not in self.files or how.status != 200:
            status = how.status if how.status != 200 else 404
            return web.Response(status=status, text=f"upstream says {status}")
        body = self.files[path]
        if how.corrupt:
            body = bytes(b ^ 0xFF for b in body[:16]) + body[16:]
        response = web.StreamResponse(headers={"Content-Length": str(len(body)), **how.headers})
        response.content_type = how.content_type or "application/octet-stream"
        await response.prepare(request)
        limit = len(body) if how.truncate_at is None else how.truncate_at
        try:
            for start in range(0, limit, 65536):
                if how.gate is not None and how.gate_after is not None \
                        and start >= how.gate_after:
                    await _opened(how.gate, request)
                chunk = body[start:min(start + 65536, limit)]
                # Counted as the write begins: a chunk handed over is counted even when the
                # connection closes while aiohttp waits for it to drain.
                self.sent[path] += len(chunk)
                await response.write(chunk)
                if how.chunk_delay:
                    await asyncio.sleep(how.chunk_delay)
        except (ConnectionError, asyncio.CancelledError):
            self.hung_up[path] += 1
            raise
        if how.truncate_at is not None:
            request.transport.close()  # type: ignore[union-attr]
            return response
        await response.write_eof()
        return response

    def start(self) -> Upstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/{path:.+}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.base = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)


# -- a raw-socket upstream: framing faults aiohttp's server will not produce ------------

@dataclass
class Raw:
    """How :class:`RawUpstream` answers one path, byte by byte.

    The head is ``status`` with ``headers``; then the body (the file, or ``body`` when
    given: an HTML error page) framed as asked: ``length`` is the ``Content-Length`` to
    declare (None: the true one; ``chunked=True`` sends none and chunks the body). Only the
    first ``send`` bytes of it go out (None: all), ``trickle`` seconds apart one byte at a
    time when set, and the connection then ends as ``end`` says: ``"finish"`` (kept
    open, as a complete response leaves it), ``"close"`` (a clean FIN), ``"reset"`` (an
    RST: SO_LINGER 0) or ``"stall"`` (nothing more, ever, until the client gives up).
    A redirect is a status with a ``Location`` header and an empty ``body``.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    length: int | None = None
    chunked: bool = False
    send: int | None = None
    trickle: float | None = None
    end: str = "finish"
    #: Stall before the head (the upstream accepted the connection and says nothing).
    silent: bool = False
    #: The query the request must carry byte for byte (a signed URL); else 403.
    query: str | None = None
    #: Misbehave for the first ``times`` requests of the path only (None: always).
    times: int | None = None


@dataclass
class RawUpstream:
    """An HTTP/1.1 server on a plain asyncio socket: serves ``files`` like
    :class:`Upstream` (200, ``Content-Length``, or 404), or answers a path as its
    :class:`Raw` in ``behaviour`` says. Counts requests per path (``hits``), keeps every
    request target exactly as received (``targets``) and counts connections that are still
    open (``open``: a stalled upstream's client must eventually give up)."""

    files: dict[str, bytes] = field(default_factory=dict)
    behaviour: dict[str, Raw] = field(default_factory=dict)
    hits: collections.Counter = field(default_factory=collections.Counter)
    targets: list[str] = field(default_factory=list)
    open: int = 0
    base: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.AbstractServer | None = None

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection stays open for the next."""
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
        self.targets.append(target)
        path = target.split("?", 1)[0].lstrip("/")
        self.hits[path] += 1
        how = self.behaviour.get(path)
        if how is not None and how.times is not None and self.hits[path] > how.times:
            how = None
        if how is None:
            blob = self.files.get(path)
            status, body = (200, blob) if blob is not None else (404, b"not here")
            how = Raw(status=status, body=body)
        if how.query is not None and target.partition("?")[2] != how.query:
            how = Raw(status=403, body=b"SignatureDoesNotMatch: " + target.encode("latin-1"))
        if how.silent:
            await reader.read()  # says nothing until the client hangs up
            return False
        body = how.body if how.body is not None else self.files.get(path, b"")
        lines = [f"HTTP/1.1 {how.status} X"]
        headers = {"Content-Type": "application/octet-stream", **how.headers}
        if how.chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(len(body) if how.length is None else how.length)
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        sent = body[:how.send] if how.send is not None else body
        step = 1 if how.trickle else 65536
        for start in range(0, len(sent), step):
            piece = sent[start:start + step]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if how.chunked else piece)
            await writer.drain()
            if how.trickle:
                await asyncio.sleep(how.trickle)
        if how.end == "stall":
            await reader.read()  # nothing more until the client hangs up
            return False
        if how.end == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if how.end == "close":
            await writer.drain()
            return False
        if how.chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return True

    def start(self) -> RawUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0))
            port = self._server.sockets[0].getsockname()[1]
            self.base = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listener and every connection (stalled ones included), then the loop."""
        if self._loop is None or self._server is None:
            return
        server = self._server

        async def shutdown() -> None:
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
