"""pulp_container's blob route (the built-in port, a Django live route) on a real server,
compared with pulpcore-content serving the same rows.

Image pulls fetch every layer from ``/pulp/container/<base_path>/blobs/sha256:<hex>``
after the registry API's redirect; a wrong answer here breaks every pull.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest
from django.utils.http import http_date

from tests.helpers import BIN, start_server, stop_server

EMPTY = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"


def blob_digest(blob: bytes) -> str:
    return f"sha256:{hashlib.sha256(blob).hexdigest()}"


def _blob(data: bytes, remote=None, upstream_url: str | None = None):
    """A Blob content unit whose artifact is stored, or (with a remote) only upstream."""
    from pulp_container.app.models import Blob
    from pulpcore.app.models import ContentArtifact, RemoteArtifact

    from pulp_content_asgi.devtools import data as devdata

    digest = blob_digest(data)
    blob = Blob.objects.create(digest=digest)
    if remote is None:
        ContentArtifact.objects.create(content=blob, relative_path=digest,
                                       artifact=devdata.artifact_from_bytes(data))
    else:
        ca = ContentArtifact.objects.create(content=blob, relative_path=digest, artifact=None)
        RemoteArtifact.objects.create(content_artifact=ca, remote=remote, url=upstream_url,
                                      size=len(data), sha256=hashlib.sha256(data).hexdigest())
    return blob


class Registry:
    """A container repository with stored, on-demand and pending blobs, distributed."""

    def __init__(self, upstream, unique: str, guarded: bool = False) -> None:
        from pulp_container.app.models import (
            ContainerDistribution,
            ContainerRemote,
            ContainerRepository,
        )
        from pulpcore.app.models import Content, ContentRedirectContentGuard

        self.stored = os.urandom(300_000)
        self.remote_only = os.urandom(200_000)
        self.pending = os.urandom(1000)
        remote = ContainerRemote.objects.create(name=f"r-{unique}", url=upstream.url(""),
                                                upstream_name="library/x", policy="on_demand")
        upstream.files[f"{unique}/layer"] = self.remote_only
        blobs = [_blob(self.stored), _blob(self.remote_only, remote,
                                            upstream.url(f"{unique}/layer"))]
        self.repository = ContainerRepository.objects.create(name=f"c-{unique}")
        with self.repository.new_version() as version:
            version.add_content(Content.objects.filter(pk__in=[b.pk for b in blobs]))
        self.repository.pending_blobs.add(_blob(self.pending))
        guard = (ContentRedirectContentGuard.objects.create(name=f"g-{unique}")
                 if guarded else None)
        self.guard = guard
        self.distribution = ContainerDistribution.objects.create(
            name=f"c-{unique}", base_path=f"ns-{unique}/image", repository=self.repository,
            content_guard=guard)

    def path(self, digest: str) -> str:
        return f"/pulp/container/{self.distribution.base_path}/blobs/{digest}"

    def joined(self, digest: str) -> datetime.datetime:
        """When the blob joined the repository's latest version; a pending blob, when it
        was created (the blob's Last-Modified)."""
        from pulp_container.app.models import Blob
        from pulpcore.app.models import RepositoryContent

        blob = Blob.objects.get(digest=digest)
        added = RepositoryContent.objects.filter(repository=self.repository,
                                                 content=blob).first()
        return added.pulp_created if added is not None else blob.pulp_created


@pytest.fixture(scope="module")
def legacy() -> Iterator[object]:
    """pulpcore-content with pulp_container's aiohttp route, on the same database."""
    argv = [os.path.join(BIN, "pulpcore-content"), "--bind", "127.0.0.1:{port}",
            "--workers", "1"]
    started = start_server(argv)
    yield started
    stop_server(started)


def _fetch(server, path: str, method: str = "GET", **headers: str) -> httpx.Response:
    return httpx.request(method, server.url(path), headers=headers, timeout=60)


def _same(ours: httpx.Response, theirs: httpx.Response) -> None:
    assert ours.status_code == theirs.status_code
    assert ours.content == theirs.content
    for name in ("content-type", "docker-content-digest", "docker-distribution-api-version",
                 "content-length", "content-range"):
        assert ours.headers.get(name) == theirs.headers.get(name), name


def test_stored_pending_and_empty_blobs_match_pulpcore_content(server, legacy, upstream,
                                                               unique):
    registry = Registry(upstream, unique)
    cases = [(registry.stored, blob_digest(registry.stored)),
             (registry.pending, blob_digest(registry.pending)),
             (None, EMPTY)]
    for data, digest in cases:
        ours = _fetch(server, registry.path(digest))
        theirs = _fetch(legacy, registry.path(digest))
        assert ours.status_code == 200, ours.text
        assert ours.headers["docker-content-digest"] == digest
        assert ours.headers["docker-distribution-api-version"] == "registry/2.0"
        assert ours.headers["content-type"] == "application/octet-stream"
        assert blob_digest(ours.content) == digest
        if data is not None:
            assert ours.content == data
        _same(ours, theirs)
        if data is not None:  # a stored file's validators (docs/differences.md, blobs)
            assert ours.headers["etag"] == f'"{digest.removeprefix("sha256:")}"'
            assert ours.headers["last-modified"] == http_date(
                registry.joined(digest).timestamp())
            assert ours.headers["accept-ranges"] == theirs.headers["accept-ranges"] == "bytes"
        head = _fetch(server, registry.path(digest), "HEAD")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == ours.headers["content-length"]
        assert head.headers["docker-content-digest"] == digest
        for name in ("etag", "last-modified", "accept-ranges"):
            assert head.headers.get(name) == ours.headers.get(name), name


def test_ranges_on_a_stored_blob(server, legacy, upstream, unique):
    registry = Registry(upstream, unique)
    path = registry.path(blob_digest(registry.stored))
    ours = _fetch(server, path, Range="bytes=100-199")
    assert ours.status_code == 206 and ours.content == registry.stored[100:200]
    assert ours.headers["content-range"] == f"bytes 100-199/{len(registry.stored)}"
    _same(ours, _fetch(legacy, path, Range="bytes=100-199"))


def test_an_on_demand_blob_is_downloaded_verified_and_saved(server, legacy, upstream,
                                                             unique):
    from pulpcore.app.models import ContentArtifact

    registry = Registry(upstream, unique)
    digest = blob_digest(registry.remote_only)
    first = _fetch(server, registry.path(digest))
    assert first.status_code == 200 and first.content == registry.remote_only
    assert first.headers["docker-content-digest"] == digest
    # The same validators before and after the save (#16 item 4).
    assert first.headers.get("last-modified") and first.headers.get("etag")
    saved = ContentArtifact.objects.get(relative_path=digest,
                                        content__in=registry.repository.latest_version().content)
    assert saved.artifact is not None and saved.artifact.sha256 == digest.split(":")[1]
    requests_before = upstream.hits[f"{unique}/layer"]
    again = _fetch(server, registry.path(digest))
    assert again.content == registry.remote_only
    assert upstream.hits[f"{unique}/layer"] == requests_before  # served from storage
    for name in ("last-modified", "etag", "content-type"):
        assert again.headers.get(name) == first.headers.get(name), name
    _same(again, _fetch(legacy, registry.path(digest)))


def test_unknown_blob_path_and_repository_answer_404_like_pulpcore_content(
        server, legacy, upstream, unique):
    registry = Registry(upstream, unique)
    missing = blob_digest(b"not here")
    paths = [registry.path(missing),
             f"/pulp/container/ns-{unique}/other/blobs/{blob_digest(registry.stored)}"]
    for path in paths:
        ours, theirs = _fetch(server, path), _fetch(legacy, path)
        assert ours.status_code == theirs.status_code == 404, path
    # A prefix of a base path is no distribution: 404. pulpcore-content redirects such a
    # blob URL to the content listing of that prefix (docs/differences.md).
    prefix = f"/pulp/container/ns-{unique}/blobs/{blob_digest(registry.stored)}"
    assert _fetch(server, prefix).status_code == 404
    theirs = _fetch(legacy, prefix)
    assert theirs.status_code == 301
    assert theirs.headers["location"] == f"/pulp/content/ns-{unique}"


def test_slashes_in_the_base_path_answer_like_pulpcore_content(server, legacy, upstream,
                                                               unique):
    """Doubled, leading and percent-encoded slashes around the base path: the same status as
    pulp_container's aiohttp route (its lookup is ``base_path=path``, exactly)."""
    registry = Registry(upstream, unique)
    digest = blob_digest(registry.stored)
    variants = [f"/pulp/container//ns-{unique}/image/blobs/{digest}",
                f"/pulp/container/ns-{unique}//image/blobs/{digest}",
                f"/pulp/container/ns-{unique}/image//blobs/{digest}",
                f"/pulp/container/%2Fns-{unique}/image/blobs/{digest}",
                f"/pulp/container/ns-{unique}%2Fimage/blobs/{digest}"]
    seen = []
    for path in variants:
        ours, theirs = _fetch(server, path), _fetch(legacy, path)
        seen.append((path, ours.status_code, theirs.status_code))
        if theirs.status_code == 200:
            _same(ours, theirs)
    assert [s for s in seen if s[1] != s[2]] == [], seen


def test_a_redirect_guard_needs_the_api_signature(server, legacy, upstream, unique):
    """The registry API signs the redirect (ContentRedirectContentGuard): without the
    signature 403, with it the blob."""
    registry = Registry(upstream, unique, guarded=True)
    path = registry.path(blob_digest(registry.stored))
    refused = _fetch(server, path)
    assert refused.status_code == 403 == _fetch(legacy, path).status_code
    signed = registry.guard.preauthenticate_url(server.url(path))
    allowed = httpx.get(signed, timeout=60)
    assert allowed.status_code == 200 and allowed.content == registry.stored
    assert allowed.headers["docker-content-digest"] == blob_digest(registry.stored)


def test_other_methods_are_refused(server, upstream, unique):
    registry = Registry(upstream, unique)
    answer = _fetch(server, registry.path(blob_digest(registry.stored)), "POST")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD"


def test_plugins_command_names_the_port(server):
    import subprocess

    found = subprocess.run([os.path.join(BIN, "pulp-content-asgi"), "plugins"],
                           capture_output=True, text=True, check=False)
    lines = {line.split()[0]: line for line in found.stdout.splitlines()}
    assert "built-in handler" in lines["container"]
    assert "pulp_content_asgi.builtin.container" in lines["container"]


def test_blobs_in_domains(domain_server, upstream, unique):
    """DOMAIN_ENABLED: `/pulp/container/<domain>/<base_path>/blobs/…` finds the blob of
    that domain's distribution, and no other domain's."""
    from pulpcore.app.models import Domain
    from pulpcore.app.util import set_domain

    from pulp_content_asgi.devtools import data

    default = Domain.objects.get(name="default")
    other = data.filesystem_domain(f"cdom-{unique}")
    set_domain(other)
    try:
        inside = Registry(upstream, unique)
    finally:
        set_domain(default)
    digest = blob_digest(inside.stored)
    base = inside.distribution.base_path
    found = httpx.get(domain_server.url(f"/pulp/container/{other.name}/{base}/blobs/{digest}"))
    assert found.status_code == 200 and found.content == inside.stored
    assert found.headers["docker-content-digest"] == digest
    for elsewhere in ("default", f"nodomain-{unique}"):
        missing = httpx.get(domain_server.url(f"/pulp/container/{elsewhere}/{base}/blobs/{digest}"))
        assert missing.status_code == 404, elsewhere
