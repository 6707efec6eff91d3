"""The response cache around the request walk, following pulpcore's ``AsyncContentCache``.

1. On the event loop (:meth:`CachedResolver.on_loop`): find the distribution's hash (the
   longest of the path's ancestors that has one, in one pipelined round trip) and read
   its guard flag; an unguarded distribution's entry is answered right there: no
   database query, and no thread hop for files the server sends itself.
2. Otherwise the ordinary walk runs on the ORM thread (:func:`dispatch.answer`) with
   :meth:`CachedResolver.serve` as its serve step: the distribution was matched and its
   guard checked (guards are never skipped), so the step records whether it has a guard,
   answers a hit, or serves and stores the new entry (``X-PULP-CACHE: MISS``).
On-demand downloads store the saved artifact's entry once the save is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from pulpcore.app.models import ContentArtifact, Distribution

from pulp_content_asgi import db
from pulp_content_asgi.cache import entries, keys, serve
from pulp_content_asgi.cache.store import RedisCache
from pulp_content_asgi.ondemand.plan import RemotePlan
from pulp_content_asgi.plugin import results
from pulp_content_asgi.plugin.request import ContentRequest
from pulp_content_asgi.protocol import paths
from pulp_content_asgi.resolution import dispatch
from pulp_content_asgi.serving import artifacts
from pulp_content_asgi.serving.response import Response

MISS = "MISS"


def _domain(name: str | None) -> str | None:
    return (name or "default") if settings.DOMAIN_ENABLED else None


def entry_for(result: results.Result, response: Response | None = None) -> entries.Entry | None:
    """What the cache keeps for a result (and its response, for signed redirects)."""
    if response is not None and response.status == 302 and isinstance(
            result, results.ServeArtifact):  # an object-storage redirect: keep the URL
        # and the file's validators and Cache-Control, which a hit's 304 uses (not sent
        # on the 302).
        stored = artifacts.stored_headers(result)
        validators: dict[str, str] = {k: stored[k] for k in ("ETag", "Last-Modified")
                                      if k in stored}
        # What a 304 for the file says (serve.from_memory); "" when the file has none.
        validators[serve.FILE_CACHE_CONTROL] = stored.get("Cache-Control", "")
        return entries.Entry("Redirect", {**entries.stored_headers(response.headers),
                                          **validators}, 302,
                             location=response.headers["Location"])
    if response is not None and response.status >= 500:
        return None
    if isinstance(result, results.ServeArtifact) and artifacts.redirects(result):
        # A 304/412 instead of the redirect, or an on-demand save (no response): the
        # entry would serve the bytes to the next client, which must be redirected; that
        # client's answer makes the entry.
        return None
    if isinstance(result, results.ServeArtifact):
        return entries.from_result(result, artifacts.local_path(result.artifact),
                                   artifacts.stored_headers(result))
    return entries.from_result(result, None, {})


@dataclass
class CachedResolver:
    """Resolution with the response cache in front (one per app)."""

    cache: RedisCache
    pathsend: bool

    async def __call__(self, request: ContentRequest,
                       target: paths.RootListing | paths.ContentPath
                       ) -> Response | RemotePlan:
        if not isinstance(target, paths.ContentPath):
            return await db.run(dispatch.answer, request, target)  # not cached
        hit, looked_up = await self.on_loop(request, target)
        if hit is not None:
            return hit
        return await db.run(dispatch.answer, request, target,
                            lambda r, d, p: self.serve(r, d, p, looked_up))

    async def on_loop(self, request: ContentRequest, target: paths.ContentPath
                      ) -> tuple[Response | None, bool]:
        """A hit answered without the database, and whether the entry was looked up."""
        candidates = [keys.base_key(p, _domain(target.domain))
                      for p in keys.ancestors(target.path)]
        base = await self.cache.find_base(candidates)
        if base is None or await self.cache.get(base, keys.GUARD_FIELD) != b"False":
            return None, False
        field = keys.field(request.path, request.method)
        raw = await self.cache.get(base, field)
        entry = entries.decode(raw) if raw is not None else None
        if entry is None:
            if raw is not None:
                await self.cache.forget(base, field)
            return None, True
        offers = self.pathsend and "http.response.pathsend" in (
            request.scope.get("extensions") or {})
        quick = serve.on_loop(entry, request.http, offers)
        if quick is not None:
            return quick, True
        return await db.run(serve.on_thread, entry, request.http), True

    def _hit(self, base: str, field: str, request: ContentRequest) -> Response | None:
        raw = self.cache.get_sync(base, field)
        if raw is None:
            return None
        entry = entries.decode(raw)
        hit = serve.on_thread(entry, request.http) if entry is not None else None
        if hit is None:
            self.cache.forget_sync(base, field)
        return hit

    def serve(self, request: ContentRequest, distribution: Distribution, relative: str,
              looked_up: bool) -> Response | RemotePlan:
        """The serve step of the walk with the cache in the middle (ORM thread)."""
        base = keys.base_key(distribution.base_path, _domain(request.match_info.get(
            "pulp_domain")))
        if self.cache.get_sync(base, keys.GUARD_FIELD) is None:
            self.cache.set_sync(base, keys.GUARD_FIELD,
                                str(distribution.content_guard_id is not None), expire=False)
        field = keys.field(request.path, request.method)
        if not looked_up and (hit := self._hit(base, field, request)) is not None:
            return hit
        result = dispatch.handle(request, distribution, relative)
        # Looked up on the loop before this hop: an on-demand download may have been saved
        # since, storing its entry in the same transaction. Its entry wins, so the request
        # after a download is a hit whichever worker answers it.
        if looked_up and isinstance(result, results.ServeArtifact) \
                and (hit := self._hit(base, field, request)) is not None:
            return hit
        response = dispatch.finish(result, request)
        if isinstance(response, RemotePlan):
            headers, modified = dict(response.headers), response.last_modified
            response.after_save.append(
                lambda saved: self._store_saved(base, field, saved, headers, modified))
            return response
        stored = entry_for(result, response)
        if stored is not None and self.cache.set_sync(
                base, field, entries.encode(stored, self.cache.ttl)) and response.status != 304:
            return response.with_cache(MISS)
        return response

    def _store_saved(self, base: str, field: str, saved: ContentArtifact,
                     headers: dict[str, str], last_modified: datetime | None) -> None:
        """After an on-demand save: the next request is a hit on the stored artifact, with
        the Last-Modified the stream had (and an uncached request would have)."""
        if saved.artifact_id is None:
            return
        saved = ContentArtifact.objects.select_related("artifact__pulp_domain").get(pk=saved.pk)
        entry = entry_for(results.ServeArtifact(saved.artifact, saved.relative_path, headers,
                                                last_modified))
        if entry is not None:
            self.cache.set_sync(base, field, entries.encode(entry, self.cache.ttl))
