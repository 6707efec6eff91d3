"""Lookups inside what a distribution serves: publications and repository versions.

Each function is one small query (or two) with the joins the response needs, so a
handler's decisions read as pulpcore's resolution order and nothing is fetched twice.

Two content units at one relative path in one repository version (pulp_ostree re-syncs
leave two ``summary`` files) made pulpcore-content answer 500 for that path, every time.
Here the unit added to the repository last is served (pass-through publications,
repository versions, the grace period of superseded pass-through publications), a
warning names every unit (once per process, version and path), and listings show the
name once, with the served unit's size. Only such a path costs a second query.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Case, OuterRef, Q, QuerySet, Subquery, Value, When
from pulpcore.app.models import (
    ContentArtifact,
    DistributedPublication,
    Distribution,
    Publication,
    PublishedArtifact,
    RemoteArtifact,
    RepositoryVersion,
)
from pulpcore.app.util import retain_distributed_pub_enabled

from pulp_content_asgi.protocol.listing import Listing

log = logging.getLogger(__name__)

#: PostgreSQL collations that order text by code point (so prefixes are ranges).
BYTEWISE_COLLATIONS = frozenset({"C", "POSIX", "C.UTF-8", "C.utf8", "ucs_basic"})


@dataclass(frozen=True)
class Probe:
    """What one query found for a request path among published or version paths.

    ``index`` is ``<dir>/index.html`` (when asked for), ``exact`` the path itself (the one
    added last when several content artifacts claim it), ``below`` whether anything lives
    under ``<dir>/`` (a listing), ``duplicated`` whether several content artifacts claim
    the exact path. Found content artifacts carry ``added_at``: when their content joined
    the repository version (pulpcore's Last-Modified heuristic).
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


def _ranked(queryset: QuerySet, path: str, index: str | None) -> QuerySet:
    directory = _directory(path)
    ranks = [When(relative_path=path, then=Value(1))]
    if index is not None:
        ranks.insert(0, When(relative_path=index, then=Value(0)))
    if directory:
        queryset = queryset.filter(Q(relative_path=path) | _under("relative_path", directory))
    return queryset.annotate(rank=Case(*ranks, default=Value(2))).order_by("rank")[:3]


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


#: Probe rows fetched ahead by the request's one statement (:mod:`.remembered`), keyed
#: by :func:`probe_key`; set per unit of ORM work (``db.run`` gives each its own context).
_PREFETCHED: ContextVar[dict[tuple, list] | None] = ContextVar("prefetched_probes",
                                                               default=None)


def probe_key(kind: str, source: Publication | RepositoryVersion, path: str,
              with_index: bool = True) -> tuple:
    return (kind, source.pk, path, with_index)


def prefetched(rows_by_key: dict[tuple, list]) -> None:
    """Probe rows already fetched for this unit of work: the probe functions below use
    them (once) instead of querying."""
    _PREFETCHED.set(rows_by_key)


def _prefetched_rows(key: tuple) -> list | None:
    found = _PREFETCHED.get()
    return None if found is None else found.pop(key, None)


def published_query(publication: Publication, path: str) -> QuerySet:
    """The ranked probe of :func:`probe_published` as a queryset (at most 3 rows)."""
    version = publication.repository_version
    queryset = (
        PublishedArtifact.objects.filter(publication=publication)
        .select_related("content_artifact__artifact__pulp_domain")
        .annotate(added_at=_added_at(version, "content_artifact__content_id"))
    )
    return _ranked(queryset, path, f"{_directory(path)}index.html")


def probe_published(publication: Publication, path: str) -> Probe:
    """index.html, the exact path and anything below it among published artifacts."""
    rows = _prefetched_rows(probe_key("published", publication, path))
    if rows is None:
        rows = list(published_query(publication, path))
    return _probe(rows, lambda row: row.content_artifact)


def _in_version(version: RepositoryVersion) -> QuerySet:
    return (
        ContentArtifact.objects.filter(content__in=version.content)
        .select_related("artifact__pulp_domain")
        .annotate(added_at=_added_at(version, "content_id"))
    )


def version_query(version: RepositoryVersion, path: str, with_index: bool) -> QuerySet:
    """The ranked probe of :func:`probe_version` as a queryset (at most 3 rows)."""
    index = f"{_directory(path)}index.html" if with_index else None
    return _ranked(_in_version(version), path, index)


def probe_version(version: RepositoryVersion, path: str, with_index: bool) -> Probe:
    """The same among the content artifacts of a repository version."""
    queryset = _in_version(version)
    rows = _prefetched_rows(probe_key("version", version, path, with_index))
    if rows is None:
        rows = list(version_query(version, path, with_index))
    probe = _probe(rows, lambda row: row)
    if not probe.duplicated:
        return probe
    # Several claim the path (the LIMIT may have hidden what lies below it, too).
    claimants = list(queryset.filter(relative_path=path).select_related("content")
                     .order_by("-added_at", "-pk"))
    _warn_duplicates(version, path, claimants)
    hidden = len(rows) == 3 and not probe.below  # three claimants filled the LIMIT
    below = probe.below or (hidden and queryset.filter(
        _under("relative_path", _directory(path))).exists())
    return replace(probe, exact=claimants[0], below=below)


#: (version, path) pairs already warned about in this process: the warning names the
#: units once, not on every request for the path.
_WARNED: set[tuple[object, str]] = set()


def _warn_duplicates(version: RepositoryVersion, path: str,
                     claimants: list[ContentArtifact]) -> None:
    if (version.pk, path) in _WARNED:
        return
    if len(_WARNED) > 10_000:
        _WARNED.clear()
    _WARNED.add((version.pk, path))
    served, *others = claimants
    log.warning(
        "%d content units claim %r in repository version %s: serving %s, the one added "
        "last (%s), instead of %s. Remove the extra units from the repository (a new "
        "version) to make the path unambiguous.",
        len(claimants), path, version.pk, _unit(served), served.added_at,
        ", ".join(f"{_unit(ca)} (added {ca.added_at})" for ca in others))


def _unit(content_artifact: ContentArtifact) -> str:
    return f"{content_artifact.content.pulp_type} {content_artifact.content_id}"


def exact_in_version(version: RepositoryVersion, path: str) -> ContentArtifact | None:
    """The content artifact at ``path`` in ``version``, the one added last if several."""
    return probe_version(version, path, with_index=False).exact


def grace_period_fallback(distribution: Distribution, path: str
                          ) -> tuple[ContentArtifact, RepositoryVersion] | None:
    """pulpcore's ``Distribution.get_fallback_ca``: the file at ``path`` in the newest
    superseded publication of the distribution still within its retention period, and
    its version; a pass-through publication's path claimed by several units answers as
    everywhere else (the one added last, where pulpcore takes the first by primary key).
    """
    if not retain_distributed_pub_enabled():
        return None
    recent = (
        DistributedPublication.get_non_expired()
        .filter(distribution=distribution)
        .order_by("-pulp_created")
        .select_related("publication__repository_version")
        .defer("publication__repository_version__content_ids")
    )
    for distributed in recent.iterator():
        publication = distributed.publication
        version = publication.repository_version
        if publication.pass_through:
            found = exact_in_version(version, path)
        else:
            published = (publication.published_artifact
                         .select_related("content_artifact__artifact__pulp_domain")
                         .filter(relative_path=path).first())
            found = published.content_artifact if published is not None else None
        if found is not None:
            return found, version
    return None


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
    versions, from the version's content artifacts; each name once. Dates are when the
    content joined the repository (newest one for a directory); sizes come from the file
    that is served (a published one first, else the unit added last), from its artifact
    or, for on-demand content, its remote artifact.
    """
    rows: list[tuple[str, datetime, object, int | None, object, bool]] = []
    if publication is not None:
        rows += [(*row, True) for row in PublishedArtifact.objects.filter(
            publication=publication, relative_path__startswith=directory
        ).values_list("relative_path", "pulp_created", "content_artifact__content_id",
                      "content_artifact__artifact__size", "content_artifact_id")]
    if publication is None or publication.pass_through:
        rows += [(*row, False) for row in ContentArtifact.objects.filter(
            content__in=version.content, relative_path__startswith=directory
        ).values_list("relative_path", "pulp_created", "content_id", "artifact__size", "pk")]
    if not rows:
        return Listing(title=title, names=frozenset())
    names_of: dict[object, set[str]] = defaultdict(set)
    content_dates: dict[object, datetime] = {}
    files: dict[str, list[tuple[bool, object, int | None, Any]]] = defaultdict(list)
    for relative_path, created, content_id, size, ca_id, published in rows:
        name = _entry(directory, relative_path)
        names_of[content_id].add(name)
        if content_id not in content_dates or content_dates[content_id] < created:
            content_dates[content_id] = created
        if not name.endswith("/"):
            files[name].append((published, content_id, size, ca_id))
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
    sizes: dict[str, int] = {}
    missing: dict[object, str] = {}
    for name, claimants in files.items():
        # The one served: published first, then the unit added last (as probe_version).
        _, _, size, ca_id = max(claimants, key=lambda c: (c[0], content_dates[c[1]], c[3]))
        if size is not None:
            sizes[name] = size
        else:
            missing[ca_id] = name
    if missing:
        remote_sizes = RemoteArtifact.objects.filter(
            content_artifact__in=list(missing), size__isnull=False
        ).values_list("content_artifact_id", "size")
        sizes.update({missing[ca_id]: size for ca_id, size in remote_sizes})
    every = frozenset(name for names in names_of.values() for name in names)
    return Listing(title=title, names=every, dates=dates, sizes=sizes)
