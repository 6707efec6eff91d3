"""Pull-through caching and alternate content sources, through a real server on loopback.

Pull-through needs a remote that names the content type of a path, which plugins
implement; pulp_file's remote does not, so these tests give it one (as a plugin would)
and run the server in this process so the hook applies to it.
"""

from __future__ import annotations

import hashlib
import os
import threading

import httpx
import pytest
from pulp_file.app.models import FileAlternateContentSource, FileContent, FileRemote
from pulpcore.app.models import ContentArtifact, RemoteArtifact

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import free_port
from tests.helpers import content_artifact, on_demand, unique_name, wait_for
from tests.upstream import Behaviour


@pytest.fixture(scope="module")
def local_server():
    """pulp-content-asgi under uvicorn in a thread of the test process."""
    import uvicorn

    from pulp_content_asgi.asgi import application

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port,
                                           lifespan="on", log_level="warning"))
    cwd = os.getcwd()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started, 20)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(20)
    os.chdir(cwd)


@pytest.fixture
def file_plugin_pull_through(monkeypatch):
    """What a plugin supporting pull-through provides."""
    added = []

    def content_type(self, relative_path):
        return None if relative_path.endswith(".meta") else FileContent

    def from_artifact(artifact, relative_path):
        return FileContent(relative_path=relative_path, digest=artifact.sha256)

    async def add_content(self, content_artifact):
        added.append(content_artifact)

    def add_content_sync(self, content_artifact):
        added.append(content_artifact)

    from pulp_file.app.models import FileRepository

    monkeypatch.setattr(FileRemote, "get_remote_artifact_content_type", content_type)
    monkeypatch.setattr(FileContent, "init_from_artifact_and_relative_path",
                        staticmethod(from_artifact), raising=False)
    monkeypatch.setattr(FileRepository, "PULL_THROUGH_SUPPORTED", True)
    monkeypatch.setattr(FileRepository, "async_pull_through_add_content", add_content)
    monkeypatch.setattr(FileRepository, "pull_through_add_content", add_content_sync)
    return added


def pull_through(upstream):
    u = unique_name()
    remote = FileRemote.objects.create(name=f"pt-{u}", url=upstream.url(f"{u}/"),
                                       policy="on_demand")
    repo = data.repository(f"pt-{u}")
    distribution = data.distribute(f"pt-{u}", remote=remote, repository=repo)
    return distribution, f"{u}/", remote, repo


def test_first_request_streams_and_creates_content(local_server, upstream,
                                                   file_plugin_pull_through):
    distribution, prefix, remote, _ = pull_through(upstream)
    blob = os.urandom(700_000)
    upstream.files[prefix + "pkg/new.bin"] = blob
    target = f"{local_server}/pulp/content/{distribution.base_path}/pkg/new.bin"
    response = httpx.get(target)
    assert response.status_code == 200 and response.content == blob
    digest = hashlib.sha256(blob).hexdigest()
    assert wait_for(lambda: RemoteArtifact.objects.filter(
        remote=remote, url=upstream.url(prefix + "pkg/new.bin")).exists())
    saved = ContentArtifact.objects.get(relative_path="pkg/new.bin", artifact__sha256=digest)
    assert FileContent.objects.filter(pk=saved.content_id, digest=digest).exists()
    assert [ca.pk for ca in file_plugin_pull_through] == [saved.pk]
    again = httpx.get(target)
    assert again.content == blob and again.headers["etag"] == f'"{digest}"'
    # Known content is offered to the repository again, as pulpcore does.
    assert [ca.pk for ca in file_plugin_pull_through] == [saved.pk, saved.pk]
    assert upstream.hits[prefix + "pkg/new.bin"] == 1


def test_metadata_without_a_content_type_is_streamed_every_time(local_server, upstream,
                                                                  file_plugin_pull_through):
    distribution, prefix, remote, _ = pull_through(upstream)
    upstream.files[prefix + "index.meta"] = b"fresh metadata"
    target = f"{local_server}/pulp/content/{distribution.base_path}/index.meta"
    from pulp_content_asgi.ondemand.inflight import inflight

    for _ in range(2):
        response = httpx.get(target)
        assert response.status_code == 200 and response.content == b"fresh metadata"
        # The server runs in this process: wait until its download has finished and is
        # no longer listed (a streamed one is never joined once finished).
        assert wait_for(lambda: len(inflight) == 0)
    assert upstream.hits[prefix + "index.meta"] == 2
    assert not RemoteArtifact.objects.filter(remote=remote).exists()


