"""What to fetch for an on-demand or pull-through request, decided on the ORM thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from pulpcore.app.models import ContentArtifact, Remote, RemoteArtifact, Repository

from pulp_content_asgi.plugin import hooks
from pulp_content_asgi.plugin.results import ServeRemote
from pulp_content_asgi.plugin.upstream import UpstreamCheck


@dataclass
class Candidate:
    """One remote artifact to try, its remote already cast to the plugin's type.

    ``check`` (saved downloads only) says how to learn what the upstream declares about
    the file, ``document`` the URL of the one document that declares it (asked on this
    thread, so the fetch needs no ORM), ``relative_path`` the content artifact's.
    """

    remote_artifact: RemoteArtifact
    save: bool
    check: UpstreamCheck | None = None
    document: str | None = None
    relative_path: str = ""


@dataclass
class RemotePlan:
    """Everything the asynchronous fetch needs, so it never touches the ORM itself."""

    key: str
    candidates: list[Candidate]
    headers: dict[str, str]
    relative_path: str
    size: int | None
    repository: Repository | None = None
    pull_through_url: str | None = None
    #: Called on the ORM thread with the saved content artifact (e.g. to cache it).
    after_save: list[Callable[[ContentArtifact], None]] = field(default_factory=list)
    #: When the request arrived, before it looked anything up (wall clock: compared across
    #: the processes of a host): a download that finished earlier than that and still
    #: was not found stored has been undone since (reclaimed); one that finished later
    #: may simply have been saved while this request was resolving.
    resolved_at: float = field(default_factory=time.time)
    #: The request handed to plugin hooks when the download is saved
    #: (``Remote.get_remote_artifact_url(path, request=...)``; pulp_python reads its query).
    hook_request: Any = None
    #: The validators the stored file will have, known before the download: its strong
    #: ETag (``"<sha256>"``, when every remote artifact promises that digest and the
    #: download is verified against it) and Last-Modified (when the content joined the
    #: repository). Upstream validators describe the upstream, and are not used.
    etag: str | None = None
    last_modified: datetime | None = None


def _checked(candidate: Candidate, check: UpstreamCheck | None, relative_path: str
             ) -> Candidate:
    """``candidate`` with the upstream check of a saved download and its document's URL."""
    if check is None or not candidate.save:
        return candidate  # streamed content is not verified (as in pulpcore)
    candidate.check = check
    candidate.relative_path = relative_path
    candidate.document = hooks.call(check, "document", candidate.remote_artifact.url,
                                    relative_path)
    return candidate


def _candidates(result: ServeRemote) -> list[Candidate]:
    """pulpcore's order: remotes of alternate content sources first, and remote artifacts
    that failed within REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN left out."""
    path = result.content_artifact.relative_path
    if result.remote_artifact is not None:  # first request of pull-through content
        remote = result.remote_artifact.remote.cast()
        result.remote_artifact.remote = remote
        return [_checked(Candidate(result.remote_artifact, result.save), result.check, path)]
    cooldown = timedelta(seconds=settings.REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN)
    found = (
        result.content_artifact.remoteartifact_set.select_related("remote")
        .order_by_acs()
        .exclude(failed_at__gte=timezone.now() - cooldown)
    )
    candidates = []
    for remote_artifact in found:
        remote_artifact.remote = remote_artifact.remote.cast()
        candidates.append(_checked(Candidate(
            remote_artifact, remote_artifact.remote.policy != Remote.STREAMED),
            result.check, path))
    return candidates


def _etag(candidates: list[Candidate]) -> str | None:
    """``"<sha256>"`` when every candidate promises the same sha256 and is verified against
    it (saved downloads are; streamed ones are not checked, so they claim nothing)."""
    digests = {c.remote_artifact.sha256 for c in candidates}
    if len(digests) != 1 or not all(c.save for c in candidates):
        return None
    digest = digests.pop()
    return f'"{digest}"' if digest else None


def make(result: ServeRemote, received_at: float | None = None, hook_request: Any = None
         ) -> RemotePlan:
    candidates = _candidates(result)
    ca = result.content_artifact
    first = candidates[0].remote_artifact if candidates else None
    # Saved content artifacts are fetched once per artifact; new pull-through content
    # once per remote and URL.
    if ca._state.adding and first is not None:
        key = f"url:{first.remote.pk}:{first.url}"
    else:
        key = f"ca:{ca.pk}"
    sizes = [c.remote_artifact.size for c in candidates if c.remote_artifact.size]
    url = result.remote_artifact.url if result.remote_artifact is not None else None
    return RemotePlan(key=key, candidates=candidates, headers=dict(result.headers),
                      relative_path=ca.relative_path, size=sizes[0] if sizes else None,
                      repository=result.repository, pull_through_url=url,
                      resolved_at=received_at if received_at is not None else time.time(),
                      hook_request=hook_request, etag=_etag(candidates),
                      last_modified=result.last_modified)
