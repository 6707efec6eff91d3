"""Resolution results to responses, on the ORM thread (the request's one hop).

:func:`prepare` matches a typed result to its representation and hands it to the single
responder; remote content becomes a :class:`~pulp_content_asgi.ondemand.plan.RemotePlan`
(built here, where the ORM is), which the on-demand layer answers on the event loop once
the upstream headers are in. :func:`inline` reads small file bodies while still off the
loop, so a small file costs no extra thread hop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from pulp_content_asgi.ondemand import plan
from pulp_content_asgi.ondemand.plan import RemotePlan
from pulp_content_asgi.plugin import results
from pulp_content_asgi.protocol import listing
from pulp_content_asgi.protocol.paths import quote_location
from pulp_content_asgi.serving import artifacts
from pulp_content_asgi.serving.representation import Representation, parse_last_modified
from pulp_content_asgi.serving.responder import Request, preconditions, respond
from pulp_content_asgi.serving.response import (
    FileRange,
    Response,
    StreamRange,
    redirect,
    text,
)


def redirect_for(result: results.Redirect, query: str = "") -> Response:
    """A redirect result; local paths are percent-encoded, and ``query`` (the raw query
    string) follows unchanged when the result keeps it."""
    location = result.location
    if result.status == 301 and location.startswith("/"):
        location = quote_location(location)
    if result.keep_query and query:
        location = f"{location}?{query}"
    return redirect(location, result.status, result.headers)


def listing_page(result: results.ServeListing) -> Representation:
    page = listing.render(result.listing).encode()
    return Representation(page, len(page), {"Content-Type": listing.CONTENT_TYPE,
                                            **result.headers}, ranges=False)


def body(result: results.ServeBody) -> Representation:
    """A generated document; its ETag/Last-Modified (if the plugin set them) are honoured."""
    headers = dict(result.headers)
    etag = next((headers.pop(k) for k in list(headers) if k.lower() == "etag"), None)
    return Representation(result.body, len(result.body), headers, etag,
                          parse_last_modified(headers), ranges=False)


@dataclass(frozen=True)
class Generated:
    """A :class:`~.results.ServeGenerated` body as a live source: produced when read."""

    produce: Callable[[], Awaitable[bytes]]

    async def chunks(self, offset: int, length: int | None, step: int
                     ) -> AsyncIterator[bytes]:
        body = await self.produce()
        for start in range(0, len(body), step):
            yield body[start:start + step]

    def release(self) -> None:
        """Nothing is held: the document lives in this response alone."""


def generated(result: results.ServeGenerated, method: str) -> Response:
    headers = dict(result.headers)
    if method == "HEAD":
        return Response(200, headers)
    return Response(200, headers, StreamRange(Generated(result.produce), 0, None))


def prepare(result: results.Result, request: Request, received_at: float | None = None,
            hook_request: Any = None) -> Response | RemotePlan:
    """The response for ``result``; may block (stat, signing, ORM), so it runs off the loop.

    ``received_at`` (wall clock) and ``hook_request`` go into a remote plan: when the
    request arrived, and the request object plugin hooks see when the download is saved.
    """
    match result:
        case results.ServeRemote():
            return plan.make(result, received_at, hook_request)
        case results.ServeArtifact():
            if artifacts.redirects(result):
                # The redirect stands for the file: a client that holds it gets 304 (and a
                # failed If-Match 412), as from pulpcore-content and pulp_maven.
                early = preconditions(artifacts.artifact(result, stat=False), request)
                if early is not None:
                    return early
                redirected = artifacts.storage_redirect(result, request.method)
                if redirected is not None:
                    return redirected
            try:
                return respond(artifacts.artifact(result), request)
            except artifacts.MissingFile as missing:
                return missing.response
        case results.ServeLocalFile():
            try:
                return respond(artifacts.local_file(result.path, dict(result.headers)), request)
            except artifacts.MissingFile as missing:
                return missing.response
        case results.ServeListing():
            return respond(listing_page(result), request)
        case results.ServeBody():
            if result.status != 200:
                return Response(result.status, {**result.headers,
                                                "Content-Length": str(len(result.body))},
                                None if request.method == "HEAD" else result.body)
            return respond(body(result), request)
        case results.ServeGenerated():
            return generated(result, request.method)
        case results.Redirect():
            return redirect_for(result, request.query)
        case results.NotFound():
            return text(404, result.reason)
        case results.Denied():
            return text(403, result.reason)
        case results.Failure():
            return text(result.status, result.reason, result.headers)
    raise TypeError(f"not a content result: {result!r}")


def inline(response: Response, limit: int) -> Response:
    """Read a file body of at most ``limit`` bytes now (we are off the loop anyway)."""
    body = response.body
    if not isinstance(body, FileRange) or body.length > limit:
        return response
    with body.open() as handle:
        handle.seek(body.offset)
        data = handle.read(body.length)
    return replace(response, body=data)
