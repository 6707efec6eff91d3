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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django_guid import get_guid, set_guid
from django_guid.utils import generate_guid

from pulp_content_asgi import conf, db, metrics
from pulp_content_asgi.bridge.legacy import Forwarded, legacy_fallback
from pulp_content_asgi.cache import store as cache_store
from pulp_content_asgi.cache.lookup import CachedResolver
from pulp_content_asgi.entry import access_log, health
from pulp_content_asgi.entry.heartbeat import Heartbeat
from pulp_content_asgi.entry.readiness import DatabaseReadiness
from pulp_content_asgi.ondemand.inflight import inflight
from pulp_content_asgi.ondemand.plan import RemotePlan
from pulp_content_asgi.ondemand.respond import AnswerFromStorage
from pulp_content_asgi.ondemand.respond import respond as ondemand_respond
from pulp_content_asgi.plugin import registry, results
from pulp_content_asgi.plugin.request import ContentRequest
from pulp_content_asgi.protocol import listing, paths
from pulp_content_asgi.resolution import dispatch
from pulp_content_asgi.routes.handler import LiveRoutes
from pulp_content_asgi.serving.prepare import redirect_for
from pulp_content_asgi.serving.response import Response, private, text
from pulp_content_asgi.serving.send import (
    Receive,
    Send,
    Sending,
    send_response,
    until_disconnect,
)

log = logging.getLogger(__name__)

_METHODS = ("GET", "HEAD")
CORRELATION_HEADER = "Correlation-ID"
_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,128}$")
Target = paths.RootListing | paths.ContentPath
Resolver = Callable[[ContentRequest, Target], Awaitable[Response | RemotePlan]]


@dataclass(frozen=True)
class Labels:
    """What metrics say about a request: its route and domain."""

    route: str = metrics.ROUTE_UNKNOWN
    domain: str = ""


def correlation_id(offered: str | None) -> str:
    """The client's correlation id when it is a sane token, else a new one."""
    if offered and _PRINTABLE.match(offered):
        return offered
    return str(generate_guid())


async def _uncached(request: ContentRequest, target: Target) -> Response | RemotePlan:
    return await db.run(dispatch.answer, request, target)


