"""The plugin API: handler registration, PluginConfig declarations and the model hooks
existing plugins implement (content_handler returning aiohttp objects included)."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
from aiohttp import web
from django.apps import apps
from django.conf import settings
from django.utils.http import http_date
from pulp_file.app.models import FileDistribution
from pulpcore.app.models import ContentArtifact, Distribution
from pulpcore.responses import ArtifactResponse

from pulp_content_asgi import plugin
from pulp_content_asgi.devtools import data
from pulp_content_asgi.plugin import registry
from pulp_content_asgi.resolution import dispatch
from tests.helpers import resolve, scope, unique_name


@pytest.fixture(scope="module")
def dist():
    u = unique_name()
    repo = data.repository(f"hooks-{u}", {"real.txt": b"real", "repodata/repomd.xml": b"<x/>"})
    return data.distribute(f"hooks-{u}", publication=data.publish(repo.latest_version()))


def prepared(path: str, method: str = "GET", headers: dict | None = None):
    """Resolve and render in-process; what the client would receive."""
    from pulp_content_asgi.plugin.request import ContentRequest

    full = settings.CONTENT_PATH_PREFIX + path
    request = ContentRequest(scope(full, method, headers), full, path, None)
    return dispatch.finish(resolve(path, headers, method=method), request)


class TestContentHandlerHook:
    def test_aiohttp_response_is_converted(self, dist, monkeypatch):
        def hook(self, path):
            if path == "config.repo":
                return web.Response(text="[repo]\nname=x\n")
            return None

        monkeypatch.setattr(FileDistribution, "content_handler", hook)
        out = prepared(f"{dist.base_path}/config.repo")
        assert out.status == 200
        assert out.body == b"[repo]\nname=x\n"
        assert out.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert prepared(f"{dist.base_path}/real.txt").status == 200

    def test_json_response_keeps_type_and_custom_headers(self, dist, monkeypatch):
        monkeypatch.setattr(FileDistribution, "content_handler", lambda self, path: (
            web.json_response({"name": path}, headers={"X-PyPI-Last-Serial": "7"})))
        out = prepared(f"{dist.base_path}/pypi/x/json")
        assert json.loads(out.body) == {"name": "pypi/x/json"}
        assert out.headers["Content-Type"] == "application/json; charset=utf-8"
        assert out.headers["X-PyPI-Last-Serial"] == "7"

    def test_error_response_reason_goes_into_the_body(self, dist, monkeypatch):
        monkeypatch.setattr(FileDistribution, "content_handler", lambda self, path: (
            web.Response(status=404, reason="No origin configured")))
        out = prepared(f"{dist.base_path}/config.repo")
        assert out.status == 404
        assert out.body == b"404: No origin configured"

    def test_raised_http_exception(self, dist, monkeypatch):
        def hook(self, path):
            raise web.HTTPTooManyRequests(reason="slow down", headers={"Retry-After": "3"})

        monkeypatch.setattr(FileDistribution, "content_handler", hook)
        out = prepared(f"{dist.base_path}/anything")
        assert (out.status, out.body, out.headers["Retry-After"]) == (429, b"429: slow down", "3")

    def test_raised_redirect(self, dist, monkeypatch):
        def hook(self, path):
            raise web.HTTPMovedPermanently("/pulp/content/elsewhere/")

        monkeypatch.setattr(FileDistribution, "content_handler", hook)
        out = prepared(f"{dist.base_path}/old")
        assert (out.status, out.headers["Location"]) == (301, "/pulp/content/elsewhere/")

    def test_returned_content_artifact_is_served(self, dist, monkeypatch):
        real = ContentArtifact.objects.get(relative_path="real.txt",
                                           content__in=dist.publication.repository_version.content)
        monkeypatch.setattr(FileDistribution, "content_handler",
                            lambda self, path: real if path == "alias.txt" else None)
        out = prepared(f"{dist.base_path}/alias.txt")
        assert out.status == 200 and out.body == b"real"
        assert out.headers["Content-Type"] == "text/plain"

    def test_returned_artifact_response(self, dist, monkeypatch):
        real = ContentArtifact.objects.get(relative_path="real.txt",
                                           content__in=dist.publication.repository_version.content)
        monkeypatch.setattr(FileDistribution, "content_handler", lambda self, path: (
            ArtifactResponse(real.artifact, headers={"Content-Type": "text/html"})))
        out = prepared(f"{dist.base_path}/simple/")
        assert (out.status, out.body, out.headers["Content-Type"]) == (200, b"real", "text/html")

    def test_headers_and_listing_hooks(self, dist, monkeypatch):
        monkeypatch.setattr(FileDistribution, "content_headers_for", lambda self, path: (
            {"Cache-Control": "no-cache"} if path.endswith("repomd.xml") else {}))
        monkeypatch.setattr(FileDistribution, "content_handler_list_directory",
                            lambda self, path: {"config.repo"} if path == "" else set())
        out = prepared(f"{dist.base_path}/repodata/repomd.xml")
        assert out.headers["Cache-Control"] == "no-cache"
        assert out.headers["Content-Type"] == "text/xml"
        listing = prepared(f"{dist.base_path}/")
        assert b'<a href="./config.repo">config.repo</a>' in listing.body


class TestRegistry:
    def test_default_handler_is_pulpcore_behaviour(self):
        assert isinstance(registry.handler_for(Distribution), plugin.DistributionHandler)
        assert isinstance(registry.handler_for(FileDistribution), plugin.DistributionHandler)

    def test_registered_handler_takes_over(self, dist):
        class Greeter(plugin.DistributionHandler):
            def serve(self, request, distribution, path):
                if path == "hello":
                    return plugin.ServeBody(f"hello from {distribution.name}".encode(),
                                            headers={"Content-Type": "text/plain"})
                return super().serve(request, distribution, path)

        previous = registry.handler_for(FileDistribution)
        registry.register(FileDistribution, Greeter)
        try:
            assert prepared(f"{dist.base_path}/hello").body == f"hello from {dist.name}".encode()
            assert prepared(f"{dist.base_path}/real.txt").body == b"real"
        finally:
            registry.register(FileDistribution, previous)

    def test_plugin_config_declaration(self, dist, monkeypatch):
        class Declared(plugin.ContentHandler):
            def serve(self, request, distribution, path):
                return plugin.NotFound("declared handler")

        config = apps.get_app_config("file")
        monkeypatch.setattr(config, "content_asgi_handlers",
                            {"file.FileDistribution": Declared}, raising=False)
        try:
            registry.discover()
            assert resolve(f"{dist.base_path}/real.txt").reason == "declared handler"
        finally:
            monkeypatch.undo()
            registry.discover()
        assert prepared(f"{dist.base_path}/real.txt").status == 200

    def test_register_rejects_non_handlers(self):
        with pytest.raises(TypeError):
            registry.register(FileDistribution, object)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            registry.register(object, plugin.DistributionHandler)  # type: ignore[arg-type]

    def test_every_public_name_exists_and_is_documented(self):
        """What ``__all__`` promises plugins is importable and says what it is."""
        import inspect

        assert plugin.__all__
        for name in plugin.__all__:
            obj = getattr(plugin, name)  # AttributeError: promised but missing
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert (vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__), name


def test_artifact_distribution_serves_signed_artifact_urls(server):
    """pulpcore's own ArtifactDistribution (content_handler returning ArtifactResponse)."""
    from pulpcore.app.util import get_artifact_url

    artifact = data.artifact_from_bytes(uuid.uuid4().bytes * 100)
    signed = get_artifact_url(artifact)
    local = re.sub(r"^https?://[^/]+", server.base, signed)
    response = httpx.get(local)
    assert response.status_code == 200
    assert response.content == artifact.file.read()
    # Outside a repository the artifact's own creation time is its Last-Modified.
    assert response.headers["last-modified"] == http_date(artifact.pulp_created.timestamp())
    assert httpx.get(local, headers={
        "If-Modified-Since": response.headers["last-modified"]}).status_code == 304
    unsigned = local.split("?")[0]
    assert httpx.get(unsigned).status_code == 403
    # The guard signed this artifact's path: another path with its signature is refused.
    wrong = re.sub(r"/[0-9a-f-]{36}\?", f"/{uuid.uuid4()}?", local)
    assert httpx.get(wrong).status_code == 403
    # A valid signature for an artifact that does not exist: the handler's 404.
    from pulpcore.app.models import ArtifactDistribution

    guard = ArtifactDistribution.objects.get().content_guard.cast()
    missing = guard.preauthenticate_url(re.sub(r"/[0-9a-f-]{36}\?.*", f"/{uuid.uuid4()}",
                                               signed))
    assert httpx.get(re.sub(r"^https?://[^/]+", server.base, missing)).status_code == 404
