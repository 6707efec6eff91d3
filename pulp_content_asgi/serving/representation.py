"""What is served, independent of how it was found (RFC 9110 §3.2 "representation").

A :class:`Representation` says how many bytes there are, which validators describe them,
which headers go with them and where the bytes come from. Local files, object-storage
objects, cache entries, plugin bodies and on-demand downloads all become one, so a single
responder (:mod:`.responder`) decides 200/206/304/412/416 for all of them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from django.utils.http import parse_http_date_safe

from pulp_content_asgi.serving.response import LiveSource


@dataclass(frozen=True)
class FileSource:
    """A stored file: ``open`` may do I/O (called off the loop); ``path`` if it is local."""

    open: Callable[[], IO[bytes]]
    path: str | None = None


@dataclass(frozen=True)
class Representation:
    """One representation of the requested resource.

    ``size`` is in bytes, None while unknown (a download whose upstream declared no
    length: no Range can be honoured then). ``source`` is the bytes themselves (small
    generated documents), a :class:`FileSource`, or a :class:`LiveSource`. ``ranges`` says
    whether Range requests are honoured: files and downloads yes; generated documents no,
    as aiohttp's ``web.Response`` (pulpcore's way of sending them) ignores Range.
    ``artifact_size`` is the size pulpcore reports in ``X-PULP-ARTIFACT-SIZE`` for
    artifacts (None for anything that is not an artifact).
    """

    source: bytes | FileSource | LiveSource
    size: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: datetime | None = None
    ranges: bool = True
    artifact_size: int | None = None
    #: A live source is sent without Content-Length to HTTP/1.1 clients, so that a cut
    #: (the download failed midway) shows as a broken chunked encoding.
    live: bool = False


def parse_last_modified(headers: Mapping[str, str]) -> datetime | None:
    """``Last-Modified`` of ``headers`` as an aware datetime, None if absent or invalid."""
    value = next((v for k, v in headers.items() if k.lower() == "last-modified"), None)
    parsed = parse_http_date_safe(value) if value else None
    return datetime.fromtimestamp(parsed, tz=UTC) if parsed is not None else None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header of a plain dict, found case-insensitively."""
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def from_headers(source: bytes | FileSource | LiveSource, size: int | None,
                 headers: Mapping[str, str], *, ranges: bool = True,
                 live: bool = False) -> Representation:
    """A representation described by response headers (a cache entry's, a download's):
    ETag, Last-Modified and ``X-PULP-ARTIFACT-SIZE`` become its typed fields."""
    etag = header(headers, "ETag")
    raw_size = header(headers, "X-PULP-ARTIFACT-SIZE")
    kept = {k: v for k, v in headers.items()
            if k.lower() not in ("etag", "x-pulp-artifact-size")}
    return Representation(source, size, kept, etag, parse_last_modified(headers),
                          ranges=ranges, artifact_size=int(raw_size) if raw_size else None,
                          live=live)
