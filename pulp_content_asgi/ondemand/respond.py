"""One client's response to a remote plan: join the download, wait for the upstream
headers, then let the single responder decide what of the spool this client gets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from pulp_content_asgi.ondemand.fetch import Fetch, Follow
from pulp_content_asgi.ondemand.inflight import inflight
from pulp_content_asgi.ondemand.plan import RemotePlan
from pulp_content_asgi.ondemand.spool import LeaderGone, Stale, UpstreamError, refusal
from pulp_content_asgi.protocol import ranges
from pulp_content_asgi.serving.representation import Representation
from pulp_content_asgi.serving.responder import HTTP_10, Request, unsatisfiable
from pulp_content_asgi.serving.responder import respond as respond_to
from pulp_content_asgi.serving.response import Response, reads_live, text

#: Upstream headers a response forwards: none. A response describes the content, not the
#: upstream it happens to come from: its type comes from pulpcore's mime map (and the
#: distribution's ``content_headers_for``), its validators from the digest and the
#: repository (:class:`~pulp_content_asgi.ondemand.plan.RemotePlan`), its caching policy
#: from the distribution, exactly as for the stored file, so nothing changes once the
#: download is saved. pulpcore-content forwards everything but hop-by-hop headers, which
#: leaked the upstream's ``Set-Cookie``, ``Server``, ``ETag`` and ``Content-Type`` (and the
#: latter two changed after the save). Name a header here to forward it.
FORWARDED: frozenset[str] = frozenset()
#: Bytes at the end of a response withheld until the download is verified: a corrupt
#: artifact never reaches a client whole (a small one not at all); the response is cut
#: instead.
VERIFIED_TAIL = 256 * 1024
#: A leader that vanishes before its headers is replaced this many times at most.
ATTEMPTS = 3


class AnswerFromStorage:
    """This request waited for another client's download to be saved (and cached): answer
    it as stored content, by resolving it again."""


@dataclass
class SpoolSource:
    """A download's spool as a live body: the last ``VERIFIED_TAIL`` bytes of every
    response of a known length (the whole file, a range anywhere in it, each part of a
    multipart answer) wait for the digest check, so no response is complete before the
    file is verified; a range that ends before the end of the file therefore waits for
    the whole download (its bytes cannot be verified on their own)."""

    fetch: Fetch | Follow
    size: int | None

    async def chunks(self, offset: int, length: int | None, step: int
                     ) -> AsyncIterator[bytes]:
        # Without a length (a file of unknown size, sent chunked) there is no tail to
        # hold: a refusal cuts the chunked body, which clients see as incomplete.
        hold = 0 if length is None else min(length, VERIFIED_TAIL)
        async for chunk in self.fetch.spool.read(offset, length, step, hold):
            yield chunk

    def release(self) -> None:
        inflight.leave(self.fetch)


def _merge(base: Mapping[str, str], upstream: Mapping[str, str]) -> dict[str, str]:
    """Our headers, plus the upstream's that :data:`FORWARDED` names (theirs win)."""
    headers = dict(base)
    lowered = {k.lower(): k for k in headers}
    for name, value in upstream.items():
        if name.lower() not in FORWARDED:
            continue
        headers.pop(lowered.get(name.lower(), name), None)
        headers[name] = value
    return headers


def _total(upstream: Mapping[str, str], known: int | None) -> int | None:
    """The artifact's size: the size the remote artifact promised (a download of any
    other size fails, on_demand and streamed alike, and one that declares another length
    is refused before its headers: :meth:`~.fetch.SpoolingDownloader.check_declared`),
    else the upstream's Content-Length (the download is not decoded, so it counts the
    bytes we get; ignored should a coding be decoded all the same)."""
    if known is not None:
        return known
    lowered = {k.lower(): v for k, v in upstream.items()}
    if "content-length" in lowered and "content-encoding" not in lowered:
        with contextlib.suppress(ValueError):
            return int(lowered["content-length"])
    return None


#: Request headers whose answer depends on validators only the download will bring.
PRECONDITIONS = ("If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
                 "If-Range")


def _early_refusal(plan: RemotePlan, request: Request) -> Response | None:
    """Answers decided before any download starts: nothing to download from, or a range
    that cannot be satisfied at the known size — unless preconditions come first (RFC 9110
    §13.2.2: a 304 or 412 outranks a 416), which only the upstream's validators decide."""
    if not plan.candidates:
        return text(404, "Not Found")
    if plan.size is None or any(request.headers.get(h) is not None for h in PRECONDITIONS):
        return None
    try:
        ranges.select(request.headers.get("Range"), plan.size)
    except ranges.RangeNotSatisfiable:
        return unsatisfiable(plan.size, {"X-PULP-ARTIFACT-SIZE": str(plan.size)})
    return None


