"""Row versions and private copies of loaded rows: what a remembered distribution is
made of (:mod:`.remembered`).

A row's *version* is PostgreSQL's ``xmin`` system column: the id of the transaction that
wrote this version of the row. Every ``UPDATE`` writes a new row version with the
updating transaction's id, whatever the columns (or whether a value changed at all),
``DELETE`` removes it and ``INSERT`` makes a new primary key (UUIDs here), so two reads of
one primary key that see the same ``xmin`` saw the same committed content. Locking a row
(``SELECT … FOR UPDATE``) and ``VACUUM``/freezing do not change it (freezing marks the
row, PostgreSQL ≥ 9.4 keeps the raw ``xmin``). The only way for a changed row to show an
``xmin`` seen before is the reuse of a transaction id: by wraparound (the same 32-bit id
comes round after about four billion transactions; :data:`.remembered.MAX_AGE` makes that
impossible for a remembered row), or by a server that went back in time (a restore to an
earlier point, a failover to a replica that had not received the last commits), which is
another server start: the server's start time is read with the versions.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from django.db.models import Model
from django.db.models.base import ModelState
from pulpcore.app.models import (
    ContentGuard,
    Distribution,
    Domain,
    Publication,
    Remote,
    Repository,
    RepositoryVersion,
)


def _name(identifier: str) -> str:
    """An SQL identifier, quoted only when it must be: the statement stays under psycopg's
    4,096 characters for caching its conversion (``_queries.MAX_CACHED_STATEMENT_LENGTH``)."""
    return identifier if re.fullmatch(r"[a-z_][a-z0-9_]*", identifier) else f'"{identifier}"'


def table(model: type[Model]) -> str:
    """The table of ``model``, as SQL."""
    return _name(model._meta.db_table)


def _pk(model: type[Model]) -> str:
    return _name(model._meta.pk.column)


def version_of(model: type[Model], ref: str) -> str:
    """SQL: the version of the ``model`` row whose primary key is ``ref`` (NULL if none)."""
    # Unqualified names resolve to the subquery's own table first (``ref`` is qualified).
    return f"(SELECT xmin::text FROM {table(model)} WHERE {_pk(model)} = {ref})"


def _detail_tables(model: type[Model], master: type[Model]) -> list[type[Model]]:
    """The tables of a detail model below its master (its own and any in between)."""
    chain = [model, *model._meta.get_parent_list()]
    return [m for m in chain if issubclass(m, master) and m is not master
            and not m._meta.proxy]


def _joined(tables: list[type[Model]], pk_ref: str) -> str:
    parts = [f"COALESCE({version_of(m, pk_ref)}, '-')" for m in tables]
    return parts[0] if len(parts) == 1 else f"concat_ws(',', {', '.join(parts)})"


def detail_versions(master: type[Any], type_ref: str, pk_ref: str,
                    only: str | None = None) -> tuple[str, list[str]]:
    """SQL (and its parameters): the versions of the detail rows of the ``master`` row
    with type ``type_ref`` and primary key ``pk_ref``, as one text ("-" for a missing
    row); NULL for a type not installed. One ``WHEN`` per detail type of every installed
    plugin: PostgreSQL evaluates only the matching one.

    With ``only`` (the type the row is known to have: a row never changes type) the
    versions of that type's tables alone, without the ``CASE``: the same value for that
    row, and a shorter statement. ``only=""``: NULL (no detail row at all)."""
    if only is not None:
        model = master._pulp_model_map.get(only)
        tables = _detail_tables(model, master) if model is not None else []
        if not tables:
            return "NULL::text", []
        return _joined(tables, pk_ref), []
    whens, params = [], []
    for pulp_type, model in sorted(master._pulp_model_map.items()):
        tables = _detail_tables(model, master)
        if not tables:
            continue
        whens.append(f"WHEN %s THEN {_joined(tables, pk_ref)}")
        params.append(pulp_type)
    if not whens:
        return "NULL::text", []
    return f"(CASE {type_ref} {' '.join(whens)} END)", params


@functools.lru_cache(maxsize=256)
def distribution_versions(alias: str, distribution_type: str | None = None,
                          guard_type: str | None = None) -> tuple[str, tuple[str, ...]]:
    """SQL (and parameters): a ``text[]`` of the versions of every row a distribution
    lookup loads for the ``core_distribution`` row ``alias``: the distribution (master
    and detail), its domain, content guard (master and detail), publication (with its
    repository version and repository), repository version (with its repository),
    repository and remote (master). Read in the same statement as those rows (or before
    them), it says whether a copy of them is still what the database holds.

    ``distribution_type`` and ``guard_type`` (the pulp types the rows are known to have)
    make a shorter statement that reads the detail rows of those types only
    (:func:`detail_versions`); the values are the same for those rows, and a row matched
    in their place has another primary key or distribution row version anyway.
    """
    d = alias
    guard = ContentGuard
    guard_type_sql = (f"(SELECT g.pulp_type FROM {table(guard)} g "
                      f"WHERE g.{_pk(guard)} = {d}.content_guard_id)")
    detail, detail_params = detail_versions(Distribution, f"{d}.pulp_type", f"{d}.pulp_id",
                                            distribution_type)
    guard_detail, guard_params = detail_versions(guard, guard_type_sql,
                                                 f"{d}.content_guard_id", guard_type)
    version, repository, publication = RepositoryVersion, Repository, Publication
    with_repository = (
        f"(SELECT v.xmin::text || ',' || r.xmin::text FROM {table(version)} v "
        f"JOIN {table(repository)} r ON r.{_pk(repository)} = v.repository_id "
        f"WHERE v.{_pk(version)} = {d}.repository_version_id)"
    )
    # The publication, its repository version and that version's repository.
    of_publication = (
        f"(SELECT p.xmin::text || ',' || v.xmin::text || ',' || r.xmin::text "
        f"FROM {table(publication)} p "
        f"JOIN {table(version)} v ON v.{_pk(version)} = p.repository_version_id "
        f"JOIN {table(repository)} r ON r.{_pk(repository)} = v.repository_id "
        f"WHERE p.{_pk(publication)} = {d}.publication_id)"
    )
    items = [
        f"{d}.pulp_id::text",
        # Transaction ids are reused after a restore to an earlier point or a failover to
        # a replica that had not received the last commits: the server changed, and so
        # does its start time.
        "pg_postmaster_start_time()::text",
        f"{d}.xmin::text",
        detail,
        version_of(Domain, f"{d}.pulp_domain_id"),
        version_of(guard, f"{d}.content_guard_id"),
        guard_detail,
        of_publication,
        with_repository,
        version_of(repository, f"{d}.repository_id"),
        version_of(Remote, f"{d}.remote_id"),
    ]
    return f"ARRAY[{', '.join(items)}]::text[]", (*detail_params, *guard_params)


def publication_version(alias: str = '"core_publication"', with_repository_version: bool = False
                        ) -> str:
    """SQL: primary key and version of the publication row ``alias`` (and of its
    repository version), for annotating a publication query."""
    sql = f"{alias}.pulp_id::text || '/' || {alias}.xmin::text"
    if with_repository_version:
        version = version_of(RepositoryVersion, f"{alias}.repository_version_id")
        sql += f" || '/' || COALESCE({version}, '-')"
    return sql


def repository_version_version(alias: str = '"core_repositoryversion"') -> str:
    """SQL: primary key and version of the repository version row ``alias``."""
    return f"{alias}.pulp_id::text || '/' || {alias}.xmin::text"


def clone(obj: Any, memo: dict[int, Any] | None = None) -> Any:
    """A private copy of a loaded model instance and the related instances loaded with it
    (``select_related``), sharing nothing mutable with the original: the field values'
    containers (JSON fields) are copied, ``_state`` is new, cycles (a detail row and its
    parent link) are kept as cycles. None gives None."""
    if obj is None:
        return None
    if memo is None:
        memo = {}
    found = memo.get(id(obj))
    if found is not None:
        return found
    new = obj.__class__.__new__(obj.__class__)
    memo[id(obj)] = new
    values = {}
    for name, value in obj.__dict__.items():
        if name in ("_state", "_prefetched_objects_cache"):
            continue
        values[name] = copy.copy(value) if isinstance(value, (dict, list, set)) else value
    new.__dict__.update(values)
    state = ModelState()
    state.db = obj._state.db
    state.adding = obj._state.adding
    state.fields_cache = {name: clone(related, memo)
                          for name, related in obj._state.fields_cache.items()}
    new._state = state
    return new
