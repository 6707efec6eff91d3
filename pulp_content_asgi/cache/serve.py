"""Answering from a cache entry: on the event loop when no I/O is needed, else on the
ORM thread."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils.http import parse_http_date_safe

from pulp_content_asgi import conf, render, results
from pulp_content_asgi.cache.entries import Entry
from pulp_content_asgi.http import conditional

HIT = {"X-PULP-CACHE": "HIT"}


def _validators(entry: Entry) -> tuple[str | None, datetime | None]:
    parsed = parse_http_date_safe(entry.headers.get("Last-Modified", ""))
    return entry.headers.get("ETag"), datetime.fromtimestamp(parsed, tz=UTC) if parsed else None


def _not_modified(entry: Entry, request: Any) -> render.Prepared | None:
    """pulpcore answers 304 from any entry whose validators the client already has."""
    etag, modified = _validators(entry)
    if etag is None and modified is None:
        return None
    if conditional.evaluate(request.method, request.headers, etag, modified) \
            is conditional.Outcome.NOT_MODIFIED:
        kept = {k: v for k, v in entry.headers.items()
                if k in ("Cache-Control", "ETag", "Last-Modified")}
        return render.Prepared(304, {**kept, **HIT})
    return None


def on_loop(entry: Entry, request: Any) -> render.Prepared | None:
    """The response when it needs neither the disk nor the database, else None.

    A whole local file goes out through ``http.response.pathsend`` with the size the entry
    recorded, so an unguarded hit costs no thread hop at all.
    """
    if entry.kind == "FileResponse":
        return _file_on_loop(entry, request)
    if entry.kind == "ArtifactResponse":
        return None
    return from_memory(entry, request)


def _file_on_loop(entry: Entry, request: Any) -> render.Prepared | None:
    offers = "http.response.pathsend" in (request.scope.get("extensions") or {})
    size = entry.headers.get("X-PULP-ARTIFACT-SIZE")
    if not (offers and conf.current().pathsend and size and entry.path) \
            or request.headers.get("Range") is not None:
        return None
    etag, modified = _validators(entry)
    outcome = conditional.evaluate(request.method, request.headers, etag, modified)
    if outcome is conditional.Outcome.FAILED:
        return render.error(412, "Precondition Failed", HIT)
    if outcome is conditional.Outcome.NOT_MODIFIED:
        return _not_modified(entry, request)
    headers = {**entry.headers, "Accept-Ranges": "bytes", "Content-Length": size, **HIT}
    body = None if request.method == "HEAD" else render.PathSend(entry.path)
    return render.Prepared(200, headers, body)


def from_memory(entry: Entry, request: Any) -> render.Prepared:
    """Responses held entirely in the entry (listings, plugin bodies, redirects, 404s)."""
    if entry.kind == "Redirect":
        return render.Prepared(302, {**entry.headers, "Location": entry.location or "",
                                     **HIT}, b"302: Found")
    if entry.kind == "HTTPNotFound":
        return render.error(404, entry.reason or "Not Found", HIT)
    not_modified = _not_modified(entry, request)
    if not_modified is not None:
        return not_modified
    return render.Prepared(entry.status, {**entry.headers, **HIT}, entry.body or b"")


def on_thread(entry: Entry, request: Any) -> render.Prepared | None:
    """Any entry; None when it points at something that is gone (treat as a miss)."""
    if entry.kind == "FileResponse":
        import os

        if not entry.path or not os.path.exists(entry.path):
            return None
        prepared = render.prepare(results.ServeLocalFile(entry.path, entry.headers), request)
    elif entry.kind == "ArtifactResponse":
        from pulpcore.app.models import Artifact

        artifact = Artifact.objects.select_related("pulp_domain").filter(
            pk=entry.artifact_pk).first()
        if artifact is None:
            return None
        prepared = render.prepare(results.ServeArtifact(artifact, str(artifact.pk),
                                                        entry.headers), request)
    else:
        return from_memory(entry, request)
    assert isinstance(prepared, render.Prepared)
    prepared.headers.update(HIT)
    return prepared