async def _join(plan: RemotePlan) -> tuple[Fetch | Follow, bool, Mapping[str, str]] | Response:
    """A download with its upstream headers in, and whether this request started it; or
    the error answer when the download failed before its headers."""
    private = False
    fetch: Fetch | Follow
    for _ in range(ATTEMPTS):
        if private:
            fetch, started = inflight.lead_privately(plan), True
        else:
            fetch, started = await inflight.join(plan)
        try:
            return fetch, started, dict(await fetch.spool.wait_headers())
        except Stale:
            inflight.abandon(fetch)
            private = True
        except LeaderGone:
            inflight.abandon(fetch)
        except UpstreamError as failed:
            inflight.leave(fetch)
            return text(failed.status, str(failed), failed.headers)
        except BaseException:
            inflight.leave(fetch)
            raise
    return text(502, f"The download of this content was abandoned {ATTEMPTS} times; retry.")


def _refused(error: BaseException | None) -> Response:
    """The answer to a client that waited for a download which then failed: nothing of it
    was sent, so the failure can be said (a digest mismatch, a cut upstream: 502; a
    follower's is the leader's, from the spool's sidecar)."""
    if isinstance(error, UpstreamError):
        return text(error.status, str(error), error.headers)
    return text(502, refusal(error))


#: Returns once the client has gone (the ASGI ``http.disconnect``); None: not watched.
Gone = Callable[[], Awaitable[object]] | None
#: The status of the answer to a client that left while it waited: nobody reads it; the
#: access log shows it, as nginx's 499 does.
LEFT = 499


def _left() -> Response:
    return text(LEFT, "The client closed the connection before the answer.")


async def _verdict(fetch: Fetch | Follow, gone: Gone) -> bool | None:
    """Until the download is over: True when it completed (verified), False when it
    failed; None when the client left first (``gone`` returned), so that a client that
    waits for a verdict before its headers (and so sends nothing the server could see
    fail) does not keep the download alive once it has gone."""
    if gone is None:
        return await fetch.spool.wait_done()
    waiting = asyncio.ensure_future(fetch.spool.wait_done())
    watch = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait((waiting, watch), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        waiting.cancel()
        watch.cancel()
        raise
    if waiting in done:
        watch.cancel()
        return waiting.result()
    waiting.cancel()  # the client has gone (a failing receive says the same)
    return None


async def respond(plan: RemotePlan, request: Request, cached: bool = False,
                  gone: Gone = None) -> Response | AnswerFromStorage:
    """The response for one client; a body reads the spool (one range or several).

    :class:`AnswerFromStorage` when the file is small and this request joined someone
    else's download while the response cache is on: all of its bytes wait for
    verification anyway, so the request waits for the save and is then answered like any
    stored file (a cache hit, as the first request's save stored it). ``gone`` returns
    once the client has left: a request that waits for the verdict before its headers
    then leaves the download (answered :data:`LEFT`), which the bound may then cancel.
    """
    refused = _early_refusal(plan, request)
    if refused is not None:
        return refused
    joined = await _join(plan)
    if isinstance(joined, Response):
        return joined
    fetch, started, upstream = joined
    headers = _merge(plan.headers, upstream)
    total = _total(upstream, plan.size)
    if request.method == "GET" and (
            total == 0 or (total is None and request.http_version in HTTP_10)):
        # An HTTP/1.0 body without a length ends where the connection closes, so a cut
        # would look complete: such a client waits for the verified download, whose size
        # is then known (a file of unknown size only: otherwise the held tail protects).
        # An empty body has no tail to hold, and is complete as soon as it starts: it
        # waits too (for a download of nothing, so at no cost).
        try:
            verdict = await _verdict(fetch, gone)
        except BaseException:
            inflight.leave(fetch)
            raise
        if not verdict:
            inflight.leave(fetch)
            return _left() if verdict is None else _refused(fetch.spool.error)
        total = fetch.spool.size
    if cached and not started and request.headers.get("Range") is None \
            and request.method == "GET" and total is not None and total <= VERIFIED_TAIL \
            and plan.candidates[0].save:
        try:
            verdict = await _verdict(fetch, gone)
        except BaseException:
            inflight.leave(fetch)
            raise
        if verdict is None:
            inflight.leave(fetch)
            return _left()
        if verdict:
            inflight.leave(fetch)
            return AnswerFromStorage()
    rep = Representation(SpoolSource(fetch, total), total, headers, plan.etag,
                         plan.last_modified, artifact_size=total, live=True)
    response = respond_to(rep, request)
    if not reads_live(response.body):
        inflight.leave(fetch)  # HEAD, 304, 412, 416: the download goes on without us
    return response
