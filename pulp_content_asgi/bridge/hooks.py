"""Existing plugins speak aiohttp: their hooks return or raise aiohttp responses.

``Distribution.content_handler`` may return ``web.Response``, ``json_response``,
``FileResponse``, pulpcore's ``ArtifactResponse``, or raise ``web.HTTPException``
(``PathNotResolved`` included). These become our typed results here, once, so the rest
of the app never sees aiohttp: status, headers and body carry over unchanged and an
error's reason phrase becomes the body text (``"404: <reason>"``, aiohttp's format),
because ASGI cannot send custom reason phrases.
"""

from __future__ import annotations

from typing import Any

from aiohttp import payload, web

from pulp_content_asgi.plugin import results


def _headers(response: web.StreamResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() != "content-length"}


def _body(response: web.Response) -> bytes:
    body = response.body
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, payload.BytesPayload):
        # latin-1 round-trips every byte value, so this is lossless for any payload.
        return body.decode("latin-1").encode("latin-1")
    raise TypeError(f"cannot convert an aiohttp {type(body).__name__} body")


def _content_type(response: web.Response) -> str:
    if "Content-Type" in response.headers:
        return response.headers["Content-Type"]
    body = response.body
    if isinstance(body, payload.Payload) and body.content_type:
        return body.content_type
    if response.charset:
        return f"{response.content_type}; charset={response.charset}"
    return response.content_type


def _from_exception(exc: web.Response) -> results.Result:
    status = exc.status
    if 300 <= status < 400 and "Location" in exc.headers:
        return results.Redirect(exc.headers["Location"], status, _headers(exc))
    if status == 404:
        # pulpcore's cache keeps a 404 whose class says ``cacheable`` (pulp_maven's
        # BloomFiltered; ``AsyncContentCache.make_entry``).
        return results.NotFound(exc.reason, cacheable=getattr(exc, "cacheable", False) is True)
    if status == 403:
        return results.Denied(exc.reason)
    if status >= 400:
        extra = {k: v for k, v in _headers(exc).items() if k.lower() != "content-type"}
        return results.Failure(status, exc.reason, extra)
    return results.ServeBody(_body(exc), status, {**_headers(exc), "Content-Type":
                                                   _content_type(exc)})


def is_aiohttp_response(value: Any) -> bool:
    """Whether a hook returned (or raised) something this bridge converts."""
    return isinstance(value, web.StreamResponse)


def to_result(value: web.StreamResponse) -> results.Result:
    """Convert an aiohttp response or HTTP exception a plugin hook produced."""
    from pulpcore.responses import ArtifactResponse

    if isinstance(value, web.HTTPException):
        return _from_exception(value)
    if isinstance(value, web.Response) and value.status >= 400 and not _body(value):
        # e.g. pulp_rpm's Response(status=404, reason=...): the reason is the message.
        return _from_exception(value)  # type: ignore[arg-type]
    if isinstance(value, ArtifactResponse):
        artifact = value._artifact
        if artifact is None:
            from pulpcore.app.models import Artifact

            artifact = Artifact.objects.select_related("pulp_domain").get(
                pk=value._artifact_pk
            )
        # pulpcore sends an ArtifactResponse's bytes itself, whatever the storage.
        return results.ServeArtifact(artifact, relative_path=str(artifact.pk),
                                     headers=_headers(value), inline=True)
    if isinstance(value, web.FileResponse):
        return results.ServeLocalFile(str(value._path), _headers(value))
    if isinstance(value, web.Response):
        headers = {**_headers(value), "Content-Type": _content_type(value)}
        return results.ServeBody(_body(value), value.status, headers)
    raise TypeError(
        f"A content hook returned an aiohttp {type(value).__name__}, which streams from "
        "inside aiohttp and cannot be converted; return a Response, ArtifactResponse or "
        "FileResponse, or port the hook to pulp_content_asgi.plugin."
    )


def convert(value: object) -> results.Result | None:
    """The result for an aiohttp response or exception a hook produced; None otherwise."""
    if is_aiohttp_response(value):
        return to_result(value)  # type: ignore[arg-type]
    return None
