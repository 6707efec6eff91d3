"""The legacy fallback: the paths nothing here serves, forwarded to a running
pulpcore-content (``CONTENT_ASGI_LEGACY_ORIGIN``), so one front door keeps working while a
deployment moves plugin routes over (docs/migration.md).

A gateway in the sense of RFC 9110 §3.7, written on aiohttp's client (this is the one
package that imports aiohttp): the request goes upstream as the client sent it (method,
raw path and query, body streamed, headers less the hop-by-hop ones, ``Via`` and
``X-Forwarded-*`` added: :mod:`pulp_content_asgi.protocol.forwarding`) and the answer
comes back with its status, every end-to-end header and its body bytes unchanged
(``auto_decompress`` off, redirects not followed, no cookie jar).

Memory stays bounded in both directions: the upstream body is read one chunk at a time
and the next read waits until the server took the previous chunk (ASGI ``send`` applies
the client's flow control), so aiohttp stops reading the socket and pulpcore-content
stops writing while the client is slow; the request body is pulled from ``receive`` as
aiohttp writes it. A client that leaves closes the upstream connection; an unreachable
upstream is a 502 naming the origin; one that does not answer within
``CONTENT_ASGI_LEGACY_TIMEOUT`` a 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from django.core.exceptions import ImproperlyConfigured
from yarl import URL

from pulp_content_asgi.conf import AppSettings
from pulp_content_asgi.protocol import forwarding
from pulp_content_asgi.serving.response import Response, text

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
SETTING = "CONTENT_ASGI_LEGACY_ORIGIN"
#: Statuses whose responses have no body (RFC 9110 §6.4.1), like the answer to HEAD.
_NO_BODY = (204, 304)
#: Request headers aiohttp would invent when the client did not send them.
_NOT_INVENTED = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
#: Response header lines longer than aiohttp's 8 KiB default (pulpcore-content itself
#: accepts 16 KiB request fields; a plugin may echo long values).
_MAX_FIELD = 64 * 1024


@dataclass(frozen=True)
class Forwarded:
    """What happened to one forwarded request, for the access log and metrics.

    ``response`` holds the status and headers sent to the client (no body);
    ``complete`` is False when either side stopped before the body's end.
    """

    response: Response
    complete: bool


class _ClientLeft(Exception):
    """The client disconnected while its request body was being forwarded."""


def origin_from_setting(value: str) -> str:
    """``value`` as ``scheme://host[:port]``; ImproperlyConfigured naming the setting
    unless it is an http(s) origin without path, query or credentials."""
    parts = urlsplit(value.strip())
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or parts.path not in ("", "/") or parts.username):
        raise ImproperlyConfigured(
            f"{SETTING} must be the origin of a running pulpcore-content, such as "
            f"'http://127.0.0.1:24817' (scheme, host and port only), not {value!r}.")
    return f"{parts.scheme}://{parts.netloc}"


class _Downstream:
    """The client's side of one request: its body, then its departure.

    ASGI's ``receive`` yields the body's messages and then ``http.disconnect``; one reader
    at a time may call it, so the departure watch starts only after the body was read.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._body_read = asyncio.Event()
        self.gone = False

    async def body(self) -> AsyncIterator[bytes]:
        try:
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self.gone = True
                    raise _ClientLeft
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body", False):
                    return
        finally:
            self._body_read.set()

    def without_body(self) -> None:
        self._body_read.set()

    async def departure(self) -> None:
        """Return when the client has disconnected."""
        await self._body_read.wait()
        while not self.gone:
            if (await self._receive())["type"] == "http.disconnect":
                self.gone = True


