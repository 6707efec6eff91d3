"""Header rules of a gateway that forwards requests to another server (RFC 9110 §7.6).

Pure: ASGI header lists (lower-case ``bytes`` names, ``bytes`` values) in, header lists
out. Used by the legacy fallback (:mod:`pulp_content_asgi.bridge.legacy`), which forwards
the paths nothing here serves to pulpcore-content the way nginx's ``proxy_pass`` does with
Pulp's own proxy configuration: hop-by-hop fields dropped both ways, the client's ``Host``
kept (pulpcore-content builds the same URLs as when asked directly), ``Via`` and
``X-Forwarded-For`` extended, ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` added when
no proxy in front set them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Headers = list[tuple[bytes, bytes]]

#: Fields that describe one connection, never forwarded (RFC 9110 §7.6.1 names
#: ``Connection`` and, as examples, ``Proxy-Connection``, ``Keep-Alive``, ``TE``,
#: ``Transfer-Encoding`` and ``Upgrade``). ``Proxy-Authenticate``/``Proxy-Authorization``
#: are meant for the proxy they talk to (§11.7), and ``Trailer`` announces trailers that an
#: ASGI response does not carry; nginx drops all of them too.
HOP_BY_HOP = frozenset({
    b"connection", b"proxy-connection", b"keep-alive", b"te", b"transfer-encoding",
    b"upgrade", b"trailer", b"proxy-authenticate", b"proxy-authorization",
})
#: ``Via``'s pseudonym for this hop (RFC 9110 §7.6.3: a host name is not required).
PSEUDONYM = b"pulp-content-asgi"
#: ASGI ``http_version`` as ``Via``'s received-protocol spells it (granian: "1" for 1.0).
_VERSIONS = {"1": b"1.0", "1.0": b"1.0", "1.1": b"1.1", "2": b"2", "2.0": b"2", "3": b"3"}


def _tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def without_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """``headers`` (names lower-cased) less the hop-by-hop fields and every field the
    ``Connection`` header names (RFC 9110 §7.6.1: a proxy removes both)."""
    pairs = [(name.lower(), value) for name, value in headers]
    named: set[bytes] = set()
    for name, value in pairs:
        if name == b"connection":
            named |= _tokens(value)
    return [(n, v) for n, v in pairs if n not in HOP_BY_HOP and n not in named]


def _joined(headers: Headers, name: bytes) -> bytes | None:
    """Every value of ``name`` as one comma-separated list (RFC 9110 §5.3), or None."""
    values = [v.strip() for n, v in headers if n == name]
    return b", ".join(values) if values else None


def _extend(headers: Headers, name: bytes, element: bytes) -> Headers:
    """``name`` (one field, all values joined) with ``element`` appended to its list."""
    before = _joined(headers, name)
    value = element if not before else before + b", " + element
    return [(n, v) for n, v in headers if n != name] + [(name, value)]


def _add_missing(headers: Headers, name: bytes, value: bytes) -> Headers:
    if value and not any(n == name for n, _ in headers):
        headers.append((name, value))
    return headers


def request_headers(scope: Mapping[str, Any]) -> Headers:
    """The headers to send upstream for the ASGI request ``scope``.

    * hop-by-hop fields removed (:func:`without_hop_by_hop`);
    * ``Host`` kept as the client sent it (added from the server address when absent);
    * ``Via: <version> pulp-content-asgi`` appended (RFC 9110 §7.6.3: a gateway MUST);
    * the client's address appended to ``X-Forwarded-For``, as nginx's
      ``$proxy_add_x_forwarded_for`` does (nothing when the server names no client);
    * ``X-Forwarded-Proto`` (the request's scheme) and ``X-Forwarded-Host`` (its ``Host``)
      added unless a proxy in front already set them: theirs describe what the client
      asked for, ours would only describe the hop from that proxy to us.
    """
    headers = without_hop_by_hop(scope.get("headers") or ())
    host = _joined(headers, b"host")
    if host is None and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}".encode("latin-1")
        headers.append((b"host", host))
    version = _VERSIONS.get(str(scope.get("http_version", "1.1")), b"1.1")
    headers = _extend(headers, b"via", version + b" " + PSEUDONYM)
    client = scope.get("client")
    if client and client[0]:
        headers = _extend(headers, b"x-forwarded-for", str(client[0]).encode("latin-1"))
    headers = _add_missing(headers, b"x-forwarded-proto",
                           str(scope.get("scheme") or "http").encode("latin-1"))
    return _add_missing(headers, b"x-forwarded-host", host or b"")


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The upstream response's headers as the client gets them: every field in its
    order, repeated ones (``Set-Cookie``) kept, less the hop-by-hop fields and ``Date``.

    ``Date`` is the one the ASGI server stamps: uvicorn adds its own to every response,
    and two would be invalid (RFC 9110 §6.6.1: one value); granian adds one when the
    application sends none. Both are taken when the headers are sent, so the value is
    the upstream's within the time the hop took.
    """
    return [(n, v) for n, v in without_hop_by_hop(raw) if n != b"date"]


def has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the request carries a body (RFC 9112 §6.3: ``Transfer-Encoding`` or a
    non-zero ``Content-Length``); a body-less request is forwarded without one."""
    for name, value in headers:
        name = name.lower()
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
    return False