@pytest.mark.parametrize("status", [404, 502])
def test_upstream_errors_keep_their_status_and_name_the_url(local_server, upstream,
                                                            file_plugin_pull_through, status):
    distribution, prefix, _, _ = pull_through(upstream)
    upstream.behaviour[prefix + "missing.bin"] = Behaviour(status=status)
    # 5xx answers are retried with backoff by pulpcore's downloader first.
    response = httpx.get(f"{local_server}/pulp/content/{distribution.base_path}/missing.bin",
                         timeout=60)
    assert response.status_code == status
    assert f"Error while fetching from upstream remote({upstream.url(prefix)}missing.bin)" \
        in response.text


def test_alternate_content_sources_are_preferred(local_server, upstream, backup_upstream):
    acs_upstream = backup_upstream
    blob = os.urandom(50_000)
    distribution, prefix, repo = on_demand(upstream, {"acs.bin": blob},
                                           extra_remote=acs_upstream)
    acs_remote = RemoteArtifact.objects.get(url=acs_upstream.url(prefix + "acs.bin")).remote
    FileAlternateContentSource.objects.create(name=f"acs-{prefix[:-1]}",
                                              remote=acs_remote)
    target = f"{local_server}/pulp/content/{distribution.base_path}/acs.bin"
    assert httpx.get(target).content == blob
    assert acs_upstream.hits[prefix + "acs.bin"] == 1
    assert upstream.hits[prefix + "acs.bin"] == 0
    assert wait_for(lambda: content_artifact(repo, "acs.bin").artifact_id is not None)


# -- an upstream that misbehaves (issue #17; on_demand and streamed remotes:
#    tests/test_upstream_faults_e2e.py) ---------------------------------------------------

@pytest.fixture(scope="module")
def raw_upstream():
    from tests.upstream import RawUpstream

    server = RawUpstream().start()
    yield server
    server.stop()


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "120"}], ids=["bare", "retry-after"])
def test_an_upstream_429_keeps_its_status_and_retry_after(local_server, raw_upstream,
                                                          file_plugin_pull_through, headers):
    """Retried by the downloader first (``max_retries``), then answered with the
    upstream's status, and its ``Retry-After`` (pulpcore-content drops it)."""
    from tests.upstream import Raw

    distribution, prefix, remote, _ = pull_through(raw_upstream)
    FileRemote.objects.filter(pk=remote.pk).update(max_retries=1)
    raw_upstream.behaviour[prefix + "busy.bin"] = Raw(status=429, headers=headers,
                                                      body=b"slow down")
    response = httpx.get(f"{local_server}/pulp/content/{distribution.base_path}/busy.bin",
                         timeout=60)
    assert response.status_code == 429
    assert response.headers.get("retry-after") == headers.get("Retry-After")
    assert "Error while fetching from upstream remote(" in response.text
    assert raw_upstream.hits[prefix + "busy.bin"] == 2
    assert not RemoteArtifact.objects.filter(remote=remote).exists()


@pytest.mark.parametrize("how", ["reset", "silent"])
def test_a_failing_upstream_creates_no_content(local_server, raw_upstream,
                                               file_plugin_pull_through, how):
    """A reset mid-body cuts the response; silence before the headers (past the remote's
    ``sock_read_timeout``) is a 404, not pulpcore-content's 500. Either way no content,
    no artifact, nothing offered to the repository; once the upstream behaves the next
    request creates the content."""
    from tests.upstream import Raw

    distribution, prefix, remote, _ = pull_through(raw_upstream)
    FileRemote.objects.filter(pk=remote.pk).update(max_retries=1, sock_read_timeout=1.0)
    blob = os.urandom(400_000)
    raw_upstream.files[prefix + "pkg.bin"] = blob
    raw_upstream.behaviour[prefix + "pkg.bin"] = (
        Raw(send=100_000, end="reset") if how == "reset" else Raw(silent=True))
    target = f"{local_server}/pulp/content/{distribution.base_path}/pkg.bin"
    if how == "reset":
        with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", target,
                                                                    timeout=60) as response:
            assert response.status_code == 200
            response.read()
    else:
        assert httpx.get(target, timeout=60).status_code == 404
    assert raw_upstream.hits[prefix + "pkg.bin"] == 2
    digest = hashlib.sha256(blob).hexdigest()
    assert not ContentArtifact.objects.filter(relative_path="pkg.bin",
                                              artifact__sha256=digest).exists()
    assert not RemoteArtifact.objects.filter(remote=remote).exists()
    assert file_plugin_pull_through == []
    raw_upstream.behaviour.pop(prefix + "pkg.bin")
    FileRemote.objects.filter(pk=remote.pk).update(sock_read_timeout=None)
    response = httpx.get(target, timeout=60)
    assert response.status_code == 200 and response.content == blob
    assert wait_for(lambda: ContentArtifact.objects.filter(
        relative_path="pkg.bin", artifact__sha256=digest).exists())
