"""Remembered distributions: a published file in one SQL statement, never stale.

pulpcore-content reads the database on every request, so whatever the API commits is
served by the very next request. The distribution lookup (a join across every installed
plugin's detail table, :func:`.distributions.match`) costs most of a request's CPU,
though its answer rarely changes. A worker therefore remembers the rows a lookup loaded
(distribution, detail, domain, content guard with its detail, publication, repository
version, repository, remote, and the latest publication or version a repository-serving
distribution resolved to) together with their *row versions* (:mod:`.rows`) read in the
same statement.

Each later request for a path under that base path sends **one** statement that

1. matches the path again (the longest base path among its ancestors in the domain,
   ``core_distribution`` and ``core_domain`` only, by their unique indexes),
2. reads the current row versions of every row remembered, for the distribution it
   matched (and re-runs the "latest publication/version" queries of a repository-serving
   distribution), and
3. runs the content lookup of the common case (the published artifact of the
   publication, or the content artifact of the repository version, at the path) for the
   remembered sources.

When every row version (and the primary key matched) is the one remembered, the copy is
exactly what the database holds at that statement's snapshot, so the content lookup ran
against the right publication or version, and the request goes on with private copies of
the remembered instances and no other query. Anything else (a distribution created at a
longer base path, a base path, publication, guard or domain changed, a guard's detail row
edited, a new publication or version of a served repository, a deletion) changes a row
version or the match, and the request forgets the entry and takes the full path (today's
queries), which remembers the new rows. So a change is seen by the very next request
after its transaction commits, as with pulpcore-content: there is no window.

What is not remembered is read live as before: permissions (RBAC roles, composite guard
members), checkpoints, grace-period publications, remotes' detail rows, artifacts.

Entries live at most :data:`MAX_AGE` seconds (transaction-id wraparound, :mod:`.rows`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.db import connection
from django.db.models import Model, QuerySet
from pulpcore.app.models import ContentGuard, Distribution, Domain

from pulp_content_asgi.resolution import content, distributions, rows, sources
from pulp_content_asgi.resolution.distributions import base_path_candidates

#: Seconds an entry is trusted at most (then looked up again). Not a consistency window
#: (every use is checked); it only rules out transaction-id wraparound.
MAX_AGE = 600.0
#: Entries per worker process (about 18 KiB each, measured: ≤ 36 MiB); the oldest
#: go first, and a distribution forgotten costs one full lookup when next requested.
MAX_ENTRIES = 2_000

#: Attributes set on a distribution instance: the row versions read with it, and the
#: content guard's detail instance once loaded.
VERSIONS = distributions.VERSIONS
GUARD = "_content_asgi_guard"


@dataclass(frozen=True)
class Derived:
    """What :func:`.sources.of` resolved with queries, and how to re-check it."""

    sources: sources.Sources
    checks: tuple[tuple[str, tuple[Any, ...]], ...]  # compiled queries of the row versions
    fingerprint: tuple[str | None, ...]


@dataclass(frozen=True)
class Entry:
    distribution: Distribution  # pristine: never handed out, only copied
    versions: tuple[str | None, ...]
    learned_at: float
    #: The type's ``SERVE_FROM_PUBLICATION`` then: code, not rows, but what the sources
    #: were derived with (tests change it).
    serve_from_publication: bool = True
    guard: ContentGuard | None = None
    derived: Derived | None = None


_entries: dict[tuple[str, str], Entry] = {}
_lock = threading.Lock()


def _key(domain_name: str, distribution: Distribution) -> tuple[str, str]:
    return (domain_name, distribution.base_path)


def learn(domain_name: str, distribution: Distribution) -> None:
    """Remember a distribution the full lookup just loaded (with its row versions)."""
    versions = getattr(distribution, VERSIONS, None)
    if versions is None:
        return  # not loaded by distributions.match: no row versions to check
    entry = Entry(rows.clone(distribution), tuple(versions), time.monotonic(),
                  bool(distribution.SERVE_FROM_PUBLICATION))
    with _lock:
        _entries.pop(_key(domain_name, distribution), None)
        while len(_entries) >= MAX_ENTRIES:
            del _entries[next(iter(_entries))]
        _entries[_key(domain_name, distribution)] = entry


def _update(distribution: Distribution, **changes: Any) -> None:
    """Add to the entry ``distribution`` was loaded with, if it is still the current one."""
    versions = getattr(distribution, VERSIONS, None)
    if versions is None:
        return
    key = _key(distribution.pulp_domain.name, distribution)
    with _lock:
        entry = _entries.get(key)
        if entry is not None and entry.versions == tuple(versions) \
                and entry.distribution.pk == distribution.pk:
            _entries[key] = replace(entry, **changes)


def learn_guard(distribution: Distribution, guard: ContentGuard) -> None:
    """Remember the content guard's detail instance (loaded after the row versions were
    read, so never older than they say)."""
    if getattr(distribution, VERSIONS, None) is not None:
        _update(distribution, guard=rows.clone(guard))


def learn_sources(distribution: Distribution, found: sources.Sources,
                  queries: Sequence[QuerySet], fingerprint: tuple[str | None, ...]) -> None:
    """Remember sources :func:`.sources.of` resolved with ``queries`` (each annotated
    with ``_fp``, the row versions it read; ``fingerprint`` holds their values)."""
    checks = []
    for queryset in queries:
        compiler = queryset.values_list("_fp").query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        checks.append((sql, tuple(params)))
    _update(distribution, derived=Derived(_copied(found), tuple(checks), fingerprint))


def _recalled(domain_name: str, path: str) -> tuple[tuple[str, str], Entry] | None:
    for base_path in base_path_candidates(path):
        key = (domain_name, base_path)
        entry = _entries.get(key)
        if entry is not None:
            return key, entry
    return None


def _forget(key: tuple[str, str], entry: Entry) -> None:
    with _lock:
        if _entries.get(key) is entry:
            del _entries[key]


def _copy(entry: Entry) -> Distribution:
    """Private copies for one request, with what the full path would have attached."""
    distribution = rows.clone(entry.distribution)
    setattr(distribution, VERSIONS, entry.versions)
    if entry.guard is not None:
        setattr(distribution, GUARD, rows.clone(entry.guard))
    if entry.derived is not None:
        setattr(distribution, sources.SOURCES, _copied(entry.derived.sources))
    return distribution


def _copied(found: sources.Sources) -> sources.Sources:
    """Copies of sources, sharing what the originals share (a publication's version)."""
    memo: dict[int, Any] = {}
    return sources.Sources(*(rows.clone(part, memo) for part in found))


#: Stands for the request path in a compiled probe (:func:`_template`). No request path
#: holds a NUL (paths with control characters are refused with 400), and PostgreSQL
#: refuses one in text, so a parameter that kept it would fail loudly, never match.
_STEM = "\x00content-asgi-path\x00"
#: Compiled probes kept per worker (about 15 KiB each, measured: ≤ 30 MiB; one to three
#: per publication or version served); all are dropped when full.
MAX_TEMPLATES = 2_000


@dataclass(frozen=True)
class _Template:
    """A compiled probe and what turning its rows into instances needs, taken from
    Django's compiler as ``ModelIterable`` takes it (not the compiler itself: it holds
    the whole query, several times this)."""

    sql: str
    params: tuple[Any, ...]
    model: type[Model]
    fields: tuple[int, int]  # the model's own columns: [start, end)
    names: tuple[str, ...]  # their attribute names
    populators: tuple[Any, ...]  # select_related instances (read-only once built)
    annotations: tuple[tuple[str, int], ...]
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]  # (column, converters, expr)

    @classmethod
    def compile(cls, queryset: QuerySet) -> _Template:
        from django.db.models.query import get_related_populators

        compiler = queryset.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql(with_col_aliases=True)
        select, klass_info = compiler.select, compiler.klass_info
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        converters = compiler.get_converters([s[0] for s in select[:compiler.col_count]])
        return cls(sql, tuple(params), klass_info["model"], (start, end),
                   tuple(column[0].target.attname for column in select[start:end]),
                   tuple(get_related_populators(klass_info, select, connection.alias)),
                   tuple(compiler.annotation_col_map.items()),
                   tuple((position, tuple(found), expression)
                         for position, (found, expression) in converters.items()))

    def instances(self, found: list[tuple]) -> list[Any]:
        """Model instances from the probe's own columns, as Django's ``ModelIterable``
        builds them (select_related instances and annotations included)."""
        made = []
        start, end = self.fields
        for raw in found:
            row = list(raw)
            for position, functions, expression in self.converters:
                for function in functions:
                    row[position] = function(row[position], expression, connection)
            obj = self.model.from_db(connection.alias, self.names, row[start:end])
            for populator in self.populators:
                populator.populate(row, obj)
            for name, position in self.annotations:
                setattr(obj, name, row[position])
            made.append(obj)
        return made


