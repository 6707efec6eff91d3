"""The single responder: a representation plus a request becomes a response.

Every way of serving bytes — local files, object-storage proxies, cache hits, plugin
bodies, on-demand downloads — comes through :func:`respond`, so preconditions, Range,
If-Range, 304, 412 and 416 behave identically everywhere. It is pure: no I/O, no Django
models, no settings; the body it returns says which bytes to send, not how.

Order (RFC 9110 §13.2.2): preconditions (If-Match, If-Unmodified-Since, If-None-Match,
If-Modified-Since), then Range (§14.2, read as nginx reads it: :mod:`..protocol.ranges`)
under If-Range (§13.1.5), then the body: whole (200), one range (206) or several
(206 ``multipart/byteranges``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.utils.http import http_date

from pulp_content_asgi.protocol import conditional, ranges
from pulp_content_asgi.serving.representation import FileSource, Representation, header
from pulp_content_asgi.serving.response import FileRange, Parts, Response, StreamRange, text

#: Headers a 304 repeats from the 200 it stands for (RFC 9110 §15.4.5), plus
#: Last-Modified, which pulpcore-content's 304s carry too.
NOT_MODIFIED_HEADERS = frozenset({"cache-control", "content-location", "date", "etag",
                                  "expires", "vary", "last-modified"})
#: Headers a 416 keeps, as pulpcore-content's do: caching policy, validators, artifact size.
UNSATISFIABLE_HEADERS = frozenset({"cache-control", "etag", "last-modified",
                                   "x-pulp-artifact-size"})
#: ``http_version`` of an HTTP/1.0 request (granian says "1", uvicorn "1.0").
HTTP_10 = frozenset({"1", "1.0"})


@dataclass(frozen=True)
class Request:
    """What the responder needs to know about the request, and nothing more.

    ``headers`` must look names up case-insensitively (the ASGI request's mapping does).
    ``query`` is the raw query string as received (latin-1, so every byte survives), for
    redirects that keep it.
    """

    method: str
    headers: Mapping[str, str]
    http_version: str = "1.1"
    query: str = ""


def representation_headers(rep: Representation) -> dict[str, str]:
    """The headers of a 200 for ``rep``, without the length (which depends on the range)."""
    headers = dict(rep.headers)
    if rep.etag is not None:
        headers["ETag"] = rep.etag
    if rep.last_modified is not None and not any(k.lower() == "last-modified" for k in headers):
        headers["Last-Modified"] = http_date(rep.last_modified.timestamp())
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/octet-stream"
    if rep.artifact_size is not None:
        headers["X-PULP-ARTIFACT-SIZE"] = str(rep.artifact_size)
    if rep.ranges and rep.size is not None and not rep.live:
        # Downloads honour ranges too, but do not advertise them: pulpcore-content's
        # streams do not, and clients then stay with what they did before.
        headers["Accept-Ranges"] = "bytes"
    return headers


def _subset(headers: Mapping[str, str], names: frozenset[str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() in names}


def not_modified(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a 304 standing for a 200 with ``headers``."""
    return _subset(headers, NOT_MODIFIED_HEADERS)


def unsatisfiable(size: int | None, headers: Mapping[str, str] | None = None) -> Response:
    """416 with ``Content-Range: bytes */size`` (RFC 9110 §15.5.17)."""
    kept = _subset(headers or {}, UNSATISFIABLE_HEADERS)
    return text(416, "Range Not Satisfiable",
                {**kept, "Content-Range": ranges.unsatisfied_content_range(size)})


def _preconditions(rep: Representation, request: Request, headers: Mapping[str, str]
                   ) -> Response | None:
    if rep.etag is None and rep.last_modified is None:
        # Nothing to compare against (listings, most generated documents): as pulpcore,
        # such responses are always sent whole.
        return None
    outcome = conditional.evaluate(request.method, request.headers, rep.etag,
                                   rep.last_modified)
    if outcome is conditional.Outcome.FAILED:
        return text(412, "Precondition Failed")
    if outcome is conditional.Outcome.NOT_MODIFIED:
        return Response(304, not_modified(headers), None, artifact_size=rep.artifact_size)
    return None


def preconditions(rep: Representation, request: Request) -> Response | None:
    """The ``304``/``412`` the request's preconditions call for, None to go on: for
    answers that are not the representation itself but stand for it (a redirect to the
    storage that holds it), which come after the preconditions as a ``200`` would."""
    return _preconditions(rep, request, representation_headers(rep))


def _wanted(rep: Representation, request: Request) -> list[ranges.ByteRange] | None:
    """The ranges to send, None for the whole representation; raises RangeNotSatisfiable."""
    if not rep.ranges or rep.size is None:
        return None
    value = request.headers.get("Range")
    if value is None or not ranges.if_range_allows(request.headers.get("If-Range"), rep.etag,
                                                   rep.last_modified):
        return None
    return ranges.select(value, rep.size)


def respond(rep: Representation, request: Request) -> Response:
    """The response to ``request`` for ``rep`` (see the module docstring for the order).

    HEAD gets the headers of the GET and no body. A live source whose whole body goes to
    an HTTP/1.1 client declares no length (a cut download stays detectable as a broken
    chunked encoding); HTTP/1.0 clients get the length, since they have no chunks.
    """
    headers = representation_headers(rep)
    early = _preconditions(rep, request, headers)
    if early is not None:
        return early
    try:
        wanted = _wanted(rep, request)
    except ranges.RangeNotSatisfiable:
        return unsatisfiable(rep.size, headers)
    if wanted is not None and len(wanted) > 1:
        return _multipart(rep, request, headers, wanted)
    status, offset, length = 200, 0, rep.size
    if wanted is not None:
        assert rep.size is not None  # _wanted only resolves ranges of a known size
        status, offset, length = 206, wanted[0].start, wanted[0].length
        headers["Content-Range"] = wanted[0].content_range(rep.size)
    if length is not None and (status == 206 or not rep.live
                               or request.http_version in HTTP_10):
        headers["Content-Length"] = str(length)
    body = None if request.method == "HEAD" else _body(rep, offset, length)
    return Response(status, headers, body, artifact_size=rep.artifact_size)


def _multipart(rep: Representation, request: Request, headers: dict[str, str],
               wanted: list[ranges.ByteRange]) -> Response:
    """206 ``multipart/byteranges`` with the ranges in the order asked, laid out as nginx
    lays them out; its length is always declared (it is known, even for a live source)."""
    assert rep.size is not None
    content_type = header(headers, "Content-Type") or "application/octet-stream"
    boundary = ranges.boundary()
    pieces: list[bytes | FileRange | StreamRange] = []
    for wanted_range in wanted:
        pieces.append(ranges.part_header(boundary, content_type, wanted_range, rep.size))
        pieces.append(_body(rep, wanted_range.start, wanted_range.length))
    pieces.append(ranges.closing(boundary))
    length = sum(len(p) if isinstance(p, bytes) else p.length or 0 for p in pieces)
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    headers["Content-Type"] = f"{ranges.MULTIPART}; boundary={boundary}"
    headers["Content-Length"] = str(length)
    body: Parts | bytes | None = None
    if request.method != "HEAD":
        body = Parts(tuple(pieces))
        if all(isinstance(p, bytes) for p in pieces):
            body = b"".join(p for p in pieces if isinstance(p, bytes))
    return Response(206, headers, body, artifact_size=rep.artifact_size)


def _body(rep: Representation, offset: int, length: int | None
          ) -> bytes | FileRange | StreamRange:
    source = rep.source
    if isinstance(source, bytes):
        return source if length is None else source[offset:offset + length]
    if isinstance(source, FileSource):
        assert rep.size is not None and length is not None  # files have a size
        return FileRange(source.open, offset, length, rep.size, source.path)
    return StreamRange(source, offset, length)