class ContentApp:
    """Pulp's content app as an ASGI callable (runs under any ASGI server)."""

    def __init__(self) -> None:
        self.prefix: str = settings.CONTENT_PATH_PREFIX
        self.domains: bool = settings.DOMAIN_ENABLED
        self.heartbeat = Heartbeat()
        self.readiness = DatabaseReadiness()
        self._lifespan_seen = False
        ours = conf.current()
        self.sending = Sending(ours.chunk_size, ours.pathsend)
        self._cached: CachedResolver | None = None
        urlconfs = registry.live_urlconfs()
        #: The plugins' live routes (outside the content prefix), if any plugin has some.
        self.live = LiveRoutes(urlconfs, ours.route_middleware, self.sending) \
            if urlconfs else None
        self.legacy = legacy_fallback(ours)

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
                await inflight.shutdown()
                if self.legacy is not None:
                    await self.legacy.close()
                await self.heartbeat.stop()
                metrics.current().close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        os.makedirs(settings.WORKING_DIRECTORY, exist_ok=True)
        os.chdir(settings.WORKING_DIRECTORY)  # plugins write temporary files into the cwd
        await self.heartbeat.start()
        metrics.current()  # instruments exist (and export zeros) before the first request

    def resolver(self) -> Resolver:
        """Resolution through the response cache when it is on (chosen per request: the
        cache client exists once Django is set up)."""
        cache = cache_store.current()
        if cache is None:
            return _uncached
        if self._cached is None or self._cached.cache is not cache:
            self._cached = CachedResolver(cache, self.sending.pathsend)
        return self._cached

    async def respond(self, scope: dict[str, Any], receive: Receive | None = None
                      ) -> tuple[Response | None, Labels]:
        """Everything up to the response: validation, then one ORM hop. None: a path
        nothing here serves, whatever the method (:meth:`unserved` answers it).
        ``receive``: the request's, for waits that must end when the client goes."""
        try:
            path = paths.decode_path(scope.get("raw_path") or scope["path"].encode())
        except paths.BadPath as bad:
            return text(bad.status, str(bad)), Labels()
        ours = conf.current()
        own = path == ours.health_path or (path == ours.metrics_path
                                           and ours.prometheus_enabled)
        target = paths.locate(path, self.prefix, self.domains)
        if isinstance(target, paths.Outside) and not own:
            return None, Labels()
        if scope["method"] not in _METHODS:
            return text(405, "Method Not Allowed", {"Allow": "GET, HEAD"}), Labels()
        if path == ours.health_path:
            return await health.check(), Labels(metrics.ROUTE_HEALTH)
        if own:
            return await _scrape(), Labels(metrics.ROUTE_METRICS)
        assert not isinstance(target, paths.Outside)
        labels = Labels(metrics.ROUTE_LISTING if isinstance(target, paths.RootListing)
                        else metrics.ROUTE_CONTENT, getattr(target, "domain", None) or "default")
        if isinstance(target, paths.AddSlash):
            query = scope.get("query_string", b"").decode("latin-1")
            return redirect_for(results.Redirect(target.location, keep_query=True),
                                query), labels
        if isinstance(target, paths.RootListing) and scope["method"] == "HEAD" \
                and not self.domains:
            # Pulp's container readiness probe: ready only while the database answers.
            if await self.readiness.reachable():
                return Response(200, {"Content-Type": listing.CONTENT_TYPE}), labels
            return text(503, "The content database is unavailable; retry shortly.",
                        {"Retry-After": str(ours.retry_after)}), labels
        content_path = target.path if isinstance(target, paths.ContentPath) else ""
        request = ContentRequest(scope, path, content_path, target.domain)
        # The correlation id of logs and of tasks the request dispatches (pull-through adds
        # content with a task, which requires one): the client's, as the API uses it.
        set_guid(correlation_id(request.headers.get(CORRELATION_HEADER)))
        try:
            answered = await self._answer(request, target, receive)
        except db.DatabaseUnavailable as exc:
            log.error("Database unavailable while serving %s: %s", path, exc)
            answered = text(503, "The content database is unavailable; retry shortly.",
                            {"Retry-After": str(ours.retry_after)})
        except Exception:
            log.exception("Failed to serve %s %s", scope["method"], path)
            answered = text(500, "Internal Server Error: the content app failed to answer "
                                 "this request; the server log has the details.")
        # Whoever built the answer (a plugin's headers, the response cache, an on-demand
        # download, a listing, a redirect), a guarded distribution's is for this client.
        return (private(answered) if request.guarded else answered), labels

    async def _answer(self, request: ContentRequest, target: Target,
                      receive: Receive | None = None) -> Response:
        """Resolve (through the cache), then stream remote content if that is the answer.

        A request that waited for another client's small download to be saved is answered
        from storage: resolved once more, which finds the saved artifact (a cache hit).
        ``receive`` tells on-demand waits that the client has gone.
        """
        resolve = self.resolver()
        outcome = await resolve(request, target)
        if not isinstance(outcome, RemotePlan):
            return outcome
        cached = resolve is not _uncached
        gone = None if receive is None else (lambda: until_disconnect(receive))
        answered = await ondemand_respond(outcome, request.http, cached, gone)
        if not isinstance(answered, AnswerFromStorage):
            return answered
        outcome = await resolve(request, target)
        if not isinstance(outcome, RemotePlan):
            return outcome
        # Gone again (reclaimed meanwhile): stream it, without waiting this time.
        answered = await ondemand_respond(outcome, request.http, gone=gone)
        if isinstance(answered, AnswerFromStorage):
            raise RuntimeError("on-demand asked to wait for a save without a cache")
        return answered

    def is_live_route(self, scope: dict[str, Any]) -> bool:
        """Whether a plugin's live route serves this request (never the content prefix,
        the health or the metrics path: those keep their own fast path)."""
        if self.live is None:
            return False
        path: str = scope["path"]
        if path.startswith(self.prefix):
            return False
        ours = conf.current()
        if path in (ours.health_path, ours.metrics_path):
            return False
        return self.live.matches(path)

    async def http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started = time.monotonic()
        if not self._lifespan_seen and self.heartbeat.status is None:
            # Servers without lifespan support (daphne) still get a heartbeat.
            self._lifespan_seen = True
            await self.startup()
        if self.is_live_route(scope):
            await self.live_route(scope, receive, send, started)
            return
        response, labels = await self.respond(scope, receive)
        if response is None:
            await self.unserved(scope, receive, send, started)
            return
        guid = get_guid()
        extra = {CORRELATION_HEADER: guid} if guid is not None else {}
        recorder = metrics.current()
        counted = _Counted(send) if recorder.enabled else None
        complete = False
        try:
            complete = await send_response(response, scope, receive, counted or send,
                                           self.sending, extra)
        except OSError as exc:
            log.info("Client went away during %s: %s", scope.get("path"), exc)
        finally:
            seconds = time.monotonic() - started
            access_log.record(scope, response, complete, seconds)
            if counted is not None:
                _observe(recorder, scope["method"], response, labels, seconds, counted)

    async def live_route(self, scope: dict[str, Any], receive: Receive, send: Send,
                         started: float) -> None:
        """Hand the request to Django (the plugin's view); log and count it like ours."""
        assert self.live is not None
        counted = _Counted(send)
        try:
            await self.live(scope, receive, counted)
        finally:
            seconds = time.monotonic() - started
            response = Response(counted.status, counted.headers)
            complete = counted.finished
            sent = counted.sent
            if counted.pathsend:  # the server sends the file itself
                sent += int(counted.headers.get("Content-Length", 0))
            access_log.record(scope, response, complete, seconds, sent)
            recorder = metrics.current()
            if recorder.enabled:
                _observe(recorder, scope["method"], response, Labels(metrics.ROUTE_LIVE),
                         seconds, counted)

    async def unserved(self, scope: dict[str, Any], receive: Receive, send: Send,
                       started: float) -> None:
        """A path nothing here serves: pulpcore-content answers it through the legacy
        fallback (``CONTENT_ASGI_LEGACY_ORIGIN``, bridge/legacy.py), else 404."""
        counted = _Counted(send)
        if self.legacy is None:
            forwarded = Forwarded(text(404, "Not Found"), True)
            await send_response(forwarded.response, scope, receive, counted, self.sending)
        else:
            forwarded = await self.legacy(scope, receive, counted)
        seconds = time.monotonic() - started
        access_log.record(scope, forwarded.response, forwarded.complete, seconds,
                          sent=counted.sent)
        recorder = metrics.current()
        if recorder.enabled:
            route = metrics.ROUTE_UNKNOWN if self.legacy is None else metrics.ROUTE_LEGACY
            _observe(recorder, scope["method"], forwarded.response, Labels(route), seconds,
                     counted)


