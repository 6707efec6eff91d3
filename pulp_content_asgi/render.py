"""The one place typed results become HTTP responses.

``prepare`` runs on the ORM thread right after resolution (same hop): it opens files,
evaluates preconditions and ranges and reads small bodies, so the event loop never does
blocking I/O and a small file costs no extra thread hop. ``send`` then writes the
response over ASGI: in-memory bytes, a whole local file handed to the server through
``http.response.pathsend`` when offered, or a bounded async stream read off the loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import IO, Any, Protocol

from django.utils.http import http_date, parse_http_date_safe
from pulpcore.constants import STORAGE_RESPONSE_MAP

from pulp_content_asgi import conf, results
from pulp_content_asgi.http import conditional, listing, ranges
from pulp_content_asgi.http.paths import quote_location
from pulp_content_asgi.ondemand import plan
from pulp_content_asgi.ondemand.plan import RemotePlan

log = logging.getLogger(__name__)

FILESYSTEM_STORAGE = "pulpcore.app.models.storage.FileSystem"
#: Storages whose signed URLs are bound to the HTTP method (HEAD gets a HEAD URL).
SIGNS_METHOD = frozenset({"storages.backends.s3boto3.S3Boto3Storage",
                          "storages.backends.s3.S3Storage"})
#: GCS signs the method too (V4), but takes it among the signing parameters.
GCS = "storages.backends.gcloud.GoogleCloudStorage"


@dataclass
class FileBody:
    """``length`` bytes of an open file from ``offset``; the sender closes the file."""

    file: IO[bytes]
    offset: int
    length: int


@dataclass(frozen=True)
class PathSend:
    """A whole local file the server sends itself (ASGI ``http.response.pathsend``)."""

    path: str


class LiveBody(Protocol):
    """A body produced while it is sent (a download in progress); released afterwards."""

    def release(self) -> None: ...


@dataclass
class Prepared:
    """A response ready to go out: status, headers and what the body is."""

    status: int
    headers: dict[str, str]
    body: bytes | FileBody | PathSend | LiveBody | None = None


def error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> Prepared:
    """aiohttp's error format (``"404: Not Found"``): the reason phrase goes in the body."""
    return Prepared(status, {**(headers or {}), "Content-Type": "text/plain; charset=utf-8"},
                    f"{status}: {reason}".encode())


@dataclass(frozen=True)
class _File:
    """An opened file and the validators that describe it."""

    file: IO[bytes]
    size: int
    etag: str | None
    last_modified: datetime | None
    local_path: str | None


def _last_modified(headers: Mapping[str, str], fallback: datetime | None) -> datetime | None:
    if "Last-Modified" in headers:
        parsed = parse_http_date_safe(headers["Last-Modified"])
        return datetime.fromtimestamp(parsed, tz=UTC) if parsed else None
    return fallback


def _serve_file(source: _File, headers: dict[str, str], request: Any) -> Prepared:
    """Preconditions, then Range, then the body (RFC 9110 §13.2.2 order)."""
    if source.etag:
        headers["ETag"] = source.etag
    if source.last_modified and "Last-Modified" not in headers:
        headers["Last-Modified"] = http_date(source.last_modified.timestamp())
    headers.setdefault("Content-Type", "application/octet-stream")
    outcome = conditional.evaluate(request.method, request.headers, source.etag,
                                   source.last_modified)
    if outcome is not conditional.Outcome.PROCEED:
        source.file.close()
        if outcome is conditional.Outcome.FAILED:
            return error(412, "Precondition Failed")
        kept = ("Cache-Control", "ETag", "Last-Modified")
        return Prepared(304, {k: v for k, v in headers.items() if k in kept})
    headers["Accept-Ranges"] = "bytes"
    try:
        spec = ranges.parse_range_header(request.headers.get("Range"))
        wanted = None
        if spec and ranges.if_range_allows(request.headers.get("If-Range"), source.etag,
                                           source.last_modified):
            wanted = ranges.resolve_range(spec, source.size)
    except ranges.RangeNotSatisfiable:
        source.file.close()
        # As pulpcore-content: the validators and artifact size come along.
        validators = {k: v for k, v in headers.items()
                      if k in ("ETag", "Last-Modified", "X-PULP-ARTIFACT-SIZE")}
        return error(416, "Range Not Satisfiable", {
            **validators, "Content-Range": ranges.unsatisfied_content_range(source.size)})
    status, offset, length = 200, 0, source.size
    if wanted is not None:
        status, offset, length = 206, wanted.start, wanted.length
        headers["Content-Range"] = wanted.content_range(source.size)
    headers["Content-Length"] = str(length)
    return Prepared(status, headers, _body(source, request, status, offset, length))


