"""The request object handlers and content guards see, built from the ASGI scope.

Framework-neutral: ``headers`` and ``query`` are read-only mappings (:class:`Fields`),
``url`` a string. Existing hooks written for pulpcore-content read the same attributes
through :class:`pulp_content_asgi.bridge.request.LegacyRequest` (multidicts, a yarl URL),
which the registry hands them. The DRF
authentication that pulpcore runs on every request is run here only when something asks
for the user (an RBAC guard), which keeps unguarded downloads free of auth queries.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from pulp_content_asgi.serving.responder import Request

if TYPE_CHECKING:
    from django.http import HttpRequest
    from pulpcore.app.models import Distribution, Domain

log = logging.getLogger(__name__)

_AUTH_KEYS = ("drf_request", "user", "auth")


class Fields(Mapping[str, str]):
    """Name/value pairs looked up case-insensitively (request headers) or exactly (query
    parameters); a repeated name gives its first value, as aiohttp's multidicts do, and
    :meth:`getall` gives every value."""

    def __init__(self, pairs: Iterable[tuple[str, str]], fold_case: bool = True) -> None:
        self._pairs = list(pairs)
        self._fold = fold_case
        self._first: dict[str, str] = {}
        for name, value in self._pairs:
            self._first.setdefault(self._key(name), value)

    def _key(self, name: str) -> str:
        return name.lower() if self._fold else name

    def __getitem__(self, name: str) -> str:
        return self._first[self._key(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._first

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._pairs:
            if self._key(name) not in seen:
                seen.add(self._key(name))
                yield name

    def __len__(self) -> int:
        return len(self._first)

    def getall(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received."""
        key = self._key(name)
        return [v for n, v in self._pairs if self._key(n) == key]

    def items_all(self) -> list[tuple[str, str]]:
        """Every pair, repeated names included, in the order received."""
        return list(self._pairs)


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
        #: Request headers, case-insensitive (a repeated header: its first value).
        self.headers = Fields(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ()))
        self.match_info: dict[str, str] = {"path": content_path}
        if domain_name is not None:
            self.match_info["pulp_domain"] = domain_name
        self.domain: Domain | None = None
        self.distribution: Distribution | None = None
        self._auth: dict[str, Any] | None = None
        self._query: Fields | None = None
        self._django: HttpRequest | None = None

    @property
    def http(self) -> Request:
        """What the responder needs: method, headers, HTTP version, raw query."""
        return Request(self.method, self.headers, str(self.scope.get("http_version", "1.1")),
                       self.query_string)

    @property
    def guarded(self) -> bool:
        """Whether the request was matched to a distribution with a content guard: its
        answers are then for this client alone (``Cache-Control: private``)."""
        return self.distribution is not None and self.distribution.content_guard_id is not None

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
    def query(self) -> Fields:
        """The query parameters, decoded (a repeated name: its first value)."""
        if self._query is None:
            self._query = Fields(parse_qsl(self.query_string, keep_blank_values=True),
                                 fold_case=False)
        return self._query

    @property
    def raw_target(self) -> str:
        """The request target as the client sent it: path and query, still encoded."""
        raw = (self.scope.get("raw_path") or self.path.encode()).decode("latin-1")
        return f"{raw}?{self.query_string}" if self.query_string else raw

    @property
    def url(self) -> str:
        """The absolute URL as the client sent it (what signed-URL guards verify)."""
        return f"{self.scheme}://{self.host}{self.raw_target}"

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
            from django.db import DataError
            from rest_framework.exceptions import APIException
            from rest_framework.views import APIView

            view = APIView()
            drf_request = view.initialize_request(self.django_request)
            try:
                view.perform_authentication(drf_request)
            except APIException as exc:
                # DRF has already fallen back to the anonymous user; pulpcore logs and goes on.
                log.warning('"%s %s" "%s": %s', self.method, self.path, self.host, exc)
            except DataError as exc:
                # Credentials PostgreSQL cannot hold (a NUL in a Basic user name: Django's
                # user lookup raises) name no user: anonymous, as a wrong password is
                # (pulpcore-content answers 500; tests/test_guard_bypass_e2e.py).
                log.warning('"%s %s" "%s": unusable credentials: %s', self.method, self.path,
                            self.host, exc)
                drf_request._not_authenticated()
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