_templates: dict[tuple, _Template] = {}


def _shape(path: str) -> tuple[str, str]:
    """("root"|"dir"|"file", the path's stem): what the probe's SQL text depends on."""
    if path == "":
        return "root", ""
    if path.endswith("/"):
        return "dir", path[:-1]
    return "file", path


def _template(kind: str, source: Any, shape: str, with_index: bool) -> _Template:
    """The probe of ``source`` compiled once per path shape: Django compiles the very
    queryset :mod:`.content` would run for a path, with :data:`_STEM` for the path; the
    request's path goes into the parameters (:func:`_fill`). Compiling the queryset was
    most of a request's CPU time."""
    key = (kind, source.pk, shape, with_index)
    found = _templates.get(key)
    if found is None:
        path = {"root": "", "dir": f"{_STEM}/", "file": _STEM}[shape]
        queryset = (content.published_query(source, path) if kind == "published"
                    else content.version_query(source, path, with_index))
        found = _Template.compile(queryset)
        if len(_templates) >= MAX_TEMPLATES:
            _templates.clear()
        _templates[key] = found
    return found


def _fill(params: tuple[Any, ...], stem: str) -> list[Any]:
    """The template's parameters for a path with this stem: exact comparisons take the
    stem as it is, LIKE patterns (``startswith`` under a collation that is not
    code-point ordered) take it escaped, as Django's lookup does."""
    filled = []
    for param in params:
        if isinstance(param, str) and _STEM in param:
            like = param.endswith("%")
            param = param.replace(_STEM, connection.ops.prep_for_like_query(stem) if like
                                  else stem)
        filled.append(param)
    return filled