def _body(source: _File, request: Any, status: int, offset: int, length: int
          ) -> bytes | FileBody | PathSend | None:
    settings = conf.current()
    if request.method == "HEAD":
        source.file.close()
        return None
    if length <= settings.inline_file_size:
        try:
            source.file.seek(offset)
            return source.file.read(length)
        finally:
            source.file.close()
    offers_pathsend = "http.response.pathsend" in (request.scope.get("extensions") or {})
    if status == 200 and source.local_path and settings.pathsend and offers_pathsend:
        source.file.close()
        return PathSend(source.local_path)
    return FileBody(source.file, offset, length)


def _open_artifact(result: results.ServeArtifact) -> _File | Prepared:
    artifact = result.artifact
    domain = artifact.pulp_domain
    name = artifact.file.name
    storage = domain.get_storage()
    local_path = None
    try:
        if domain.storage_class == FILESYSTEM_STORAGE:
            local_path = storage.path(name)
            handle: IO[bytes] = open(local_path, "rb")  # noqa: SIM115 - closed by the sender
            size = os.fstat(handle.fileno()).st_size
        else:
            handle = storage.open(name, "rb")
            size = artifact.size
    except FileNotFoundError:
        log.error(
            "Artifact %s (sha256 %s) is missing from storage at %r, served as %r. Restore the "
            "file or run Pulp's repair task (POST /pulp/api/v3/repair/) to fetch it again.",
            artifact.pk, artifact.sha256, local_path or name, result.relative_path,
        )
        return error(500, f"The file for {result.relative_path!r} is missing from storage; "
                           "the server log names the artifact.")
    return _File(handle, size, f'"{artifact.sha256}"',
                 _last_modified(result.headers, _artifact_time(result)), local_path)


def _artifact_time(result: results.ServeArtifact) -> datetime | None:
    """When the content was published, else when the (immutable) artifact was stored:
    artifacts served outside a repository (artifact URLs, plugin hooks) still get a
    Last-Modified, as pulpcore-content's file mtime gives them one."""
    return result.last_modified or result.artifact.pulp_created


def _open_local(result: results.ServeLocalFile) -> _File | Prepared:
    try:
        handle: IO[bytes] = open(result.path, "rb")  # noqa: SIM115 - closed by the sender
    except FileNotFoundError:
        log.error("A content hook asked to serve %r, which does not exist.", result.path)
        return error(404, "Not Found")
    stat = os.fstat(handle.fileno())
    modified = datetime.fromtimestamp(int(stat.st_mtime), tz=UTC)
    etag = result.headers.get("ETag") or f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    return _File(handle, stat.st_size, etag, _last_modified(result.headers, modified),
                 result.path)


def stored_form(result: results.ServeArtifact) -> tuple[str | None, dict[str, str]]:
    """Where an artifact's bytes are locally (None for other storage) and the headers of
    its 200 response, as the response cache keeps them."""
    artifact = result.artifact
    domain = artifact.pulp_domain
    headers = dict(result.headers)
    headers.setdefault("Content-Type", "application/octet-stream")
    headers["ETag"] = f'"{artifact.sha256}"'
    modified = _last_modified(result.headers, _artifact_time(result))
    if modified and "Last-Modified" not in headers:
        headers["Last-Modified"] = http_date(modified.timestamp())
    headers["X-PULP-ARTIFACT-SIZE"] = str(artifact.size)
    local = None
    if domain.storage_class == FILESYSTEM_STORAGE:
        local = domain.get_storage().path(artifact.file.name)
    return local, headers


