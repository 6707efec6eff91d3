"""pulpcore's downloaders are aiohttp clients: which of their errors mean "try the next
remote", what an upstream refusal says to the client, and fetching an artifact's bytes
exactly as the upstream stores them."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientConnectionError, ClientResponseError
from multidict import CIMultiDict
from pulpcore.exceptions import UnsupportedDigestValidationError

#: Failures after which the next remote artifact may be tried, if no byte was sent yet.
SKIPPABLE: tuple[type[BaseException], ...] = (
    ClientResponseError, ClientConnectionError, UnsupportedDigestValidationError,
    asyncio.TimeoutError)


def upstream_refusal(exc: BaseException | None) -> tuple[int, str] | None:
    """The upstream's HTTP status and message when ``exc`` is one, else None."""
    if isinstance(exc, ClientResponseError):
        return exc.status, exc.message
    return None


class RawSession:
    """A downloader's aiohttp session that fetches ``url`` as the bytes the upstream
    stores: ``Accept-Encoding: identity`` and no transparent decoding.

    A remote artifact's digests describe the file (``Packages.gz``, ``primary.xml.gz``).
    aiohttp asks for ``gzip, deflate`` and inflates what comes back, so an upstream that
    labels such a file ``Content-Encoding: gzip`` (misconfigured S3 buckets and CDNs do,
    and they send it whatever the request asks) handed the downloader the inflated bytes:
    the digest check failed, and the file could never be served. Through this session the
    bytes fetched are the bytes whose digest the remote promised, which are then stored
    and served (RFC 9110 §8.4: the coding is part of the representation's bytes).

    Every other request the downloader makes (tokens, mirror lists) and every other
    attribute go to the session unchanged.
    """

    def __init__(self, session: Any, url: str) -> None:
        self._session = session
        self._url = url

    def get(self, url: Any, **kwargs: Any) -> Any:
        if str(url) == self._url:
            headers = CIMultiDict(kwargs.get("headers") or {})
            headers["Accept-Encoding"] = "identity"
            kwargs["headers"] = headers
            kwargs["auto_decompress"] = False
        return self._session.get(url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def fetch_raw(downloader: Any) -> None:
    """Make ``downloader`` (pulpcore's ``HttpDownloader`` or a plugin's subclass) fetch its
    URL as :class:`RawSession` does; downloaders without an aiohttp session (``file://``)
    read files as they are anyway."""
    session = getattr(downloader, "session", None)
    if session is not None and not isinstance(session, RawSession):
        downloader.session = RawSession(session, str(downloader.url))
