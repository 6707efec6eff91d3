"""pulp_container: the blob route the registry API redirects image pulls to.

pulpcore-api serves the OCI distribution API (``/v2/``); a blob GET there redirects to
``/pulp/container/[<domain>/]<base_path>/blobs/sha256:<hex>`` on the content app (signed
when the distribution has a content guard), which pulp_container serves from an aiohttp
route of its own. This is that route as a Django live route written against
:mod:`pulp_content_asgi.plugin` — the reference port pulp_container can take over as
its ``content_asgi_urls``.

Behaviour (pulp_container 2.30 ``Registry.get_by_digest``): the distribution is matched
by its exact base path; its content guard decides; with no repository version, 404; the
empty layer is served without a lookup; otherwise the blob is looked up in the version's
content and the repository's pending blobs (blobs a pull-through or push is still
adding) and sent with ``Docker-Content-Digest`` and ``Docker-Distribution-API-Version``,
stored, from object storage, or downloaded on demand from the remote. Differences:
docs/differences.md ("pulp_container blobs").
"""

from __future__ import annotations

from functools import partial

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponseBase
from django.urls import re_path
from pulp_container.app.models import ContainerDistribution
from pulp_container.constants import BLOB_CONTENT_TYPE, EMPTY_BLOB
from pulpcore.app.models import Content, ContentArtifact

from pulp_content_asgi.plugin import hooks, live, results
from pulp_content_asgi.plugin.request import ContentRequest

#: The empty layer (a gzip of an empty tar archive, 1024 zero bytes); its sha256 is
#: EMPTY_BLOB. Clients ask for it without Pulp storing it.
EMPTY_LAYER = bytes.fromhex("1f8b080000096e8800ff621805a360148c5800080000ffff2eafb5ef00040000")
API_VERSION = "registry/2.0"

URLS = __name__


def headers_for(digest: str) -> dict[str, str]:
    """The headers of every blob answer (the registry API's, RFC-free: OCI distribution)."""
    return {"Content-Type": BLOB_CONTENT_TYPE, "Docker-Content-Digest": digest,
            "Docker-Distribution-API-Version": API_VERSION}


def find_blob(request: ContentRequest, path: str, digest: str) -> results.Result:
    """What answers ``GET …/<path>/blobs/<digest>`` (runs on an ORM thread)."""
    distribution = live.distribution(request, ContainerDistribution, path)
    if distribution is None:
        return results.NotFound()
    denied = live.permit(request, distribution)
    if denied is not None:
        return denied
    # The plugin's and pulpcore's model methods go through hooks.call, so a failure in
    # them is logged and answered naming the hook (docs/plugin-api.md, hooks).
    version = hooks.call(distribution, "get_repository_version")
    if version is None:
        return results.NotFound()
    headers = headers_for(digest)
    if digest == EMPTY_BLOB:
        return results.ServeBody(EMPTY_LAYER, headers=headers)
    repository = hooks.call(version.repository, "cast")
    # ``pending_blobs`` is a many-to-many field of both container repository types, not
    # code of the plugin's: reading it builds a query and runs nothing. A repository type
    # without it has no pending blobs (rather than an unnamed AttributeError).
    blobs = getattr(repository, "pending_blobs", None)
    pending = (Content.objects.filter(pk__in=blobs.values_list("pk")) if blobs is not None
               else Content.objects.none())
    joined = (version._content_relationships().filter(content_id=OuterRef("content_id"))
              .values("pulp_created")[:1])
    found = (ContentArtifact.objects.select_related("artifact", "artifact__pulp_domain",
                                                    "content")
             .filter(content__in=version.content | pending, relative_path=digest)
             .annotate(joined=Subquery(joined)).first())
    if found is None:
        return results.NotFound()
    # One Last-Modified before and after an on-demand blob is saved: when the blob joined
    # the repository (a pending blob: when it was created), as for every plugin's content
    # (docs/differences.md, upstream headers). pulpcore-content sends the file's mtime
    # once stored and nothing before.
    modified = found.joined or found.content.pulp_created
    if found.artifact_id is None:
        return results.ServeRemote(found, headers, last_modified=modified)
    return results.ServeArtifact(found.artifact, digest, headers, last_modified=modified)


async def blob(request: HttpRequest, path: str, digest: str, pulp_domain: str | None = None
               ) -> HttpResponseBase:
    """The blob route's view."""
    # A partial names find_blob in the log if it raises (a lambda would not).
    return await live.serve(request, partial(find_blob, path=path, digest=f"sha256:{digest}"))


_DOMAIN = r"(?P<pulp_domain>[^/]+)/" if settings.DOMAIN_ENABLED else ""
urlpatterns = [
    re_path(rf"^pulp/container/{_DOMAIN}(?P<path>.+)/blobs/sha256:(?P<digest>.+)$", blob,
            name="pulp_container_blob"),
]

HANDLERS: dict[str, str] = {}
