"""What a distribution serves: its repository, repository version and publication.

``Distribution.get_repository_publication_and_version()`` is pulpcore's answer and a
plugin may override it; when it is not overridden the same answer is computed here from
the rows the distribution query already joined, without the ``cast()`` queries (serving
needs only the master rows: paths, pass-through, dates).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from pulpcore.app.models import Distribution, Publication, Repository, RepositoryVersion

from pulp_content_asgi.plugin import hooks
from pulp_content_asgi.resolution import rows

_PULPCORE = Distribution.get_repository_publication_and_version


class Sources(NamedTuple):
    repository: Repository | None
    version: RepositoryVersion | None
    publication: Publication | None


#: Where :func:`of` keeps its answer on the distribution instance (one per request).
SOURCES = "_content_asgi_sources"


def _latest_of_version(version: RepositoryVersion) -> QuerySet:
    return (Publication.objects.filter(repository_version=version, complete=True)
            .annotate(_fp=RawSQL(rows.publication_version(), ()))
            .order_by("-pulp_created")[:1])


def _latest_of_repository(repository: Repository) -> QuerySet:
    # ``latest("repository_version", "pulp_created")``, as pulpcore, without raising.
    return (Publication.objects.filter(repository_version__repository=repository,
                                       complete=True)
            .select_related("repository_version")
            .defer("repository_version__content_ids")
            .annotate(_fp=RawSQL(rows.publication_version(with_repository_version=True), ()))
            .order_by("-repository_version", "-pulp_created")[:1])


def _latest_version(repository: Repository) -> QuerySet:
    # ``Repository.latest_version()``: ``versions.complete().latest()`` (get_latest_by
    # "number"), content_ids deferred as its manager does.
    return (RepositoryVersion.objects.filter(repository=repository, complete=True)
            .annotate(_fp=RawSQL(rows.repository_version_version(), ()))
            .order_by("-number")[:1])


class _Derivation:
    """The queries :func:`of` ran and the row versions they read (for re-checking)."""

    def __init__(self) -> None:
        self.queries: list[QuerySet] = []
        self.fingerprint: list[str | None] = []

    def first(self, queryset: QuerySet) -> Any:
        found = next(iter(queryset), None)
        self.queries.append(queryset)
        self.fingerprint.append(None if found is None else found._fp)
        return found


def derivation_needed(distribution: Distribution) -> bool:
    """Whether :func:`of` would query (it answers from the joined rows otherwise)."""
    if distribution.publication_id is not None:
        return False
    if distribution.repository_version_id is not None:
        return bool(distribution.SERVE_FROM_PUBLICATION)
    return distribution.repository_id is not None


def of(distribution: Distribution) -> Sources:
    """pulpcore's resolution (publication > repository version > repository), once per
    distribution instance (a request's)."""
    found = getattr(distribution, SOURCES, None)
    if found is not None:
        return found  # type: ignore[no-any-return]
    if type(distribution).get_repository_publication_and_version is not _PULPCORE:
        found = Sources(*hooks.call(distribution, "get_repository_publication_and_version"))
    else:
        derivation = _Derivation()
        found = _resolve(distribution, derivation)
        if derivation.queries:
            from pulp_content_asgi.resolution import remembered

            remembered.learn_sources(distribution, found, derivation.queries,
                                     tuple(derivation.fingerprint))
    setattr(distribution, SOURCES, found)
    return found


def _resolve(distribution: Distribution, derivation: _Derivation) -> Sources:
    serve_publications = distribution.SERVE_FROM_PUBLICATION
    if distribution.publication_id is not None:
        publication = distribution.publication
        version = publication.repository_version
        return Sources(version.repository, version, publication)
    if distribution.repository_version_id is not None:
        version = distribution.repository_version
        publication = (derivation.first(_latest_of_version(version)) if serve_publications
                       else None)
        return Sources(version.repository, version, publication)
    if distribution.repository_id is not None:
        repository = distribution.repository
        publication = (derivation.first(_latest_of_repository(repository))
                       if serve_publications else None)
        if publication is not None:
            return Sources(repository, publication.repository_version, publication)
        return Sources(repository, derivation.first(_latest_version(repository)), None)
    return Sources(None, None, None)
