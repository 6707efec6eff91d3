"""Cache entries: what a response becomes in Redis, and back (pulpcore's JSON format).

* ``FileResponse`` (``path``): artifacts on FileSystem storage;
* ``ArtifactResponse`` (``artifact_pk``): artifacts proxied from other storage;
* ``Response`` (``text``, or ``body`` in hex): listings and plugin responses;
* ``Redirect`` (``location``): 302s to object storage;
* ``HTTPNotFound`` (``reason``): 404s of distributions with a source and no remote.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from pulp_content_asgi.plugin import results
from pulp_content_asgi.protocol import listing

#: Headers computed per response (never stored: they depend on the request).
PER_RESPONSE = frozenset({"content-length", "content-range", "accept-ranges", "x-pulp-cache",
                          "location"})


@dataclass(frozen=True)
class Entry:
    kind: str
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    path: str | None = None
    artifact_pk: str | None = None
    body: bytes | None = None
    location: str | None = None
    reason: str | None = None


def stored_headers(headers: Any) -> dict[str, str]:
    return {k: v for k, v in dict(headers).items() if k.lower() not in PER_RESPONSE}


def encode(entry: Entry, ttl: float | None, now: float | None = None) -> str:
    data: dict[str, Any] = {"headers": entry.headers, "type": entry.kind,
                            "expires": None if ttl is None else ttl + (now or time.time())}
    if entry.kind in ("FileResponse", "ArtifactResponse", "Response"):
        data["status"] = entry.status
    if entry.kind == "FileResponse":
        data["path"] = entry.path
    elif entry.kind == "ArtifactResponse":
        data["artifact_pk"] = entry.artifact_pk
    elif entry.kind == "Response":
        data["body"] = (entry.body or b"").hex()
    elif entry.kind == "Redirect":
        data["location"] = entry.location
    elif entry.kind == "HTTPNotFound":
        data["reason"] = entry.reason
    return json.dumps(data)


def decode(raw: bytes | str, now: float | None = None) -> Entry | None:
    """The entry, or None if it is unknown, malformed or expired (delete it then)."""
    try:
        data = json.loads(raw)
        kind = data["type"]
    except (ValueError, KeyError, TypeError):
        return None
    expires = data.get("expires", -1)  # None: never expires; missing: already expired
    if expires is not None and expires < (now or time.time()):
        return None
    headers = {str(k): str(v) for k, v in (data.get("headers") or {}).items()}
    status = int(data.get("status", 200))
    if kind == "FileResponse" and data.get("path"):
        return Entry(kind, headers, status, path=str(data["path"]))
    if kind == "ArtifactResponse" and data.get("artifact_pk"):
        return Entry(kind, headers, status, artifact_pk=str(data["artifact_pk"]))
    if kind == "Response":
        if data.get("body") is not None:
            body = bytes.fromhex(data["body"])
        else:
            body = str(data.get("text", "")).encode()
        return Entry(kind, headers, status, body=body)
    if kind == "Redirect" and data.get("location"):
        return Entry(kind, headers, 302, location=str(data["location"]))
    if kind == "HTTPNotFound":
        return Entry(kind, headers, 404, reason=str(data.get("reason") or "Not Found"))
    return None


def from_result(result: results.Result, local_path: str | None, headers: dict[str, str]
                ) -> Entry | None:
    """The entry for a resolved result, or None when it must not be cached (301s, 403s,
    errors, streams that are not saved yet)."""
    if isinstance(result, results.ServeArtifact):
        if local_path is not None:
            return Entry("FileResponse", stored_headers(headers), path=local_path)
        return Entry("ArtifactResponse", stored_headers(headers),
                     artifact_pk=str(result.artifact.pk))
    if isinstance(result, results.ServeListing):
        body = listing.render(result.listing).encode()
        return Entry("Response", {"Content-Type": listing.CONTENT_TYPE, **dict(result.headers)},
                     body=body)
    if isinstance(result, results.ServeBody) and 200 <= result.status < 300:
        return Entry("Response", stored_headers(result.headers), result.status,
                     body=result.body)
    if isinstance(result, results.Redirect) and result.status == 302:
        return Entry("Redirect", stored_headers(result.headers), 302,
                     location=result.location)
    if isinstance(result, results.NotFound) and result.cacheable:
        return Entry("HTTPNotFound", {}, 404, reason=result.reason)
    return None
