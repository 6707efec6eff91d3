"""Call the resolver in-process, as the app does for one request (no server, real DB)."""

from __future__ import annotations

from django.conf import settings

from pulp_content_asgi import dispatch, results
from pulp_content_asgi.http import paths
from pulp_content_asgi.request import ContentRequest


def scope(path: str, method: str = "GET", headers: dict[str, str] | None = None,
          query: str = "") -> dict:
    return {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "scheme": "http", "http_version": "1.1",
        "server": ("127.0.0.1", 24816), "client": ("127.0.0.1", 50000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }


def resolve(path: str, headers: dict[str, str] | None = None, query: str = "",
            method: str = "GET") -> results.Result:
    """What the app decides for ``path`` (under CONTENT_PATH_PREFIX)."""
    full = settings.CONTENT_PATH_PREFIX + path
    target = paths.locate(full, settings.CONTENT_PATH_PREFIX, settings.DOMAIN_ENABLED)
    if isinstance(target, paths.Redirect):
        return results.Redirect(target.location)
    assert isinstance(target, (paths.RootListing, paths.ContentPath)), target
    content = target.path if isinstance(target, paths.ContentPath) else ""
    request = ContentRequest(scope(full, method, headers, query), full, content, target.domain)
    return dispatch.resolve(request, target)