def redirect(result: results.Redirect) -> Prepared:
    """A redirect; local paths are percent-encoded (the body is aiohttp's text)."""
    location = result.location
    if result.status == 301 and location.startswith("/"):
        location = quote_location(location)
    phrase = HTTPStatus(result.status).phrase
    return Prepared(result.status, {**result.headers, "Location": location,
                                    "Content-Type": "text/plain; charset=utf-8"},
                    f"{result.status}: {phrase}".encode())


def _storage_redirect(result: results.ServeArtifact, request: Any) -> Prepared | None:
    """302 to a URL the object storage signed (for this method), as pulpcore does when
    ``Domain.redirect_to_object_storage`` is on; None to serve the bytes ourselves."""
    artifact = result.artifact
    domain = artifact.pulp_domain
    if domain.storage_class == FILESYSTEM_STORAGE or not domain.redirect_to_object_storage:
        return None
    mapping = STORAGE_RESPONSE_MAP.get(domain.storage_class)
    if mapping is None:
        log.error("REDIRECT_TO_OBJECT_STORAGE is on for domain %r but its storage %s cannot "
                  "sign URLs; turn redirects off for this domain so the content app serves "
                  "the bytes itself.", domain.name, domain.storage_class)
        return error(500, "The storage of this domain cannot redirect downloads; the server "
                          "log says what to change.")
    _, headers = stored_form(result)
    headers["Content-Disposition"] = (
        f"attachment;filename={os.path.basename(result.relative_path)}")
    parameters = {mapping[name]: value for name, value in headers.items()
                  if name in mapping and value}
    extra = {"http_method": request.method} if domain.storage_class in SIGNS_METHOD else {}
    if domain.storage_class == GCS:
        parameters["method"] = request.method  # pulpcore signs GET only: HEAD would fail
    location = domain.get_storage().url(artifact.file.name, parameters=parameters, **extra)
    headers["Cache-Control"] = "no-store"  # a signed URL must not be kept by shared caches
    headers.pop("ETag", None)
    headers.pop("Last-Modified", None)
    return redirect(results.Redirect(location, 302, headers))


def prepare(result: results.Result, request: Any) -> Prepared | RemotePlan:
    """Turn a result into a response; may block (file I/O, ORM), so it runs off the loop.

    Remote content becomes a plan that :mod:`pulp_content_asgi.ondemand.respond` turns
    into a response once the upstream headers are in.
    """
    if isinstance(result, results.ServeRemote):
        return plan.make(result, getattr(request, "received_at", None))
    if isinstance(result, results.ServeArtifact):
        redirected = _storage_redirect(result, request)
        if redirected is not None:
            return redirected
    if isinstance(result, (results.ServeArtifact, results.ServeLocalFile)):
        opened = (_open_artifact(result) if isinstance(result, results.ServeArtifact)
                  else _open_local(result))
        if isinstance(opened, Prepared):
            return opened
        headers = dict(result.headers)
        if isinstance(result, results.ServeArtifact):
            headers["X-PULP-ARTIFACT-SIZE"] = str(result.artifact.size)
        return _serve_file(opened, headers, request)
    if isinstance(result, results.ServeListing):
        page = listing.render(result.listing).encode()
        return Prepared(200, {"Content-Type": listing.CONTENT_TYPE, **result.headers}, page)
    if isinstance(result, results.ServeBody):
        return Prepared(result.status, {**result.headers}, result.body)
    if isinstance(result, results.Redirect):
        return redirect(result)
    if isinstance(result, results.NotFound):
        return error(404, result.reason)
    if isinstance(result, results.Denied):
        return error(403, result.reason)
    if isinstance(result, results.Failure):
        return error(result.status, result.reason, result.headers)
    raise TypeError(f"not a content result: {result!r}")
