"""Representations of stored artifacts and local files, and object-storage redirects.

Runs on the ORM thread, in the request's one hop: it reads the artifact's domain and
storage, stats local files (a missing file is found here, with an operator message,
before anything is sent) and signs object-storage URLs. Opening and reading the bytes is
left to the sender, off the event loop.
"""

from __future__ import annotations

import functools
import logging
import os
from datetime import UTC, datetime
from typing import IO, Any

from pulpcore.constants import STORAGE_RESPONSE_MAP

from pulp_content_asgi.plugin import results
from pulp_content_asgi.serving.representation import (
    FileSource,
    Representation,
    header,
    parse_last_modified,
)
from pulp_content_asgi.serving.responder import representation_headers
from pulp_content_asgi.serving.response import Response, redirect, text

log = logging.getLogger(__name__)

FILESYSTEM_STORAGE = "pulpcore.app.models.storage.FileSystem"
#: Storages whose signed URLs are bound to the HTTP method (HEAD gets a HEAD URL).
SIGNS_METHOD = frozenset({"storages.backends.s3boto3.S3Boto3Storage",
                          "storages.backends.s3.S3Storage"})
#: GCS signs the method too (V4), but takes it among the signing parameters.
GCS = "storages.backends.gcloud.GoogleCloudStorage"


class MissingFile(Exception):
    """A file resolution promised is not in storage; the message is for the client."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.body)
        self.response = response


def _artifact_time(result: results.ServeArtifact) -> datetime | None:
    """When the content was published, else when the (immutable) artifact was stored:
    artifacts served outside a repository (artifact URLs, plugin hooks) still get a
    Last-Modified, as pulpcore-content's file mtime gives them one."""
    return result.last_modified or result.artifact.pulp_created


def open_local(path: str) -> IO[bytes]:
    """Open a local file for sending (the sender closes it)."""
    return open(path, "rb")


def local_path(artifact: Any) -> str | None:
    """Where the artifact's bytes are on this host; None for other storage."""
    domain = artifact.pulp_domain
    if domain.storage_class != FILESYSTEM_STORAGE:
        return None
    return str(domain.get_storage().path(artifact.file.name))


def artifact(result: results.ServeArtifact, stat: bool = True) -> Representation:
    """The artifact as served: ETag = quoted sha256, Last-Modified, its size.

    ``stat`` checks a local file's presence and takes its real size; raises
    :class:`MissingFile` (a 500 naming the path, and a log line naming the artifact) when
    the file is gone.
    """
    art = result.artifact
    path = local_path(art)
    size = art.size
    if path is not None and stat:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise MissingFile(_missing(result, path)) from None
    if path is not None:
        source = FileSource(functools.partial(open_local, path), path)
    else:
        storage = art.pulp_domain.get_storage()
        source = FileSource(functools.partial(storage.open, art.file.name, "rb"))
    modified = parse_last_modified(result.headers) or _artifact_time(result)
    return Representation(source, size, dict(result.headers), f'"{art.sha256}"', modified,
                          artifact_size=art.size)


def _missing(result: results.ServeArtifact, where: str) -> Response:
    art = result.artifact
    log.error(
        "Artifact %s (sha256 %s) is missing from storage at %r, served as %r. Restore the "
        "file or run Pulp's repair task (POST /pulp/api/v3/repair/) to fetch it again.",
        art.pk, art.sha256, where, result.relative_path,
    )
    return text(500, f"The file for {result.relative_path!r} is missing from storage; "
                     "the server log names the artifact.")


def local_file(path: str, headers: dict[str, str]) -> Representation:
    """A local file that is not an artifact (what legacy hooks return as FileResponse);
    raises :class:`MissingFile` (404) if it does not exist."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        log.error("A content hook asked to serve %r, which does not exist.", path)
        raise MissingFile(text(404, "Not Found")) from None
    modified = parse_last_modified(headers) or datetime.fromtimestamp(int(stat.st_mtime), tz=UTC)
    etag = headers.get("ETag") or f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    kept = {k: v for k, v in headers.items() if k.lower() != "etag"}
    return Representation(FileSource(functools.partial(open_local, path), path),
                          stat.st_size, kept, etag, modified)


def stored_headers(result: results.ServeArtifact) -> dict[str, str]:
    """The headers of the artifact's 200 without its length (what the cache stores)."""
    return representation_headers(artifact(result, stat=False))


def redirects(result: results.ServeArtifact) -> bool:
    """Whether the client is sent to the storage instead of getting the bytes from us:
    never ``inline`` results or FileSystem domains; otherwise when the domain's
    ``redirect_to_object_storage`` is on (as pulpcore), or the result asks for it
    (``redirect``) and the storage can sign a URL."""
    if result.inline:
        return False
    storage_class = result.artifact.pulp_domain.storage_class
    if storage_class == FILESYSTEM_STORAGE:
        return False
    if result.artifact.pulp_domain.redirect_to_object_storage:
        return True
    return result.redirect and storage_class in STORAGE_RESPONSE_MAP


def storage_redirect(result: results.ServeArtifact, method: str) -> Response | None:
    """302 to a URL the object storage signed (for this method), as pulpcore does when
    ``Domain.redirect_to_object_storage`` is on; None to serve the bytes ourselves
    (:func:`redirects`). Preconditions are the caller's (they come first)."""
    if not redirects(result):
        return None
    art = result.artifact
    domain = art.pulp_domain
    mapping = STORAGE_RESPONSE_MAP.get(domain.storage_class)
    if mapping is None:
        log.error("REDIRECT_TO_OBJECT_STORAGE is on for domain %r but its storage %s cannot "
                  "sign URLs; turn redirects off for this domain so the content app serves "
                  "the bytes itself.", domain.name, domain.storage_class)
        return text(500, "The storage of this domain cannot redirect downloads; the server "
                         "log says what to change.")
    headers = stored_headers(result)
    headers.pop("Accept-Ranges", None)
    disposition = f"attachment;filename={os.path.basename(result.relative_path)}"
    headers["Content-Disposition"] = disposition
    # The storage is told what the handler said about the file, as pulpcore tells it: a
    # type only when the handler named one (without, the object's own type stands).
    described = {**{k: v for k, v in result.headers.items()
                    if k.lower() != "content-disposition"},
                 "Content-Disposition": disposition}
    parameters = {mapping[name]: value for name in mapping
                  if (value := header(described, name))}
    extra = {"http_method": method} if domain.storage_class in SIGNS_METHOD else {}
    if domain.storage_class == GCS:
        parameters["method"] = method  # pulpcore signs GET only: HEAD would fail
    location = domain.get_storage().url(art.file.name, parameters=parameters, **extra)
    headers["Cache-Control"] = "no-store"  # a signed URL must not be kept by shared caches
    headers.pop("ETag", None)
    headers.pop("Last-Modified", None)
    response = redirect(location, 302, headers)
    return Response(302, response.headers, response.body, artifact_size=art.size)
