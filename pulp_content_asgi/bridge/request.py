"""The aiohttp-shaped request that existing plugin hooks read.

``ContentGuard.permit(request)`` and ``Remote.get_remote_artifact_url(path, request=...)``
were written against aiohttp's request: ``headers`` and ``query`` are multidicts, ``url``
is a ``yarl.URL``. :class:`LegacyRequest` shows a
:class:`~pulp_content_asgi.plugin.request.ContentRequest` that way; everything else (``path``,
``method``, ``match_info``, ``request.get("drf_request")``...) is the request's own.
"""

from __future__ import annotations

from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy
from yarl import URL

from pulp_content_asgi.plugin.request import ContentRequest


class LegacyRequest:
    """A read-only aiohttp-shaped view of one content request."""

    def __init__(self, request: ContentRequest) -> None:
        self._request = request
        self.headers = CIMultiDictProxy(CIMultiDict(request.headers.items_all()))
        self._query: MultiDictProxy[str] | None = None

    @property
    def query(self) -> MultiDictProxy[str]:
        if self._query is None:
            self._query = MultiDictProxy(MultiDict(self._request.query.items_all()))
        return self._query

    @property
    def url(self) -> URL:
        """The absolute URL as the client sent it (what signed-URL guards verify)."""
        return URL(self._request.url, encoded=True)

    @property
    def rel_url(self) -> URL:
        return URL(self._request.raw_target, encoded=True)

    def get(self, key: str, default: Any = None) -> Any:
        return self._request.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._request[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    def __repr__(self) -> str:
        return f"<LegacyRequest {self._request.method} {self._request.path}>"
