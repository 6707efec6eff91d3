"""A plugin's live routes (``content_asgi_urls``): Django views run through Django's
request handling inside our app, in process."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import pytest
from django.apps import apps

from pulp_content_asgi.devtools import data
from pulp_content_asgi.plugin import registry
from tests.helpers import scope


async def _call(app: Any, request_scope: dict) -> tuple[int, dict[str, str], bytes]:
    """One request with an empty body; (status, headers, body) as a client sees them."""
    sent: list[dict] = []
    arrived = False

    async def receive() -> dict:
        nonlocal arrived
        if not arrived:
            arrived = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Future()  # the client stays until the response is complete
        raise AssertionError

    async def send(message: dict) -> None:
        sent.append(message)

    await app(request_scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if any(m["type"] == "http.response.pathsend" for m in sent):
        path = next(m["path"] for m in sent if m["type"] == "http.response.pathsend")
        with open(path, "rb") as handle:
            body = handle.read()
    return start["status"], headers, body


@pytest.fixture
def app(monkeypatch):
    from pulp_content_asgi.entry.app import ContentApp

    config = apps.get_app_config("file")
    monkeypatch.setattr(config, "content_asgi_urls", "tests.live_urls", raising=False)
    registry.discover()
    app = ContentApp()
    app._lifespan_seen = True  # no heartbeat row: the session's server has this process's
    yield app
    monkeypatch.undo()
    registry.discover()


def call(app: Any, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    return asyncio.run(_call(app, scope(path, **kwargs)))


def test_the_plugin_is_listed_as_native(app):
    found = {s.label: s for s in registry.supported()}
    assert found["file"].mode == "native" and found["file"].urls == "tests.live_urls"
    assert "tests.live_urls" in registry.live_urlconfs()


def test_sync_and_async_views(app):
    status, headers, body = call(app, "/plugin/hello/")
    assert (status, body, headers["x-plugin"]) == (200, b"hello", "sync")
    assert headers["content-type"] == "text/plain"
    status, _, body = call(app, "/plugin/stream/")
    assert (status, body) == (200, b"part0;part1;part2;")


def test_exceptions_become_django_responses(app):
    status, _, body = call(app, "/plugin/missing/")
    assert status == 404
    status, _, body = call(app, "/plugin/boom/")
    assert status == 500 and b"Server Error" in body


def test_failures_inside_live_serve_are_named(app, caplog):
    status, _, body = call(app, "/plugin/hook-fails/")
    assert status == 500
    assert b"plugin failed in Broken.permit" in body
    assert "Broken.permit" in caplog.text and "the plugin's data is broken" in caplog.text
    status, _, body = call(app, "/plugin/decide-fails/")
    assert status == 500 and b"a plugin's live route failed" in body
    assert "ZeroDivisionError" in caplog.text


def test_the_view_gets_a_user_and_a_correlation_id(app):
    offered = uuid.uuid4().hex  # django-guid keeps a client's id when it is a UUID
    status, headers, body = call(app, "/plugin/whoami/", headers={"Correlation-ID": offered})
    assert (status, body) == (200, f"False {offered}".encode())
    assert headers["correlation-id"] == offered


def test_a_view_serves_an_artifact_with_ranges_and_guards(app, unique):
    from pulpcore.app.models import HeaderContentGuard

    repo = data.repository(f"live-{unique}", {"a.txt": b"0123456789"})
    distribution = data.distribute(f"live-{unique}",
                                   publication=data.publish(repo.latest_version()))
    path = f"/plugin/files/live-{unique}/a.txt"
    status, headers, body = call(app, path)
    assert (status, body) == (200, b"0123456789")
    assert headers["etag"] and headers["content-length"] == "10"
    assert "cache-control" not in headers  # the plugin's result names no policy
    etag = headers["etag"]
    status, headers, body = call(app, path, headers={"Range": "bytes=2-4"})
    assert (status, body, headers["content-range"]) == (206, b"234", "bytes 2-4/10")
    status, _, body = call(app, path, method="HEAD")
    assert (status, body) == (200, b"")
    assert call(app, f"/plugin/files/live-{unique}/nope.txt")[0] == 404
    assert call(app, path, method="DELETE")[0] == 405
    distribution.content_guard = HeaderContentGuard.objects.create(
        name=f"g-{unique}", header_name="X-Key", header_value="yes")
    distribution.save()
    status, headers, _ = call(app, path)
    assert (status, headers.get("cache-control")) == (403, "private")
    key = base64.b64encode(b"yes").decode()  # the header guard's encoding
    # Whatever headers the plugin's result has, the answers of a guarded distribution are
    # for the client let in: no shared cache may keep them.
    status, headers, body = call(app, path, headers={"X-Key": key})
    assert (status, body, headers.get("cache-control")) == (200, b"0123456789", "private")
    status, headers, body = call(app, path, headers={"X-Key": key, "Range": "bytes=2-4"})
    assert (status, body, headers.get("cache-control")) == (206, b"234", "private")
    status, headers, _ = call(app, path, headers={"X-Key": key, "If-None-Match": etag})
    assert (status, headers.get("cache-control")) == (304, "private")


def test_bad_paths_get_the_content_paths_4xx(app):
    """What /pulp/content/ refuses, a live route refuses the same way (never a 500)."""
    assert call(app, "/plugin/files/a/../b.txt")[0] == 400
    assert call(app, "/plugin/files/a/%2e%2e/b.txt")[0] == 400
    assert call(app, "/plugin/files/a/b%00.txt")[0] == 400
    status, _, body = call(app, "/plugin/files/a/" + "x" * 5000)
    assert status == 414 and b"414" in body


def test_the_content_prefix_and_unknown_paths_stay_ours(app):
    status, _, body = call(app, "/pulp/content/shadowed/")
    assert status == 404 and body != b"hello"
    status, headers, body = call(app, "/elsewhere/")
    assert status == 404 and headers["content-type"].startswith("text/plain")