class LegacyApp:
    """An ASGI callable forwarding every HTTP request to pulpcore-content at ``origin``.

    ``timeout`` (seconds) bounds connecting and each wait for upstream bytes (aiohttp's
    ``sock_connect``/``sock_read``; a slow client pauses reading and so the clock);
    ``chunk_size`` is the most body bytes held per response. Calls return a
    :class:`Forwarded` record; the aiohttp session is made in the worker's event loop on
    the first request and closed by :meth:`close` (lifespan shutdown).
    """

    def __init__(self, origin: str, timeout: float, chunk_size: int) -> None:
        self.origin = origin_from_setting(origin)
        self.timeout = timeout
        self.chunk_size = chunk_size
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # No pool limit: a slow client holds its upstream connection, as behind
                # nginx, and must not make other requests queue for one.
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout,
                                              sock_read=self.timeout),
                auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=_NOT_INVENTED, read_bufsize=self.chunk_size,
                max_field_size=_MAX_FIELD, max_line_size=_MAX_FIELD)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def url(self, scope: dict[str, Any]) -> URL:
        """The upstream URL: the origin plus the request target exactly as sent."""
        target = (scope.get("raw_path") or quote(scope["path"]).encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        return URL(self.origin + target, encoded=True)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send
                       ) -> Forwarded:
        downstream = _Downstream(receive)
        headers = [(k.decode("latin-1"), v.decode("latin-1"))
                   for k, v in forwarding.request_headers(scope)]
        body: AsyncIterator[bytes] | None = None
        if forwarding.has_body(scope.get("headers") or ()):
            body = downstream.body()
        else:
            downstream.without_body()
        watch = asyncio.ensure_future(downstream.departure())
        fetch = asyncio.ensure_future(self.session().request(
            scope["method"], self.url(scope), headers=headers, data=body,
            allow_redirects=False))
        upstream: aiohttp.ClientResponse | None = None
        try:
            await asyncio.wait((fetch, watch), return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done() or downstream.gone:
                return Forwarded(text(499, "Client Closed Request"), False)
            try:
                upstream = fetch.result()
            except (TimeoutError, aiohttp.ClientError) as exc:
                return await self._failed(scope, send, exc)
            return await self._relay(scope, upstream, send, watch)
        finally:
            watch.cancel()
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(BaseException):
                    await fetch
            if upstream is not None:
                # A response read to its end went back to the pool by itself; one cut
                # short must not: closing it closes its connection.
                upstream.close()

    async def _relay(self, scope: dict[str, Any], upstream: aiohttp.ClientResponse,
                     send: Send, watch: asyncio.Future[None]) -> Forwarded:
        headers = forwarding.response_headers(upstream.raw_headers)
        sent = Response(upstream.status, {k.decode("latin-1"): v.decode("latin-1")
                                          for k, v in headers})
        try:
            await send({"type": "http.response.start", "status": upstream.status,
                        "headers": headers})
            if scope["method"] == "HEAD" or upstream.status in _NO_BODY:
                await send({"type": "http.response.body", "body": b""})
                return Forwarded(sent, True)
        except OSError as exc:  # the server could not write to the client
            log.info("Client went away during %s: %s", scope.get("path"), exc)
            return Forwarded(sent, False)
        copy = asyncio.ensure_future(self._copy(upstream, send))
        try:
            await asyncio.wait((copy, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not copy.done():
                copy.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await copy
        if not copy.done() or copy.cancelled():
            return Forwarded(sent, False)  # the client left
        try:
            copy.result()
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Headers are out: all the client can be told is a cut connection.
            log.warning("pulpcore-content at %s (%s) stopped sending %s %s: %s",
                        self.origin, SETTING, scope["method"], scope.get("path"), exc)
            return Forwarded(sent, False)
        except OSError as exc:  # the server could not write to the client
            log.info("Client went away during %s: %s", scope.get("path"), exc)
            return Forwarded(sent, False)
        return Forwarded(sent, True)

    async def _copy(self, upstream: aiohttp.ClientResponse, send: Send) -> None:
        # Headers out now: granian holds them until the first body message, and would
        # turn an upstream that fails before any byte into its own 500 instead of a cut.
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        # One chunk in flight: the next read waits for ``send`` to take this one.
        async for chunk in upstream.content.iter_chunked(self.chunk_size):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _failed(self, scope: dict[str, Any], send: Send, exc: BaseException
                      ) -> Forwarded:
        """502 (unreachable, refused, cut before answering) or 504 (no answer in time),
        logged with what the operator should check."""
        from pulp_content_asgi.serving.send import Sending, send_response

        timed_out = isinstance(exc, TimeoutError)
        status = 504 if timed_out else 502
        what = (f"did not answer within {self.timeout:g} s (CONTENT_ASGI_LEGACY_TIMEOUT)"
                if timed_out else f"could not be reached ({exc or type(exc).__name__})")
        message = (f"The legacy content app (pulpcore-content at {self.origin}, {SETTING}) "
                   f"{what}; check that it runs and answers there.")
        log.error("%s %s: %s", scope["method"], scope.get("path"), message)
        response = text(status, message)
        await send_response(response, scope, _no_receive, send, Sending())
        return Forwarded(response, True)


def legacy_fallback(ours: AppSettings) -> LegacyApp | None:
    """The legacy fallback when ``CONTENT_ASGI_LEGACY_ORIGIN`` is set, else None."""
    if not ours.legacy_origin:
        return None
    return LegacyApp(ours.legacy_origin, ours.legacy_timeout, ours.chunk_size)


async def _no_receive() -> dict[str, Any]:
    raise RuntimeError("a bytes body is sent without reading the request")