class _Counted:
    """``send`` that counts the body bytes handed to the server (metrics, and the access
    log of responses that are not ours) and notes the status it started with."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.sent = 0
        self.pathsend = False
        self.status = 500  # what the server answers if nothing was started
        self.headers: dict[str, str] = {}
        self.finished = False

    async def __call__(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode("latin-1").title(): v.decode("latin-1")
                            for k, v in message.get("headers", ())}
        elif kind == "http.response.body":
            self.sent += len(message.get("body", b""))
            self.finished = not message.get("more_body", False)
        elif kind == "http.response.pathsend":
            self.pathsend = True
            self.finished = True
        await self.send(message)


def _observe(recorder: metrics.Recorder, method: str, response: Response, labels: Labels,
             seconds: float, counted: _Counted) -> None:
    sent = counted.sent
    if counted.pathsend:  # the server sends the file; it reports no failure back
        sent += int(response.headers.get("Content-Length", 0))
    recorder.request(method, response.status, labels.route, seconds, sent)
    if response.cache is not None:
        recorder.cache(response.cache == "HIT")
    if response.artifact_size is not None and response.status in (200, 206, 302):
        # As pulpcore counts: every artifact answered, whichever way (not 304s).
        recorder.artifact(response.artifact_size, labels.domain)


async def _scrape() -> Response:
    from pulp_content_asgi.metrics.prometheus import CONTENT_TYPE, PrometheusSink

    sink = next(s for s in metrics.current().sinks if isinstance(s, PrometheusSink))
    body = await asyncio.to_thread(sink.render)
    return Response(200, {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}, body)
