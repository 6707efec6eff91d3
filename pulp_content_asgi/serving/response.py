"""The response value every path produces, and the one text format of error bodies.

A :class:`Response` is built once and never patched: facts that metrics and the access
log need (the cache outcome, the artifact size) are typed fields, and per-request headers
(``X-PULP-CACHE``, ``Correlation-ID``) are written from them when the response is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import IO, Protocol

from pulp_content_asgi.protocol import cache_control

TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class FileRange:
    """``length`` bytes from ``offset`` of a file of ``size`` bytes.

    ``open`` gives a binary file object and may do I/O (local disk, object storage), so the
    sender calls it off the event loop; ``path`` is set when the file is on this host, which
    lets a server that offers ``http.response.pathsend`` send a whole file itself.
    """

    open: Callable[[], IO[bytes]]
    offset: int
    length: int
    size: int
    path: str | None = None

    @property
    def whole(self) -> bool:
        return self.offset == 0 and self.length == self.size


class BodyFailed(Exception):
    """The rest of a body cannot be read once its headers are out (a live download failed
    or its spool file went, a stored file ended early): the response is cut short. The
    message says why and what the operator can do; the sender logs it once."""


class LiveSource(Protocol):
    """Bytes that arrive while they are sent (an on-demand download in progress)."""

    def chunks(self, offset: int, length: int | None, step: int) -> AsyncIterator[bytes]:
        """``length`` bytes (None: to the end) from ``offset``, in steps of about ``step``;
        raises :class:`BodyFailed` when the rest cannot come."""
        ...

    def release(self) -> None:
        """This response no longer reads the source (sent, cut, or never started)."""
        ...


@dataclass(frozen=True)
class StreamRange:
    """``length`` bytes (None: to the end) from ``offset`` of a live source."""

    source: LiveSource
    offset: int
    length: int | None


@dataclass(frozen=True)
class Parts:
    """A ``multipart/byteranges`` body (RFC 9110 §14.6): part headers and closing as bytes,
    between ranges of one file or one live source, sent in order."""

    pieces: tuple[bytes | FileRange | StreamRange, ...]

    @property
    def live(self) -> LiveSource | None:
        """The live source the ranges are read from, if they are."""
        return next((p.source for p in self.pieces if isinstance(p, StreamRange)), None)


Body = bytes | FileRange | StreamRange | Parts | None


def reads_live(body: Body) -> bool:
    """Whether sending ``body`` reads a live source (which the sender then releases)."""
    return isinstance(body, StreamRange) or (isinstance(body, Parts) and body.live is not None)


@dataclass(frozen=True)
class Response:
    """A response ready to send: status, headers, body and what it says about itself.

    ``headers`` carries ``Content-Length`` whenever the length is known in advance (a live
    stream sent whole to an HTTP/1.1 client has none, so a cut stays detectable);
    ``cache`` is ``"HIT"``/``"MISS"`` for responses the response cache answered or
    stored; ``artifact_size`` is the size of the artifact the response is about, as
    pulpcore counts it for ``artifacts.size.counter``.
    """

    status: int
    headers: Mapping[str, str]
    body: Body = None
    cache: str | None = None
    artifact_size: int | None = None

    def with_cache(self, outcome: str | None) -> Response:
        return replace(self, cache=outcome)


def text(status: int, message: str | None = None,
         headers: Mapping[str, str] | None = None) -> Response:
    """aiohttp's text format (``"404: Not Found"``): ASGI has no custom reason phrases, so
    the reason a client should read goes in the body, as pulpcore-content's does."""
    reason = message if message is not None else HTTPStatus(status).phrase
    return Response(status, {**(headers or {}), "Content-Type": TEXT},
                    f"{status}: {reason}".encode())


def redirect(location: str, status: int = 301, headers: Mapping[str, str] | None = None
             ) -> Response:
    """A redirect with aiohttp's text body; ``location`` is sent as given."""
    return text(status, None, {**(headers or {}), "Location": location})


def private(response: Response) -> Response:
    """``response`` for the one client it answers: its ``Cache-Control`` says ``private``
    (merged into what it said, :func:`~..protocol.cache_control.private`), so no shared
    cache stores it. Every answer of a guarded distribution goes out this way."""
    return replace(response, headers=cache_control.private_headers(response.headers))
