"""A plugin's live routes as a test declares them (``content_asgi_urls``)."""

from __future__ import annotations

from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.urls import path
from pulp_file.app.models import FileDistribution
from pulpcore.app.models import ContentArtifact

from pulp_content_asgi.plugin import NotFound, ServeArtifact, live


def hello(request):
    return HttpResponse(b"hello", content_type="text/plain", headers={"X-Plugin": "sync"})


async def stream(request):
    async def parts():
        for number in range(3):
            yield f"part{number};".encode()

    return StreamingHttpResponse(parts(), content_type="text/plain")


def boom(request):
    raise RuntimeError("the plugin's view failed")


def missing(request):
    raise Http404("no such thing")


def whoami(request):
    return HttpResponse(f"{request.user.is_authenticated} {request.headers.get('Correlation-ID')}")


def _published(request, base_path, name):
    distribution = live.distribution(request, FileDistribution, base_path)
    if distribution is None:
        return NotFound()
    denied = live.permit(request, distribution)
    if denied is not None:
        return denied
    found = ContentArtifact.objects.select_related("artifact").filter(
        relative_path=name,
        content__in=distribution.publication.repository_version.content).first()
    if found is None:
        return NotFound()
    return ServeArtifact(found.artifact, name, {"Content-Type": "text/plain"})


async def published(request, base_path, name):
    return await live.serve(request, lambda found: _published(found, base_path, name))


class Broken:
    """Stands in for a plugin model whose hook raises."""

    def permit(self, request):
        raise ValueError("the plugin's data is broken")


def _hook_fails(request):
    from pulp_content_asgi.plugin import hooks

    return hooks.call(Broken(), "permit", request)


async def hook_fails(request):
    return await live.serve(request, _hook_fails)


async def decide_fails(request):
    return await live.serve(request, lambda found: 1 / 0)


urlpatterns = [
    path("plugin/hello/", hello),
    path("plugin/stream/", stream),
    path("plugin/boom/", boom),
    path("plugin/missing/", missing),
    path("plugin/whoami/", whoami),
    path("plugin/files/<str:base_path>/<path:name>", published),
    path("plugin/hook-fails/", hook_fails),
    path("plugin/decide-fails/", decide_fails),
    path("pulp/content/shadowed/", hello),  # the content prefix is never a live route
]
