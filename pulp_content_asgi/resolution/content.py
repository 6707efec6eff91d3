"""Lookups inside what a distribution serves: publications and repository versions.

Each function is one small query (or two) with the joins the response needs, so a
handler's decisions read as pulpcore's resolution order and nothing is fetched twice.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Case, OuterRef, Q, QuerySet, Subquery, Value, When
from pulpcore.app.models import (
    ContentArtifact,
    Publication,
    PublishedArtifact,
    RemoteArtifact,
    RepositoryVersion,
)

from pulp_content_asgi.protocol.listing import Listing

log = logging.getLogger(__name__)

#: PostgreSQL collations that order text by code point (so prefixes are ranges).
BYTEWISE_COLLATIONS = frozenset({"C", "POSIX", "C.UTF-8", "C.utf8", "ucs_basic"})


@dataclass(frozen=True)
class Probe:
    """What one query found for a request path among published or version paths.

    ``index`` is ``<dir>/index.html`` (when asked for), ``exact`` the path itself, ``below``
    whether anything lives under ``<dir>/`` (a listing), ``duplicated`` whether two content
    artifacts claim the exact path. Found content artifacts carry ``added_at``: when their
    content joined the repository version (pulpcore's Last-Modified heuristic).
    """

    index: ContentArtifact | None
    exact: ContentArtifact | None
    below: bool
    duplicated: bool = False


@functools.cache
def _bytewise_collation() -> bool:
    """Whether text sorts by code point here, so a prefix is an index-friendly range."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()")
        row = cursor.fetchone()
    return bool(row) and row[0] in BYTEWISE_COLLATIONS


def _under(field: str, directory: str) -> Q:
    """``field`` starts with ``directory`` (non-empty, ending in "/").

    Under a code-point collation this is the range [``dir/``, ``dir0``) that the
    (parent, relative_path) unique index answers directly; otherwise a LIKE prefix.
    """
    if _bytewise_collation():
        return Q(**{f"{field}__gte": directory, f"{field}__lt": f"{directory[:-1]}0"})
    return Q(**{f"{field}__startswith": directory})


def _ranked(queryset: QuerySet, path: str, index: str | None) -> list:
    directory = _directory(path)
    ranks = [When(relative_path=path, then=Value(1))]
    if index is not None:
        ranks.insert(0, When(relative_path=index, then=Value(0)))
    if directory:
        queryset = queryset.filter(Q(relative_path=path) | _under("relative_path", directory))
    return list(queryset.annotate(rank=Case(*ranks, default=Value(2))).order_by("rank")[:3])


def _probe(rows: list, artifact_of: Callable[[Any], ContentArtifact]) -> Probe:
    ranks = [row.rank for row in rows]
    first: dict[int, ContentArtifact] = {}
    for row in rows:
        found = artifact_of(row)
        found.added_at = row.added_at
        first.setdefault(row.rank, found)
    return Probe(index=first.get(0), exact=first.get(1), below=2 in ranks or 0 in ranks,
                 duplicated=ranks.count(1) > 1)


def _added_at(version: RepositoryVersion, content_ref: str) -> Subquery:
    return Subquery(
        version._content_relationships()
        .filter(content_id=OuterRef(content_ref)).values("pulp_created")[:1]
    )


def probe_published(publication: Publication, path: str) -> Probe:
    """index.html, the exact path and anything below it among published artifacts."""
    version = publication.repository_version
    queryset = (
        PublishedArtifact.objects.filter(publication=publication)
        .select_related("content_artifact__artifact__pulp_domain")
        .annotate(added_at=_added_at(version, "content_artifact__content_id"))
    )
    rows = _ranked(queryset, path, f"{_directory(path)}index.html")
    return _probe(rows, lambda row: row.content_artifact)


def probe_version(version: RepositoryVersion, path: str, with_index: bool) -> Probe:
    """The same among the content artifacts of a repository version."""
    queryset = (
        ContentArtifact.objects.filter(content__in=version.content)
        .select_related("artifact__pulp_domain")
        .annotate(added_at=_added_at(version, "content_id"))
    )
    index = f"{_directory(path)}index.html" if with_index else None
    return _probe(_ranked(queryset, path, index), lambda row: row)


def added_at(version: RepositoryVersion, content_artifact: ContentArtifact) -> datetime:
    """When the content entered the repository: pulpcore's Last-Modified heuristic."""
    row = (
        version._content_relationships()
        .filter(content_id=content_artifact.content_id)
        .values_list("pulp_created", flat=True)
        .first()
    )
    return row if row is not None else version.pulp_created


def _directory(path: str) -> str:
    return path if path == "" or path.endswith("/") else f"{path}/"


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
