"""What a distribution serves: its repository, repository version and publication.

``Distribution.get_repository_publication_and_version()`` is pulpcore's answer and a
plugin may override it; when it is not overridden the same answer is computed here from
the rows the distribution query already joined, without the ``cast()`` queries (serving
needs only the master rows: paths, pass-through, dates).
"""

from __future__ import annotations

from typing import NamedTuple

from pulpcore.app.models import Distribution, Publication, Repository, RepositoryVersion

from pulp_content_asgi.plugin import hooks

_PULPCORE = Distribution.get_repository_publication_and_version


class Sources(NamedTuple):
    repository: Repository | None
    version: RepositoryVersion | None
    publication: Publication | None


def _latest_of_version(version: RepositoryVersion) -> Publication | None:
    return (Publication.objects.filter(repository_version=version, complete=True)
            .order_by("-pulp_created").first())


def _latest_of_repository(repository: Repository) -> Publication | None:
    try:
        return (Publication.objects.filter(repository_version__repository=repository,
                                           complete=True)
                .select_related("repository_version")
                .defer("repository_version__content_ids")
                .latest("repository_version", "pulp_created"))
    except Publication.DoesNotExist:
        return None


def of(distribution: Distribution) -> Sources:
    """pulpcore's resolution (publication > repository version > repository)."""
    if type(distribution).get_repository_publication_and_version is not _PULPCORE:
        return Sources(*hooks.call(distribution, "get_repository_publication_and_version"))
    serve_publications = distribution.SERVE_FROM_PUBLICATION
    if distribution.publication_id is not None:
        publication = distribution.publication
        version = publication.repository_version
        return Sources(version.repository, version, publication)
    if distribution.repository_version_id is not None:
        version = distribution.repository_version
        publication = _latest_of_version(version) if serve_publications else None
        return Sources(version.repository, version, publication)
    if distribution.repository_id is not None:
        repository = distribution.repository
        publication = _latest_of_repository(repository) if serve_publications else None
        if publication is not None:
            return Sources(repository, publication.repository_version, publication)
        return Sources(repository, repository.latest_version(), None)
    return Sources(None, None, None)
