"""Finding the distribution a path belongs to, and listing distributions.

pulpcore's contract (``Handler._match_distribution``): the distribution is the one whose
base path is the longest ancestor of the request path within the domain; a path that is
only a prefix of base paths lists them (with a trailing slash) or redirects to add the
slash; anything else is a 404.

Base paths are meant never to overlap: pulpcore's API refuses it, and so does a database
trigger (migration core.0157) for new or renamed rows. The trigger does not check rows
that existed before it, so an upgraded installation can hold ``p7`` and ``p7/c`` together.
pulpcore-content answers 500 for every path below both; here the longest base path wins
in every lookup that matches a distribution (content, listings, the response cache's
distribution key, and therefore the content guard that is checked).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Substr
from pulpcore.app.models import ArtifactDistribution, Distribution, Domain

from pulp_content_asgi.protocol.listing import Listing
from pulp_content_asgi.resolution import rows

_RELATED = (
    "repository",
    "repository_version",
    "repository_version__repository",
    "publication",
    "remote",
    "pulp_domain",
    "publication__repository_version",
    "publication__repository_version__repository",
)
_DEFERRED = ("repository_version__content_ids", "publication__repository_version__content_ids")


def find_domain(name: str) -> Domain | None:
    """The domain named in the URL (``default`` when domains are off)."""
    return Domain.objects.filter(name=name).first()


def content_prefix(domain: Domain) -> str:
    """The URL prefix distributions of ``domain`` live under."""
    if settings.DOMAIN_ENABLED:
        return f"{settings.CONTENT_PATH_PREFIX}{domain.name}/"
    return str(settings.CONTENT_PATH_PREFIX)


def base_path_candidates(path: str) -> list[str]:
    """Every ancestor of ``path`` that could be a base path, longest first.

    ``a/b/c.iso`` gives ``["a/b/c.iso", "a/b", "a"]``: the path itself counts, as pulpcore
    matches with a slash appended.
    """
    parts = [p for p in path.split("/") if p]
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


@dataclass(frozen=True)
class PartialPath:
    """The path is a prefix of one or more base paths (a 'directory' of distributions)."""

    path: str  # always ends with "/"


def _detail_accessors() -> dict[str, str]:
    """pulp_type -> reverse one-to-one accessor of every direct Distribution subclass, so
    the master row and its detail row come back from one query (no ``cast()`` query)."""
    accessors = {}
    for model in Distribution._pulp_model_map.values():
        link = model._meta.parents.get(Distribution)
        if link is not None and model is not Distribution:
            accessors[model.get_pulp_type()] = link.remote_field.get_accessor_name()
    return accessors


_ACCESSORS: dict[str, str] | None = None


def _as_detail(master: Distribution) -> Distribution:
    accessor = (_ACCESSORS or {}).get(master.pulp_type)
    detail = getattr(master, accessor, None) if accessor else None
    if detail is None:
        return master.cast()
    cached = {k: v for k, v in master._state.fields_cache.items() if k != accessor}
    detail._state.fields_cache.update(cached)
    return detail


def match(domain_name: str, path: str) -> Distribution | None:
    """The detail distribution serving ``path`` in the named domain, in one query: the one
    with the longest base path among the path's ancestors (see the module docstring)."""
    global _ACCESSORS
    candidates = base_path_candidates(path)
    if not candidates:
        return None
    if _ACCESSORS is None:
        _ACCESSORS = _detail_accessors()
    # Every match (one per candidate at most: base paths are unique in a domain), the
    # longest picked here. Not ORDER BY in SQL: a sort above these ~30 left joins is costed
    # past PostgreSQL's jit_above_cost on tables without statistics, and JIT compiling it
    # took 2 s per request; under LIMIT the plan's cost stays that of the rows it returns.
    found = list(
        Distribution.objects.filter(pulp_domain__name=domain_name, base_path__in=candidates)
        .select_related(*_RELATED, "content_guard", *_ACCESSORS.values())
        .defer(*_DEFERRED)
        .annotate(**{VERSIONS: _versions()})[:len(candidates)]
    )
    chosen = longest_match(path, (distribution.base_path for distribution in found))
    if chosen is None:
        return None
    master = next(d for d in found if d.base_path == chosen)
    detail = _as_detail(master)
    # A detail row cast() read is newer than the versions, never older: safe to remember.
    setattr(detail, VERSIONS, getattr(master, VERSIONS))
    return detail


#: The attribute holding the row versions read with a matched distribution
#: (:mod:`.remembered`): a list of text, :func:`.rows.distribution_versions`.
VERSIONS = "_content_asgi_versions"


def _versions() -> RawSQL:
    sql, params = rows.distribution_versions(f'"{Distribution._meta.db_table}"')
    return RawSQL(sql, list(params), output_field=ArrayField(TextField()))


def longest_match(path: str, base_paths: Iterable[str]) -> str | None:
    """The base path among ``base_paths`` that serves ``path``: the longest one that is
    the path itself or one of its ancestors (:func:`base_path_candidates`), None if no
    one is. Pure, and total over any text (tests/http/test_matching.py)."""
    candidates = set(base_path_candidates(path))
    return max((b for b in base_paths if b in candidates), key=len, default=None)


def partial(domain: Domain, path: str) -> PartialPath | None:
    """A prefix of base paths, for paths that match no distribution."""
    candidates = base_path_candidates(path)
    if not candidates:
        return None
    directory = f"{candidates[0]}/"
    if Distribution.objects.filter(pulp_domain=domain, base_path__startswith=directory).exists():
        return PartialPath(directory)
    return None


def listing(domain: Domain, under: str) -> Listing:
    """The next path segment of every visible distribution whose base path starts ``under``.

    Hidden distributions and the artifact-serving one are never listed; with
    ``HIDE_GUARDED_DISTRIBUTIONS`` guarded ones are left out too.
    """
    visible = Distribution.objects.filter(pulp_domain=domain, base_path__startswith=under).exclude(
        models.Q(pulp_type=ArtifactDistribution.get_pulp_type()) | models.Q(hidden=True)
    )
    if settings.HIDE_GUARDED_DISTRIBUTIONS:
        visible = visible.filter(content_guard__isnull=True)
    segment = models.Func(
        Substr("base_path", len(under) + 1),
        function="SUBSTRING",
        template="%(function)s(%(expressions)s FROM '^[^/]*')",
        output_field=models.TextField(),
    )
    names = visible.annotate(segment=segment).values_list("segment", flat=True).distinct()
    if under:
        return Listing(title=under, names=frozenset(f"{n}/" for n in names))
    return Listing(title=content_prefix(domain), names=frozenset(f"{n}/" for n in names),
                   root=True)
