"""Turning a finished download into an artifact (and, for pull-through, into content).

The semantics are pulpcore's ``Handler._save_artifact``: an artifact with the same digest
may already exist (another worker saved it first), content may already exist (a parallel
pull-through), and orphan cleanup may have removed a row we found; every such race ends
with one artifact, linked, and no stray file. It all happens in one transaction on an ORM
thread, run by the fetch task, so a client hanging up cannot interrupt it.

The order differs from pulpcore's so that an interruption anywhere leaves the complete
result or nothing (:mod:`.placement`): the transaction first takes the artifact's advisory
lock, then the file is placed in storage whole (atomically), then the rows are written,
and the commit makes them visible. A save that fails for good gives its file back
(:meth:`~.placement.Placement.settle_back`); one cut off by a lost database is simply run
again once the database is back (:mod:`.fetch`): every step is idempotent, and a commit
whose acknowledgement was lost has either happened (the retry finds the rows) or not.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from pulpcore.app.models import Artifact, ContentArtifact, RemoteArtifact
from pulpcore.app.util import set_domain

from pulp_content_asgi.ondemand.placement import Placement
from pulp_content_asgi.plugin import hooks

log = logging.getLogger(__name__)


def _artifact(attributes: dict[str, Any], placement: Placement) -> Artifact:
    """Place the downloaded file and save it as an artifact, or reuse (and touch) an
    identical one: its file is the one just placed or found in place (same digest, same
    name in storage)."""
    name = placement.place()
    artifact = Artifact(**attributes, file=name)
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
        artifact = Artifact(**attributes, file=name)
        artifact.save()
        return artifact
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


def save(attributes: dict[str, Any], placement: Placement, remote_artifact: RemoteArtifact,
         request: Any) -> ContentArtifact:
    """Store the download; returns the content artifact that now has it.

    Runs in the remote's domain, as pulpcore's request handler does: the artifact goes to
    that domain's storage, and plugin constructors that call ``get_domain()`` (pulp_python,
    pulp_maven) build content of that domain. Raises OSError when storage refuses the file
    (``ENOSPC``), the database's errors, and the plugin hooks' own; ``placement`` then
    says whether a file was left in storage.
    """
    set_domain(remote_artifact.remote.pulp_domain)
    content_artifact = remote_artifact.content_artifact
    with transaction.atomic():
        placement.lock()
        artifact = _artifact(attributes, placement)
        if content_artifact._state.adding:
            created = _new_content(remote_artifact, artifact, request)
            by_path = {ca.relative_path: ca for ca in created}
            return by_path.get(content_artifact.relative_path, content_artifact)
        content_artifact.artifact = artifact
        content_artifact.save()
    return content_artifact


def settle_back(remote_artifact: RemoteArtifact, placement: Placement) -> bool:
    """After a save that failed for good: remove the file it placed unless a row has it."""
    set_domain(remote_artifact.remote.pulp_domain)
    return placement.settle_back()


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
