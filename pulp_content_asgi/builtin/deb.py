"""pulp_deb's port: its publication grace period in one query, then the generic resolution.

What it replaces (pulp_deb 3.11, ``pulp_deb/app/models/publication.py``,
``AptDistribution.content_handler``): on every request, the file published at the path by
any of the distribution's *recent* publications, newest first. pulp_deb records each
publication a distribution served (its own ``DistributedPublication``, with ``expires_at``
set three days after a newer one arrives), so apt clients that read an old ``Release``
still find the ``Packages`` files and ``by-hash`` entries it names while a mirror syncs.

Here that is one query (:func:`recent_published`) that also carries the content's
Last-Modified, computed as pulpcore computes it for a content artifact a
``content_handler`` returns: when the content joined the distribution's repository
version. pulpcore's own grace period (``Distribution.get_fallback_ca``) still applies
afterwards, as in pulpcore-content. pulp_deb takes this port over by declaring
``content_asgi_handlers = {"deb.AptDistribution": "<its module>.AptHandler"}``.
"""

from __future__ import annotations

from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone
from pulpcore.app.models import ContentArtifact, Distribution, PublishedArtifact, RepositoryVersion

from pulp_content_asgi.plugin import DistributionHandler, Result
from pulp_content_asgi.resolution import sources

#: pulp_deb's DistributedPublication, seen from a Publication (no related_name).
_SERVED = "publication__distributedpublication"


def recent_published(distribution: Distribution, path: str,
                     version: RepositoryVersion | None) -> ContentArtifact | None:
    """The content artifact published at ``path`` by the newest of the distribution's
    publications that has not expired, with ``added_at`` (when its content joined
    ``version``) when ``version`` is given. One query."""
    now = timezone.now()
    queryset = (
        PublishedArtifact.objects
        .filter(Q(**{f"{_SERVED}__expires_at__gte": now})
                | Q(**{f"{_SERVED}__expires_at__isnull": True}),
                **{f"{_SERVED}__distribution": distribution}, relative_path=path)
        .order_by(f"-{_SERVED}__pulp_created")
        .select_related("content_artifact__artifact__pulp_domain")
    )
    if version is not None:
        queryset = queryset.annotate(added_at=Subquery(
            version._content_relationships()
            .filter(content_id=OuterRef("content_artifact__content_id"))
            .values("pulp_created")[:1]))
    published = queryset.first()
    if published is None:
        return None
    found = published.content_artifact
    if version is not None:
        found.added_at = published.added_at
    return found


class AptHandler(DistributionHandler):
    """``AptDistribution``: recent publications first, then pulpcore's resolution order."""

    def serve_content_handler(self, distribution: Distribution, path: str) -> Result | None:
        version = sources.of(distribution).version
        found = recent_published(distribution, path, version)
        if found is None:
            return None
        return self.serve_content_artifact(found, self.headers_for(distribution, path),
                                           version)


HANDLERS = {"deb.AptDistribution": AptHandler}
