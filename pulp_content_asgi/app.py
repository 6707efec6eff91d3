"""The ASGI application: HTTP requests and the lifespan of a worker process.

Django's own ``ASGIHandler`` costs every request a new thread (``ThreadSensitiveContext``),
two signal hops and the API's middleware stack; measured on the hot path that is ~0.66 ms
of CPU per request (django-asgi-notes, appendix). The content path needs none of it, so
this thin callable does what that handler does for us (path decoding, one ORM hop,
disconnect handling) and Django supplies settings, the ORM, pooled connections and, when
a guard needs a user, the request object DRF authenticates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any

from django.conf import settings
from django_guid import get_guid, set_guid
from django_guid.utils import generate_guid

from pulp_content_asgi import access_log, conf, db, health, metrics, render, results, router
from pulp_content_asgi.cache import flow as cache_flow
from pulp_content_asgi.cache import store as cache_store
from pulp_content_asgi.heartbeat import Heartbeat
from pulp_content_asgi.http import listing, paths
from pulp_content_asgi.ondemand.plan import RemotePlan
from pulp_content_asgi.ondemand.respond import respond as ondemand_respond
from pulp_content_asgi.readiness import DatabaseReadiness
from pulp_content_asgi.request import ContentRequest
from pulp_content_asgi.streaming import Receive, Send, send_response

log = logging.getLogger(__name__)

_METHODS = ("GET", "HEAD")
CORRELATION_HEADER = "Correlation-ID"
_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,128}$")
#: Scope key for what the metrics need to know about the request: (route, domain name).
_LABELS = "pulp_content_asgi.labels"


def correlation_id(offered: str | None) -> str:
    """The client's correlation id when it is a sane token, else a new one."""
    if offered and _PRINTABLE.match(offered):
        return offered
    return str(generate_guid())


def _plain(status: int, text: str, headers: dict[str, str] | None = None) -> render.Prepared:
    return render.Prepared(status, {**(headers or {}),
                                    "Content-Type": "text/plain; charset=utf-8"},
                           f"{status}: {text}".encode())


def _resolve_and_prepare(request: ContentRequest, target: Any
                         ) -> render.Prepared | RemotePlan:
    return render.prepare(router.resolve(request, target), request)


