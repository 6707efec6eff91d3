"""Answering from a cache entry: the entry becomes a representation and the single
responder answers it, on the event loop when no I/O is needed, else on the ORM thread."""

from __future__ import annotations

import functools
import os

from pulp_content_asgi.cache.entries import Entry
from pulp_content_asgi.plugin import results
from pulp_content_asgi.serving import artifacts
from pulp_content_asgi.serving.representation import FileSource, from_headers, header
from pulp_content_asgi.serving.responder import Request, preconditions, respond
from pulp_content_asgi.serving.response import Response, redirect, text

HIT = "HIT"
#: Kept in an object-storage redirect's entry, never sent on its 302: the ``Cache-Control``
#: of the file the redirect stands for, which a ``304`` carries (the 302's own is
#: ``no-store``). A header, not a field of its own, because pulpcore-content reads these
#: entries during a rolling upgrade and passes every other field to ``HTTPFound``.
FILE_CACHE_CONTROL = "X-Content-Asgi-File-Cache-Control"
#: Kept in a redirect's entry for the preconditions, never sent on the 302 itself.
VALIDATORS = frozenset({"etag", "last-modified", FILE_CACHE_CONTROL.lower()})


def on_loop(entry: Entry, request: Request, pathsend: bool) -> Response | None:
    """The response when it needs neither the disk nor the database, else None.

    A whole local file that the server sends itself (``pathsend``) is answered with the
    size the entry recorded, so an unguarded hit costs no thread hop at all.
    """
    if entry.kind == "FileResponse":
        if not pathsend or request.headers.get("Range") is not None:
            return None
        size = header(entry.headers, "X-PULP-ARTIFACT-SIZE")
        if not size or not entry.path:
            return None
        return _file(entry.path, int(size), entry, request)
    if entry.kind == "ArtifactResponse":
        return None
    return from_memory(entry, request)


def _file(path: str, size: int, entry: Entry, request: Request) -> Response:
    source = FileSource(functools.partial(artifacts.open_local, path), path)
    return respond(from_headers(source, size, entry.headers), request).with_cache(HIT)


def from_memory(entry: Entry, request: Request) -> Response:
    """Responses held entirely in the entry (listings, plugin bodies, redirects, 404s)."""
    if entry.kind == "Redirect":
        # An object-storage redirect's entry keeps the validators of the file it stands
        # for (pulpcore's entries too): preconditions come first, as on a miss.
        early = preconditions(from_headers(b"", None, _file_headers(entry.headers)), request)
        if early is not None:
            return early.with_cache(HIT)
        sent = {k: v for k, v in entry.headers.items() if k.lower() not in VALIDATORS}
        return redirect(entry.location or "", 302, sent).with_cache(HIT)
    if entry.kind == "HTTPNotFound":
        return text(404, entry.reason or "Not Found").with_cache(HIT)
    body = entry.body or b""
    if entry.status != 200:
        return Response(entry.status, {**entry.headers, "Content-Length": str(len(body))},
                        None if request.method == "HEAD" else body, cache=HIT)
    return respond(from_headers(body, len(body), entry.headers, ranges=False),
                   request).with_cache(HIT)


def _file_headers(stored: dict[str, str]) -> dict[str, str]:
    """A redirect entry's headers as the file's: its own ``Cache-Control`` (none when kept
    empty) in place of the 302's, so a ``304`` says what a miss's does, without the
    private name. Entries that do not keep it (written by pulpcore-content or an older
    version) keep the 302's."""
    kept = header(stored, FILE_CACHE_CONTROL)
    headers = {k: v for k, v in stored.items() if k.lower() != FILE_CACHE_CONTROL.lower()}
    if kept is None:
        return headers
    headers = {k: v for k, v in headers.items() if k.lower() != "cache-control"}
    return {**headers, "Cache-Control": kept} if kept else headers


def on_thread(entry: Entry, request: Request) -> Response | None:
    """Any entry; None when it points at something that is gone (treat as a miss)."""
    if entry.kind == "FileResponse":
        if not entry.path:
            return None
        try:
            size = os.stat(entry.path).st_size
        except FileNotFoundError:
            return None
        return _file(entry.path, size, entry, request)
    if entry.kind == "ArtifactResponse":
        from pulpcore.app.models import Artifact

        artifact = Artifact.objects.select_related("pulp_domain").filter(
            pk=entry.artifact_pk).first()
        if artifact is None:
            return None
        served = results.ServeArtifact(artifact, str(artifact.pk), entry.headers)
        try:
            rep = artifacts.artifact(served)
        except artifacts.MissingFile:
            return None
        return respond(rep, request).with_cache(HIT)
    return from_memory(entry, request)
