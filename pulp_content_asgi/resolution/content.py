"""Lookups inside what a distribution serves: publications and repository versions.

Each function is one small query (or two) with the joins the response needs, so a
handler's decisions read as pulpcore's resolution order and nothing is fetched twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

from django.core.exceptions import MultipleObjectsReturned
from pulpcore.app.models import (
    ContentArtifact,
    Publication,
    PublishedArtifact,
    RemoteArtifact,
    RepositoryVersion,
)

from pulp_content_asgi.http.listing import Listing

log = logging.getLogger(__name__)


def published_exists(publication: Publication, relative_path: str) -> bool:
    return PublishedArtifact.objects.filter(
        publication=publication, relative_path=relative_path
    ).exists()


def published_content_artifact(publication: Publication, relative_path: str
                               ) -> ContentArtifact | None:
    """The content artifact published at ``relative_path``, with its artifact and domain."""
    published = (
        PublishedArtifact.objects.filter(publication=publication, relative_path=relative_path)
        .select_related("content_artifact__artifact__pulp_domain")
        .first()
    )
    return published.content_artifact if published else None


def version_content_artifact(version: RepositoryVersion, relative_path: str,
                             where: str) -> ContentArtifact | None:
    """The content artifact at ``relative_path`` in ``version``.

    Two content units claiming one path is a broken repository version; like pulpcore we
    log it (naming the distribution via ``where``) and fail rather than pick one.
    """
    try:
        return (
            ContentArtifact.objects.select_related("artifact__pulp_domain")
            .filter(content__in=version.content)
            .get(relative_path=relative_path)
        )
    except ContentArtifact.DoesNotExist:
        return None
    except MultipleObjectsReturned:
        log.error("Multiple (pass-through) matches for %s/%s", where, relative_path)
        raise


def version_path_exists(version: RepositoryVersion, relative_path: str) -> bool:
    return ContentArtifact.objects.filter(
        content__in=version.content, relative_path=relative_path
    ).exists()


def added_at(version: RepositoryVersion, content_artifact: ContentArtifact) -> datetime:
    """When the content entered the repository: pulpcore's Last-Modified heuristic."""
    row = (
        version._content_relationships()
        .filter(content_id=content_artifact.content_id)
        .values_list("pulp_created", flat=True)
        .first()
    )
    return row if row is not None else version.pulp_created


def _entry(directory: str, relative_path: str) -> str:
    """``dir/`` for a deeper path, the file name for a direct child."""
    below = relative_path[len(directory):]
    name, slash, _ = below.partition("/")
    return f"{name}/" if slash else name


def list_directory(directory: str, version: RepositoryVersion,
                   publication: Publication | None, title: str) -> Listing:
    """The entries below ``directory`` ("" or ending in "/") with dates and sizes.

    Names come from published artifacts and, for pass-through publications or plain
    versions, from the version's content artifacts. Dates are when the content joined the
    repository (newest one for a directory); sizes come from the artifact, or from the
    remote artifact for on-demand content.
    """
    rows: list[tuple[str, datetime, object, int | None, object]] = []
    if publication is not None:
        rows += PublishedArtifact.objects.filter(
            publication=publication, relative_path__startswith=directory
        ).values_list("relative_path", "pulp_created", "content_artifact__content_id",
                      "content_artifact__artifact__size", "content_artifact_id")
    if publication is None or publication.pass_through:
        rows += ContentArtifact.objects.filter(
            content__in=version.content, relative_path__startswith=directory
        ).values_list("relative_path", "pulp_created", "content_id", "artifact__size", "pk")
    if not rows:
        return Listing(title=title, names=frozenset())
    names_of: dict[object, set[str]] = defaultdict(set)
    content_dates: dict[object, datetime] = {}
    sizes: dict[str, int] = {}
    missing: dict[object, str] = {}
    for relative_path, created, content_id, size, ca_id in rows:
        name = _entry(directory, relative_path)
        names_of[content_id].add(name)
        if content_id not in content_dates or content_dates[content_id] < created:
            content_dates[content_id] = created
        if not name.endswith("/"):
            if size is not None:
                sizes[name] = size
            else:
                missing[ca_id] = name
    joined = (
        version._content_relationships()
        .filter(content_id__in=list(names_of))
        .values_list("content_id", "pulp_created")
    )
    content_dates.update(dict(joined))
    dates: dict[str, datetime] = {}
    for content_id, names in names_of.items():
        for name in names:
            if name not in dates or dates[name] < content_dates[content_id]:
                dates[name] = content_dates[content_id]
    if missing:
        remote_sizes = RemoteArtifact.objects.filter(
            content_artifact__in=list(missing), size__isnull=False
        ).values_list("content_artifact_id", "size")
        sizes.update({missing[ca_id]: size for ca_id, size in remote_sizes})
    every = frozenset(name for names in names_of.values() for name in names)
    return Listing(title=title, names=every, dates=dates, sizes=sizes)