class ContentApp:
    """Pulp's content app as an ASGI callable (runs under any ASGI server)."""

    def __init__(self) -> None:
        self.prefix: str = settings.CONTENT_PATH_PREFIX
        self.domains: bool = settings.DOMAIN_ENABLED
        self.heartbeat = Heartbeat()
        self.readiness = DatabaseReadiness()
        self._lifespan_seen = False

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Start-up registers the worker's heartbeat; shutdown removes it."""
        self._lifespan_seen = True
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("pulp-content-asgi failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.heartbeat.stop()
                metrics.current().close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        os.makedirs(settings.WORKING_DIRECTORY, exist_ok=True)
        os.chdir(settings.WORKING_DIRECTORY)  # plugins write temporary files into the cwd
        await self.heartbeat.start()
        metrics.current()  # instruments exist (and export zeros) before the first request

    async def respond(self, scope: dict[str, Any]) -> render.Prepared:
        """Everything up to the response: validation, then one ORM hop."""
        if scope["method"] not in _METHODS:
            return _plain(405, "Method Not Allowed", {"Allow": "GET, HEAD"})
        try:
            path = paths.decode_path(scope.get("raw_path") or scope["path"].encode())
        except paths.BadPath as bad:
            return _plain(bad.status, str(bad))
        ours = conf.current()
        if path == ours.health_path:
            scope[_LABELS] = (metrics.ROUTE_HEALTH, "")
            return await health.check()
        if path == ours.metrics_path and ours.prometheus_enabled:
            scope[_LABELS] = (metrics.ROUTE_METRICS, "")
            return await _scrape()
        target = paths.locate(path, self.prefix, self.domains)
        if isinstance(target, paths.Outside):
            return _plain(404, "Not Found")
        scope[_LABELS] = (metrics.ROUTE_LISTING if isinstance(target, paths.RootListing)
                          else metrics.ROUTE_CONTENT, getattr(target, "domain", None) or "default")
        if isinstance(target, paths.Redirect):
            return render.redirect(results.Redirect(target.location))
        if isinstance(target, paths.RootListing) and scope["method"] == "HEAD" \
                and not self.domains:
            # Pulp's container readiness probe: ready only while the database answers.
            if await self.readiness.reachable():
                return render.Prepared(200, {"Content-Type": listing.CONTENT_TYPE}, None)
            return _plain(503, "The content database is unavailable; retry shortly.",
                          {"Retry-After": str(ours.retry_after)})
        content_path = target.path if isinstance(target, paths.ContentPath) else ""
        request = ContentRequest(scope, path, content_path, target.domain)
        # The correlation id of logs and of tasks the request dispatches (pull-through adds
        # content with a task, which requires one): the client's, as the API uses it.
        set_guid(correlation_id(request.headers.get(CORRELATION_HEADER)))
        try:
            prepared = await self._resolve(request, target)
            if not isinstance(prepared, RemotePlan):
                return prepared
            cached = cache_store.current() is not None
            answered = await ondemand_respond(prepared, request, cached)
            if answered is not None:
                return answered
            # Saved (and cached) while this request waited: answer it as stored.
            prepared = await self._resolve(request, target)
            if not isinstance(prepared, RemotePlan):
                return prepared
            answered = await ondemand_respond(prepared, request)  # gone again: stream it
            assert answered is not None  # only a request allowed to wait gets None
            return answered
        except db.DatabaseUnavailable as exc:
            retry = conf.current().retry_after
            log.error("Database unavailable while serving %s: %s", path, exc)
            return _plain(503, "The content database is unavailable; retry shortly.",
                          {"Retry-After": str(retry)})
        except Exception:
            log.exception("Failed to serve %s %s", scope["method"], path)
            return _plain(500, "Internal Server Error: the content app failed to answer this "
                               "request; the server log has the details.")

    async def _resolve(self, request: ContentRequest, target: Any
                       ) -> render.Prepared | RemotePlan:
        """The response from the cache when it has one, else from one ORM hop."""
        cache = cache_store.current()
        if cache is None or not isinstance(target, paths.ContentPath):
            return await db.run(_resolve_and_prepare, request, target)
        hit, looked_up = await cache_flow.lookup(cache, request, target)
        if hit is not None:
            return hit
        return await db.run(cache_flow.resolve, cache, request, target, looked_up)

    async def http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started = time.monotonic()
        if not self._lifespan_seen and self.heartbeat.status is None:
            # Servers without lifespan support (daphne) still get a heartbeat.
            self._lifespan_seen = True
            await self.startup()
        prepared = await self.respond(scope)
        if (guid := get_guid()) is not None:
            prepared.headers[CORRELATION_HEADER] = guid
        recorder = metrics.current()
        counted = _Counted(send) if recorder.enabled else None
        complete = False
        try:
            complete = await send_response(prepared, scope["method"], receive, counted or send)
        except OSError as exc:
            log.info("Client went away during %s: %s", scope.get("path"), exc)
        finally:
            seconds = time.monotonic() - started
            access_log.record(scope, prepared, complete, seconds)
            if counted is not None:
                _observe(recorder, scope, prepared, seconds, counted)


class _Counted:
    """``send`` that counts the body bytes handed to the server (metrics only)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.sent = 0
        self.pathsend = False

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.sent += len(message.get("body", b""))
        elif message["type"] == "http.response.pathsend":
            self.pathsend = True
        await self.send(message)


def _observe(recorder: metrics.Recorder, scope: dict[str, Any], prepared: render.Prepared,
             seconds: float, counted: _Counted) -> None:
    route, domain = scope.get(_LABELS, (metrics.ROUTE_UNKNOWN, ""))
    sent = counted.sent
    if counted.pathsend:  # the server sends the file; it reports no failure back
        sent += int(prepared.headers.get("Content-Length", 0))
    recorder.request(scope["method"], prepared.status, route, seconds, sent)
    cache = prepared.headers.get("X-PULP-CACHE")
    if cache is not None:
        recorder.cache(cache == "HIT")
    size = prepared.headers.get("X-PULP-ARTIFACT-SIZE")
    if size is not None and prepared.status in (200, 206, 302):
        # As pulpcore counts: every artifact answered, whichever way (not 304s).
        recorder.artifact(int(size), domain)


async def _scrape() -> render.Prepared:
    from pulp_content_asgi.metrics.prometheus import CONTENT_TYPE, PrometheusSink

    sink = next(s for s in metrics.current().sinks if isinstance(s, PrometheusSink))
    body = await asyncio.to_thread(sink.render)
    return render.Prepared(200, {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
                           body)
