"""Turning a finished download into an artifact (and, for pull-through, into content).

The semantics are pulpcore's ``Handler._save_artifact``: an artifact with the same digest
may already exist (another worker saved it first), content may already exist (a parallel
pull-through), and orphan cleanup may have removed a row we found; every such race ends
with one artifact, linked, and no stray file. It all happens in one transaction on an ORM
thread, run by the fetch task, so a client hanging up cannot interrupt it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from pulpcore.app.models import Artifact, ContentArtifact, RemoteArtifact
from pulpcore.app.util import set_domain

from pulp_content_asgi.plugin import hooks

log = logging.getLogger(__name__)


def _artifact(attributes: dict[str, Any], path: str) -> Artifact:
    """Save the downloaded file as an artifact, or reuse (and touch) an identical one."""
    artifact = Artifact(**attributes, file=path)
    try:
        with transaction.atomic():
            artifact.save()
        return artifact
    except IntegrityError:
        pass
    try:
        existing = Artifact.objects.get(artifact.q())
        existing.touch()
    except (Artifact.DoesNotExist, DatabaseError):
        # Orphan cleanup removed it between the conflict and the lookup: save ours.
        artifact = Artifact(**attributes, file=path)
        artifact.save()
        return artifact
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # the existing artifact already has these bytes
    return existing


def _new_content(remote_artifact: RemoteArtifact, artifact: Artifact, request: Any
                 ) -> list[ContentArtifact]:
    """First pull-through download: create the content, its artifacts and remote artifacts."""
    remote = remote_artifact.remote
    relative_path = remote_artifact.content_artifact.relative_path
    content_type = hooks.call(remote, "get_remote_artifact_content_type", relative_path)
    built = hooks.call(content_type, "init_from_artifact_and_relative_path", artifact,
                       relative_path)
    content, artifacts = built if isinstance(built, tuple) else (built, {relative_path: artifact})
    try:
        with transaction.atomic():
            content.save()
            created = [ContentArtifact.objects.create(relative_path=rp, artifact=a,
                                                      content=content)
                       for rp, a in artifacts.items()]
    except IntegrityError:
        content = content_type.objects.get(content.q())
        created = list(content.contentartifact_set.select_related("artifact"))
        if not created or any(ca.artifact_id is None for ca in created):
            ContentArtifact.objects.bulk_create(
                [ContentArtifact(artifact=a, content=content, relative_path=rp)
                 for rp, a in artifacts.items()],
                update_conflicts=True, update_fields=["artifact"],
                unique_fields=["content", "relative_path"],
            )
            created = list(content.contentartifact_set.select_related("artifact"))
    for ca in created:
        url = hooks.call(remote, "get_remote_artifact_url", ca.relative_path, request=request)
        if not url:
            continue
        try:
            with transaction.atomic():
                RemoteArtifact.objects.create(remote=remote, content_artifact=ca, url=url)
        except IntegrityError:
            log.info("RemoteArtifact for %s already exists.", url)
    return created


def save(attributes: dict[str, Any], path: str, remote_artifact: RemoteArtifact,
         request: Any) -> ContentArtifact:
    """Store the download; returns the content artifact that now has it.

    Runs in the remote's domain, as pulpcore's request handler does: the artifact goes to
    that domain's storage, and plugin constructors that call ``get_domain()`` (pulp_python,
    pulp_maven) build content of that domain.
    """
    set_domain(remote_artifact.remote.pulp_domain)
    content_artifact = remote_artifact.content_artifact
    with transaction.atomic():
        artifact = _artifact(attributes, path)
        if content_artifact._state.adding:
            created = _new_content(remote_artifact, artifact, request)
            by_path = {ca.relative_path: ca for ca in created}
            return by_path.get(content_artifact.relative_path, content_artifact)
        content_artifact.artifact = artifact
        content_artifact.save()
    return content_artifact


def offer(repository: Any, content_artifact: ContentArtifact) -> None:
    """Offer saved pull-through content to the repository (the plugin dispatches the task
    that adds it, in the repository's domain)."""
    set_domain(repository.pulp_domain)
    hooks.call(repository, "pull_through_add_content", content_artifact)


def mark_failed(remote_artifact: RemoteArtifact) -> None:
    """Skip this remote artifact for REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN seconds."""
    from django.utils import timezone

    if remote_artifact._state.adding:
        return
    RemoteArtifact.objects.filter(pk=remote_artifact.pk).update(failed_at=timezone.now())
