"""The request object handlers and content guards see.

It reads like the aiohttp request pulpcore-content passed to ``ContentGuard.permit`` and
``Remote.get_remote_artifact_url`` (``headers``, ``path``, ``url``, ``query``, ``method``,
``match_info``, ``request.get("drf_request")``), so every existing guard and plugin hook
works unchanged, while being built from the ASGI scope without aiohttp. The DRF
authentication that pulpcore runs on every request is run here only when something asks
for the user (an RBAC guard), which keeps unguarded downloads free of auth queries.
"""

from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy
from yarl import URL

from pulp_content_asgi.serving.responder import Request

if TYPE_CHECKING:
    from django.http import HttpRequest
    from pulpcore.app.models import Distribution, Domain

log = logging.getLogger(__name__)

_AUTH_KEYS = ("drf_request", "user", "auth")


class ContentRequest:
    """An incoming content request, aiohttp-shaped for reading, lazily authenticated."""

    def __init__(self, scope: dict[str, Any], path: str, content_path: str,
                 domain_name: str | None) -> None:
        self.scope = scope
        #: Wall clock at arrival, before any lookup: on-demand uses it to tell downloads
        #: that finished before this request from those it may still join.
        self.received_at = time.time()
        self.method: str = scope["method"]
        #: The decoded, normalised request path (what redirects and RHSM guards use).
        self.path = path
        self.query_string: str = scope.get("query_string", b"").decode("latin-1")
        headers: CIMultiDict[str] = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())
        )
        self.headers = CIMultiDictProxy(headers)
        self.match_info: dict[str, str] = {"path": content_path}
        if domain_name is not None:
            self.match_info["pulp_domain"] = domain_name
        self.domain: Domain | None = None
        self.distribution: Distribution | None = None
        self._auth: dict[str, Any] | None = None
        self._query: MultiDictProxy[str] | None = None
        self._django: HttpRequest | None = None

    @property
    def http(self) -> Request:
        """What the responder needs: method, headers, HTTP version."""
        return Request(self.method, self.headers, str(self.scope.get("http_version", "1.1")))

    @property
    def scheme(self) -> str:
        return str(self.scope.get("scheme", "http"))

    @property
    def host(self) -> str:
        host = self.headers.get("Host")
        if host:
            return host
        server = self.scope.get("server") or ("localhost", None)
        return f"{server[0]}:{server[1]}" if server[1] else str(server[0])

    @property
    def query(self) -> MultiDictProxy[str]:
        if self._query is None:
            from urllib.parse import parse_qsl

            self._query = MultiDictProxy(
                MultiDict(parse_qsl(self.query_string, keep_blank_values=True))
            )
        return self._query

    @property
    def url(self) -> URL:
        """The absolute URL as the client sent it (what signed-URL guards verify)."""
        raw = self.scope.get("raw_path") or self.path.encode()
        return URL.build(scheme=self.scheme, authority=self.host,
                         path=raw.decode("latin-1"), query_string=self.query_string,
                         encoded=True)

    @property
    def django_request(self) -> HttpRequest:
        """A Django request for code that needs one (DRF authentication)."""
        if self._django is None:
            from django.core.handlers.asgi import ASGIRequest

            self._django = ASGIRequest(self.scope, io.BytesIO())
        return self._django

    def _authenticate(self) -> dict[str, Any]:
        """Run pulpcore's DRF authentication classes; failure means anonymous, not 401."""
        if self._auth is None:
            from rest_framework.exceptions import APIException
            from rest_framework.views import APIView

            view = APIView()
            drf_request = view.initialize_request(self.django_request)
            try:
                view.perform_authentication(drf_request)
            except APIException as exc:
                # DRF has already fallen back to the anonymous user; pulpcore logs and goes on.
                log.warning('"%s %s" "%s": %s', self.method, self.path, self.host, exc)
            drf_request.pulp_domain = self.domain
            self._auth = {"drf_request": drf_request, "user": drf_request.user,
                          "auth": drf_request.auth}
        return self._auth

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style access as on aiohttp requests: ``drf_request``, ``user``, ``auth``."""
        if key in _AUTH_KEYS:
            return self._authenticate()[key]
        return default

    def __getitem__(self, key: str) -> Any:
        if key in _AUTH_KEYS:
            return self._authenticate()[key]
        raise KeyError(key)

    def __repr__(self) -> str:
        return f"<ContentRequest {self.method} {self.path}>"
