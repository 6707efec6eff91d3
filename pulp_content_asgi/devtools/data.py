"""Build Pulp file repositories through pulpcore's ORM, without tasks or the REST API.

Used by ``make demo``, the tests and the benchmarks, so all three exercise the same
models pulpcore's own tasks create: artifacts in storage, FileContent with content
artifacts, repository versions, publications (with published artifacts) and
distributions.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from django.conf import settings
from pulp_file.app.models import (
    FileContent,
    FileDistribution,
    FilePublication,
    FileRemote,
    FileRepository,
)
from pulpcore.app.models import (
    Artifact,
    ContentArtifact,
    Domain,
    PublishedArtifact,
    RemoteArtifact,
    RepositoryVersion,
)
from pulpcore.app.util import get_domain_pk


def artifact_from_path(path: str) -> Artifact:
    """Save the file at ``path`` as an artifact (the file moves into storage)."""
    hashers = {name: hashlib.new(name) for name in Artifact.DIGEST_FIELDS}
    size = 0
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
    digests = {name: hasher.hexdigest() for name, hasher in hashers.items()}
    existing = Artifact.objects.filter(sha256=digests["sha256"],
                                       pulp_domain_id=get_domain_pk()).first()
    if existing is not None:
        os.unlink(path)
        return existing
    artifact = Artifact(file=path, size=size, **digests)
    artifact.save()
    return artifact


def artifact_from_bytes(data: bytes) -> Artifact:
    os.makedirs(settings.WORKING_DIRECTORY, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=settings.WORKING_DIRECTORY)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return artifact_from_path(path)


@dataclass(frozen=True)
class OnDemand:
    """A file known only by its upstream URL (on-demand content, no artifact yet)."""

    url: str
    data: bytes


FileSpec: TypeAlias = bytes | Artifact | OnDemand


def _file_content(relative_path: str, spec: FileSpec, remote: FileRemote | None
                  ) -> FileContent:
    """The FileContent for this path and bytes (content is unique by path and digest)."""
    if isinstance(spec, OnDemand):
        sha256 = hashlib.sha256(spec.data).hexdigest()
        unit, created = FileContent.objects.get_or_create(
            relative_path=relative_path, digest=sha256, _pulp_domain_id=get_domain_pk())
        if created:
            if remote is None:
                raise ValueError("on-demand files need a remote")
            ca = ContentArtifact.objects.create(content=unit, relative_path=relative_path)
            RemoteArtifact.objects.create(content_artifact=ca, remote=remote, url=spec.url,
                                          size=len(spec.data), sha256=sha256)
        return unit
    artifact = spec if isinstance(spec, Artifact) else artifact_from_bytes(spec)
    unit, created = FileContent.objects.get_or_create(
        relative_path=relative_path, digest=artifact.sha256, _pulp_domain_id=get_domain_pk())
    if created:
        ContentArtifact.objects.create(content=unit, artifact=artifact,
                                       relative_path=relative_path)
    return unit


def add_files(repository: FileRepository, files: Mapping[str, FileSpec],
              remote: FileRemote | None = None) -> RepositoryVersion:
    """A new repository version with these relative paths added."""
    content_pks = []
    for relative_path, spec in files.items():
        content_pks.append(_file_content(relative_path, spec, remote).pk)
    with repository.new_version() as version:
        version.add_content(FileContent.objects.filter(pk__in=content_pks))
    return version


def remove_files(repository: FileRepository, relative_paths: Iterable[str]
                 ) -> RepositoryVersion:
    latest = repository.latest_version()
    units = FileContent.objects.filter(pk__in=latest.content,
                                       relative_path__in=list(relative_paths))
    with repository.new_version() as version:
        version.remove_content(units)
    return version


def repository(name: str, files: Mapping[str, FileSpec] | None = None,
               remote: FileRemote | None = None) -> FileRepository:
    repo = FileRepository.objects.create(name=name)
    if files:
        add_files(repo, files, remote)
    return repo


def publish(version: RepositoryVersion, pass_through: bool = False,
            checkpoint: bool = False) -> FilePublication:
    """Publish every content artifact of ``version`` at its relative path.

    ``pass_through=False`` writes a PublishedArtifact per file (what most plugins do);
    ``True`` publishes nothing and lets the version's content through (pulp_file's way).
    """
    # Publication.create() also records a task's CreatedResource; there is no task here.
    publication = FilePublication(repository_version=version, pass_through=pass_through,
                                  checkpoint=checkpoint)
    publication.save()
    with publication:
        if not pass_through:
            PublishedArtifact.objects.bulk_create(
                PublishedArtifact(relative_path=ca.relative_path, content_artifact=ca,
                                  publication=publication)
                for ca in ContentArtifact.objects.filter(content__in=version.content)
            )
    return publication


def distribute(base_path: str, **fields: object) -> FileDistribution:
    """A FileDistribution at ``base_path`` (``name`` defaults to the base path)."""
    fields.setdefault("name", base_path)
    return FileDistribution.objects.create(base_path=base_path, **fields)


def _digests(blob: bytes) -> dict[str, str]:
    return {name: hashlib.new(name, blob).hexdigest() for name in Artifact.DIGEST_FIELDS}


def artifact_name(sha256: str) -> str:
    """The storage name of an artifact in the current domain, relative to the storage's
    root or bucket: pulpcore's ``get_artifact_path`` (``artifact/ab/cdef…``, with the
    domain's id after ``artifact/`` outside the default domain). ``Artifact.file``'s
    ``pre_save`` moves a file stored under any other name."""
    from pulpcore.app.models.storage import get_artifact_path

    return str(get_artifact_path(sha256))


def write_local(name: str, blob: bytes) -> None:
    """Write ``blob`` at storage name ``name`` under MEDIA_ROOT (FileSystem storage)."""
    path = os.path.join(settings.MEDIA_ROOT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(blob)


def bulk_repository(name: str, files: Iterable[tuple[str, bytes]], batch: int = 2000,
                    store: Callable[[str, bytes], None] = write_local) -> FileRepository:
    """Like :func:`repository` for thousands of files: artifacts are written straight into
    storage by ``store(name, bytes)`` (MEDIA_ROOT by default; the benchmark's object set
    uploads to a bucket) and rows are bulk-inserted, in the current domain (benchmark data
    sets)."""
    from django.db import transaction

    repo = FileRepository.objects.create(name=name)
    units: list[FileContent] = []
    pending: list[tuple[str, bytes]] = []

    def flush() -> None:
        by_sha: dict[str, Artifact] = {}
        for _, blob in pending:
            digests = _digests(blob)
            sha = digests["sha256"]
            if sha in by_sha:
                continue
            name = artifact_name(sha)
            store(name, blob)
            by_sha[sha] = Artifact(file=name, size=len(blob), **digests)
        with transaction.atomic():
            Artifact.objects.bulk_create(list(by_sha.values()), ignore_conflicts=True)
            stored = {a.sha256: a for a in Artifact.objects.filter(
                sha256__in=list(by_sha), pulp_domain_id=get_domain_pk())}
            new_units = [FileContent(relative_path=rp, digest=hashlib.sha256(b).hexdigest())
                         for rp, b in pending]
            for unit in new_units:  # multi-table content: no bulk insert (as in pulpcore)
                unit.save()
            ContentArtifact.objects.bulk_create(
                ContentArtifact(content=u, artifact=stored[u.digest], relative_path=rp)
                for u, (rp, _) in zip(new_units, pending, strict=True)
            )
        units.extend(new_units)
        pending.clear()

    for item in files:
        pending.append(item)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    with repo.new_version() as version:
        for start in range(0, len(units), batch):
            version.add_content(FileContent.objects.filter(
                pk__in=[u.pk for u in units[start:start + batch]]))
    return repo


def filesystem_domain(name: str) -> Domain:
    """A domain storing its artifacts in MEDIA_ROOT, as the default domain does."""
    default = Domain.objects.get(name="default")
    return Domain.objects.create(name=name, storage_class=default.storage_class,
                                 storage_settings={"location": settings.MEDIA_ROOT})
