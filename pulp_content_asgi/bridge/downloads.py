"""pulpcore's downloaders are aiohttp clients: which of their errors mean "try the next
remote", what an upstream refusal says to the client, and fetching an artifact's bytes
exactly as the upstream stores them."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import ClientConnectionError, ClientPayloadError, ClientResponseError
from multidict import CIMultiDict
from pulpcore.exceptions import TimeoutException, UnsupportedDigestValidationError
from yarl import URL

#: Failures of the upstream (its answer, the connection, the clock) after which the next
#: remote artifact may be tried, if no byte was sent yet; after that they cut the
#: responses short. pulpcore's list (``ClientResponseError``, ``ClientConnectionError``,
#: ``UnsupportedDigestValidationError``) plus a broken body (``ClientPayloadError``: a
#: connection closed before the declared length) and a timeout: pulpcore's downloader
#: turns aiohttp's ``asyncio.TimeoutError`` into its own ``TimeoutException``, which
#: pulpcore-content does not catch (a 500 when the upstream says nothing in time).
SKIPPABLE: tuple[type[BaseException], ...] = (
    ClientResponseError, ClientConnectionError, ClientPayloadError,
    UnsupportedDigestValidationError, TimeoutException, asyncio.TimeoutError)


def upstream_refusal(exc: BaseException | None) -> tuple[int, str, dict[str, str]] | None:
    """The upstream's HTTP status, message and the headers worth passing on (its
    ``Retry-After`` on a 429 or 503: RFC 9110 §10.2.3) when ``exc`` is one, else None."""
    if isinstance(exc, ClientResponseError):
        headers: dict[str, str] = {}
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        if exc.status in (429, 503) and retry_after:
            headers["Retry-After"] = retry_after
        return exc.status, exc.message, headers
    return None


#: What a URL may not hold as it is (RFC 3986 §2): a ``%`` that starts no escape, and any
#: character outside the unreserved, reserved and ``%`` sets (spaces, non-ASCII, quotes).
_MUST_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]")


def _escape(found: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in found.group().encode())


def exact_url(url: str) -> URL | str:
    """``url`` as a yarl URL sent byte for byte, but for the characters a URL may not
    hold as they are, which are percent-encoded (UTF-8); everything else, existing
    escapes included, is kept. aiohttp's default requoting decodes escapes that need not
    be escapes (``%2F`` → ``/``, ``%7e`` → ``~``), which breaks the signature of a signed
    URL (CDN tokens, object-store links). A URL whose host is not ASCII (an
    internationalised domain name, which needs IDNA, not escapes) is left to aiohttp."""
    authority = url.split("://", 1)[-1].split("/", 1)[0]
    if not authority.isascii():
        return url
    return URL(_MUST_ESCAPE.sub(_escape, url), encoded=True)


class RawSession:
    """A downloader's aiohttp session that fetches ``url`` as the bytes the upstream
    stores: ``Accept-Encoding: identity`` and no transparent decoding; and asks for the
    URL byte for byte.

    A remote artifact's digests describe the file (``Packages.gz``, ``primary.xml.gz``).
    aiohttp asks for ``gzip, deflate`` and inflates what comes back, so an upstream that
    labels such a file ``Content-Encoding: gzip`` (misconfigured S3 buckets and CDNs do,
    and they send it whatever the request asks) handed the downloader the inflated bytes:
    the digest check failed, and the file could never be served. Through this session the
    bytes fetched are the bytes whose digest the remote promised, which are then stored
    and served (RFC 9110 §8.4: the coding is part of the representation's bytes).

    A signed URL (a remote URL carrying a token) must reach the upstream as written: the
    URL is sent byte for byte when it is well formed (:func:`exact_url`). aiohttp already
    follows a redirect's ``Location`` as written (checked in
    ``tests/test_upstream_faults_e2e.py``).

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
            url = exact_url(self._url)
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
