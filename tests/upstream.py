"""A real HTTP server on loopback standing in for upstream repositories.

It serves files from a dict, counts requests per path, and misbehaves on demand: wrong
bytes, truncated bodies, stalls, slow bodies and error statuses. A ``gate`` holds a
response until the test opens it, so tests wait on events instead of racing the clock.
"""

from __future__ import annotations

import asyncio
import collections
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
    #: Body bytes handed to the connection per path (a closed connection stops the count).
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
                await response.write(chunk)
                self.sent[path] += len(chunk)
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