def _probe(distribution: Distribution, path: str
           ) -> tuple[tuple, tuple[str, list[Any], _Template]] | None:
    """The content lookup :class:`~pulp_content_asgi.plugin.handlers.DistributionHandler`
    will make first, if it can be known without a query: the published artifact of the
    publication, or (for types that do not serve publications) the content artifact of
    the repository version, at ``path``. Its key (:func:`.content.probe_key`) and its
    SQL, parameters and template."""
    if distribution.checkpoint:
        return None
    kind = type(distribution)
    if kind.get_repository_publication_and_version \
            is not Distribution.get_repository_publication_and_version:
        return None
    if sources.derivation_needed(distribution) and not hasattr(distribution, sources.SOURCES):
        return None
    found = sources.of(distribution)
    shape, stem = _shape(path)
    if found.publication is not None:
        template = _template("published", found.publication, shape, True)
        return (content.probe_key("published", found.publication, path),
                (template.sql, _fill(template.params, stem), template))
    if found.version is not None and not distribution.SERVE_FROM_PUBLICATION:
        template = _template("version", found.version, shape, True)
        return (content.probe_key("version", found.version, path),
                (template.sql, _fill(template.params, stem), template))
    return None


_MATCH = """SELECT {versions} AS versions, {derived} AS derived
FROM {distribution} d JOIN {domain} dom ON dom.pulp_id = d.pulp_domain_id
WHERE dom.name = %s AND d.base_path = ANY(%s)
ORDER BY length(d.base_path) DESC LIMIT 1"""


@functools.lru_cache(maxsize=1024)
def _match(distribution_type: str, guard_type: str | None,
           checks: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    versions, params = rows.distribution_versions("d", distribution_type, guard_type)
    derived = "NULL::text[]"
    if checks:
        derived = "ARRAY[{}]::text[]".format(
            ", ".join(f'(SELECT s."_fp" FROM ({sql}) s)' for sql in checks))
    return _MATCH.format(versions=versions, derived=derived,
                         distribution=rows.table(Distribution),
                         domain=rows.table(Domain)), params


def _statement(entry: Entry, domain_name: str, path: str,
               probe: tuple[str, list[Any], _Template] | None) -> tuple[str, list[Any]]:
    """The one statement: the match with its row versions, the derivation re-checks and
    the content probe."""
    checks = entry.derived.checks if entry.derived is not None else ()
    # The guard's detail type once known; "" (no detail type at all) for an unguarded
    # distribution: adding a guard writes the distribution's row, whose version is read.
    guard_type = (entry.guard.pulp_type if entry.guard is not None
                  else "" if entry.distribution.content_guard_id is None else None)
    match, params = _match(entry.distribution.pulp_type, guard_type,
                           tuple(sql for sql, _ in checks))
    every = [*params, *(p for _, check_params in checks for p in check_params),
             domain_name, base_path_candidates(path)]
    if probe is None:
        return match, every
    probe_sql, probe_params, _ = probe
    return (f"SELECT v.*, p.* FROM ({match}) v LEFT JOIN ({probe_sql}) p ON true",
            [*every, *probe_params])


def recall(domain_name: str, path: str) -> Distribution | None:
    """The remembered distribution serving ``path``, checked by one statement that also
    fetched the content lookup of the common case (:func:`.content.prefetched`); None when
    nothing is remembered for the path or what is remembered changed (then forgotten)."""
    recalled = _recalled(domain_name, path)
    if recalled is None:
        return None
    key, entry = recalled
    if time.monotonic() - entry.learned_at > MAX_AGE or \
            entry.serve_from_publication != entry.distribution.SERVE_FROM_PUBLICATION:
        _forget(key, entry)
        return None
    distribution = _copy(entry)
    relative = path.lstrip("/")[len(distribution.base_path):].lstrip("/")
    probe = _probe(distribution, relative)
    sql, params = _statement(entry, domain_name, path, None if probe is None else probe[1])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    current = entry.derived.fingerprint if entry.derived is not None else None
    if not found or tuple(found[0][0]) != entry.versions or (
            current is not None and tuple(found[0][1]) != current):
        _forget(key, entry)
        return None
    if probe is not None:
        key_, (_, _, template) = probe
        made = template.instances([row[2:] for row in found if row[2] is not None])
        made.sort(key=lambda row: row.rank)  # the join need not keep the probe's order
        content.prefetched({key_: made})
    return distribution
