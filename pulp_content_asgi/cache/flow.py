"""Where the cache sits in a request, following pulpcore's ``AsyncContentCache``.

1. On the event loop (:func:`lookup`): find the distribution's hash with one EXISTS over
   the path's ancestors, read its guard flag; an unguarded distribution's entry is served
   right there: no database query, and no thread hop for pathsend-able files.
2. Otherwise, on the ORM thread (:func:`resolve`): match the distribution and check its
   guard on every request (guards are never skipped), record whether it has one, serve a
   hit, or resolve and store the new entry (``X-PULP-CACHE: MISS``).
On-demand downloads store the saved artifact's entry once the save is done.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from pulpcore.app.models import ContentArtifact, Distribution

from pulp_content_asgi import db, render, results, router
from pulp_content_asgi.cache import entries, keys, serve
from pulp_content_asgi.cache.store import RedisCache
from pulp_content_asgi.http import paths
from pulp_content_asgi.ondemand.plan import RemotePlan

MISS = {"X-PULP-CACHE": "MISS"}


def _domain(name: str | None) -> str | None:
    return (name or "default") if settings.DOMAIN_ENABLED else None


async def lookup(cache: RedisCache, request: Any, target: paths.ContentPath
                 ) -> tuple[render.Prepared | None, bool]:
    """A hit answered without the database, and whether the entry was looked up here."""
    candidates = [keys.base_key(p, _domain(target.domain)) for p in keys.ancestors(target.path)]
    base = await cache.find_base(candidates)
    if base is None or await cache.get(base, keys.GUARD_FIELD) != b"False":
        return None, False
    field = keys.field(request.path, request.method)
    raw = await cache.get(base, field)
    if raw is None:
        return None, True
    entry = entries.decode(raw)
    if entry is None:
        await cache.forget(base, field)
        return None, True
    quick = serve.on_loop(entry, request)
    if quick is not None:
        return quick, True
    return await db.run(serve.on_thread, entry, request), True


def _entry_for(result: results.Result) -> entries.Entry | None:
    if isinstance(result, results.ServeArtifact):
        local, headers = render.stored_form(result)
        return entries.from_result(result, local, headers)
    return entries.from_result(result, None, {})


def resolve(cache: RedisCache, request: Any, target: paths.RootListing | paths.ContentPath,
            looked_up: bool) -> render.Prepared | RemotePlan:
    """The request's ORM unit of work with the cache in the middle (ORM thread)."""
    located = router.locate(request, target)
    if not isinstance(located, Distribution):
        return render.prepare(located, request)  # listings of distributions: not cached
    assert isinstance(target, paths.ContentPath)
    base = keys.base_key(located.base_path, _domain(target.domain))
    relative = router.admit(request, located, target)
    if cache.get_sync(base, keys.GUARD_FIELD) is None:
        cache.set_sync(base, keys.GUARD_FIELD, str(located.content_guard_id is not None),
                       expire=False)
    if not isinstance(relative, str):
        return render.prepare(relative, request)  # refusals and redirects: not cached
    field = keys.field(request.path, request.method)
    if not looked_up:
        raw = cache.get_sync(base, field)
        entry = entries.decode(raw) if raw is not None else None
        hit = serve.on_thread(entry, request) if entry is not None else None
        if hit is not None:
            return hit
        if raw is not None:
            cache.forget_sync(base, field)
    result = router.serve(request, located, relative)
    if looked_up and isinstance(result, results.ServeArtifact):
        # Looked up on the loop before this hop: an on-demand download may have been
        # saved since, storing its entry in the same transaction. Its entry wins, so the
        # request after a download is a hit whichever worker answers it.
        raw = cache.get_sync(base, field)
        saved = entries.decode(raw) if raw is not None else None
        hit = serve.on_thread(saved, request) if saved is not None else None
        if hit is not None:
            return hit
    prepared = render.prepare(result, request)
    if isinstance(prepared, RemotePlan):
        headers = dict(prepared.headers)
        prepared.after_save.append(lambda saved: _store_saved(cache, base, field, saved,
                                                              headers))
        return prepared
    stored = _entry_for_response(result, prepared)
    if stored is not None and cache.set_sync(base, field, entries.encode(stored, cache.ttl)) \
            and prepared.status != 304:
        prepared.headers.update(MISS)
    return prepared


def _entry_for_response(result: results.Result, prepared: render.Prepared
                        ) -> entries.Entry | None:
    if prepared.status == 302:  # an object-storage redirect: cache the signed location
        return entries.Entry("Redirect", entries.stored_headers(prepared.headers), 302,
                             location=prepared.headers["Location"])
    return _entry_for(result) if prepared.status < 500 else None


def _store_saved(cache: RedisCache, base: str, field: str, saved: ContentArtifact,
                 headers: dict[str, str]) -> None:
    """After an on-demand save: the next request is a hit on the stored artifact."""
    if saved.artifact_id is None:
        return
    saved = ContentArtifact.objects.select_related("artifact__pulp_domain").get(pk=saved.pk)
    entry = _entry_for(results.ServeArtifact(saved.artifact, saved.relative_path, headers))
    if entry is not None:
        cache.set_sync(base, field, entries.encode(entry, cache.ttl))
