"""One client's response to a remote plan: join the fetch, wait for the upstream headers,
then read the spool (the range of it the client asked for)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pulp_content_asgi.http import ranges
from pulp_content_asgi.ondemand.fetch import Fetch, Follow, inflight
from pulp_content_asgi.ondemand.plan import RemotePlan
from pulp_content_asgi.ondemand.spool import LeaderGone, Stale, UpstreamError
from pulp_content_asgi.render import Prepared, error

#: Upstream headers never forwarded (pulpcore's list): hop-by-hop, and the length and
#: encoding of a body the downloader may have decoded.
HOP_BY_HOP = frozenset({"connection", "content-encoding", "content-length", "keep-alive",
                        "public", "proxy-authenticate", "transfer-encoding", "upgrade"})


#: ``http_version`` of an HTTP/1.0 request (granian says "1", uvicorn "1.0").
HTTP_10 = frozenset({"1", "1.0"})
#: Bytes at the end of a response withheld until the download is verified: a corrupt
#: artifact never reaches a client whole (a small one not at all); the response is cut
#: instead.
VERIFIED_TAIL = 256 * 1024


@dataclass
class SpoolBody:
    """``length`` bytes (None: to the end) from ``offset`` of a fetch's spool; the last
    ``hold`` of them once the download is complete."""

    fetch: Fetch | Follow
    offset: int
    length: int | None
    hold: int = 0

    def release(self) -> None:
        inflight.leave(self.fetch)


def _merge(base: dict[str, str], upstream: dict[str, str]) -> dict[str, str]:
    headers = dict(base)
    lowered = {k.lower(): k for k in headers}
    for name, value in upstream.items():
        if name.lower() in HOP_BY_HOP:
            continue
        headers.pop(lowered.get(name.lower(), name), None)
        headers[name] = value
    return headers


def _total(upstream: dict[str, str], known: int | None) -> int | None:
    lowered = {k.lower(): v for k, v in upstream.items()}
    if "content-length" in lowered and "content-encoding" not in lowered:
        return int(lowered["content-length"])
    return known


async def respond(plan: RemotePlan, request: Any, cached: bool = False) -> Prepared | None:
    """The response for one client; the body (if any) is a :class:`SpoolBody`.

    None when the file is small and this request joined someone else's download while the
    response cache is on: all of its bytes wait for verification anyway, so the request
    waits for the save and is then answered like any stored file (a cache hit, as the
    first request's save stored it), instead of from the spool.
    """
    try:
        spec = ranges.parse_range_header(request.headers.get("Range"))
        if spec and plan.size is not None and spec.first is not None \
                and spec.first >= plan.size:
            raise ranges.RangeNotSatisfiable("start beyond the size")
    except ranges.RangeNotSatisfiable:
        return error(416, "Range Not Satisfiable",
                     {"Content-Range": ranges.unsatisfied_content_range(plan.size)})
    if not plan.candidates:
        return error(404, "Not Found")
    private = False
    fetch: Fetch | Follow
    for _ in range(3):  # a leader that vanishes before its headers is replaced
        if private:
            fetch, started = inflight.lead_privately(plan, request), True
        else:
            fetch, started = await inflight.join(plan, request)
        try:
            upstream = dict(await fetch.spool.wait_headers())
            break
        except Stale:
            inflight.abandon(fetch)
            private = True
        except LeaderGone:
            inflight.abandon(fetch)
        except UpstreamError as failed:
            inflight.leave(fetch)
            return error(failed.status, str(failed))
        except BaseException:
            inflight.leave(fetch)
            raise
    else:
        return error(502, "The download of this content was abandoned three times; retry.")
    headers = _merge(plan.headers, upstream)
    total = _total(upstream, plan.size)
    if total is not None:
        headers["X-PULP-ARTIFACT-SIZE"] = str(total)
    status, offset, length = 200, 0, total
    if total is not None and request.scope.get("http_version") in HTTP_10:
        # HTTP/1.1 clients see a cut in the chunked encoding (pulpcore's way, no length
        # declared); HTTP/1.0 has no chunks, so a cut would look like the end of the body
        # (nginx proxies with HTTP/1.0 by default). A declared length shows it.
        headers["Content-Length"] = str(total)
    if spec is not None and total is not None:
        try:
            wanted = ranges.resolve_range(spec, total)
        except ranges.RangeNotSatisfiable:
            inflight.leave(fetch)
            return error(416, "Range Not Satisfiable",
                         {"Content-Range": ranges.unsatisfied_content_range(total)})
        status, offset, length = 206, wanted.start, wanted.length
        headers["Content-Range"] = wanted.content_range(total)
        headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        inflight.leave(fetch)  # the download goes on (and is saved) without this client
        return Prepared(status, headers, None)
    if cached and not started and spec is None and total is not None \
            and total <= VERIFIED_TAIL and plan.candidates[0].save \
            and await fetch.spool.wait_done():
        inflight.leave(fetch)
        return None
    hold = 0
    if total is not None and length is not None and offset + length == total:
        hold = min(length, VERIFIED_TAIL)
    return Prepared(status, headers, SpoolBody(fetch, offset, length, hold))
