"""Example ASGI middlewares for ``CONTENT_ASGI_MIDDLEWARE`` (docs/settings.md#middleware).

The ASGI versions of the two aiohttp middlewares pulp-service adds to pulpcore-content:
copy them into a module of your own and list their dotted paths, e.g.::

    CONTENT_ASGI_MIDDLEWARE = ["mysite.content_middleware.TrueClientIP",
                               "mysite.content_middleware.OrgIdHeader"]

A middleware is a callable taking the ASGI application and returning one. It wraps every
request the server passes (HTTP and lifespan), so pass other scope types on untouched.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


class TrueClientIP:
    """The client address a CDN (Akamai) reports in ``True-Client-IP``, for everything
    that looks at the request: it is put first in ``X-Forwarded-For`` (what guards, plugin
    hooks and, behind the legacy fallback, pulpcore-content read) and made the request's
    client address (what the access log writes). A value that is not an IP address is
    ignored. Only use it behind a CDN that always sets or strips the header: clients can
    send it themselves.
    """

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        offered = _header(scope, b"true-client-ip") if scope["type"] == "http" else None
        if offered:
            try:
                address = str(ipaddress.ip_address(offered.decode("latin-1").strip()))
            except ValueError:
                address = None
            if address:
                scope = dict(scope)  # the server's scope stays as it was
                before = _header(scope, b"x-forwarded-for")
                chain = address.encode() + (b", " + before if before else b"")
                scope["headers"] = [(k, v) for k, v in scope["headers"]
                                    if k.lower() != b"x-forwarded-for"]
                scope["headers"].append((b"x-forwarded-for", chain))
                scope["client"] = (address, (scope.get("client") or ("", 0))[1])
        await self.app(scope, receive, send)


class OrgIdHeader:
    """``X-RH-ORG-ID`` on every response (content, errors, the legacy fallback's) to a
    request whose ``x-rh-identity`` header (the base64 JSON identity Red Hat's gateway
    adds) names an ``identity.org_id``. A header that cannot be decoded adds nothing
    (pulp-service's aiohttp version answers 500)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        org_id = _org_id(scope) if scope["type"] == "http" else None
        if org_id is None:
            await self.app(scope, receive, send)
            return

        async def send_with_org_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Replaced, not added: behind the legacy fallback, pulpcore-content's own
                # aiohttp middleware may have set it already.
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() != b"x-rh-org-id"]
                headers.append((b"x-rh-org-id", org_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_org_id)


def _org_id(scope: Scope) -> str | None:
    identity = _header(scope, b"x-rh-identity")
    if not identity:
        return None
    try:
        decoded = json.loads(base64.b64decode(identity, validate=True))
        org_id = decoded["identity"]["org_id"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    text = str(org_id) if isinstance(org_id, (str, int)) else ""
    return text if text and text.isascii() and text.isprintable() else None
