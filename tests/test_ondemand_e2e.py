"""On-demand and streamed content from real upstream servers on loopback."""

from __future__ import annotations

import asyncio
import glob
import gzip
import hashlib
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings
from pulp_file.app.models import FileRemote
from pulpcore.app.models import ContentArtifact, RemoteArtifact

from pulp_content_asgi.devtools import data
from tests.helpers import (
    DEADLINE,
    content_app,
    content_artifact,
    metered_env,
    on_demand,
    per_worker,
    scrape,
    stop_server,
    unique_name,
    url,
    value,
    wait_for,
)
from tests.upstream import Behaviour

DOWNLOADS = "pulp_content_ondemand_downloads"
JOINED = "pulp_content_ondemand_collapsed_requests_total"


def test_on_demand_streams_then_saves_then_serves_from_storage(any_server, upstream):
    blob = os.urandom(3 * 1024 * 1024 + 17)
    distribution, prefix, repo = on_demand(upstream, {"a.bin": blob})
    response = httpx.get(url(any_server, distribution, "a.bin"), timeout=30)
    assert response.status_code == 200
    assert response.content == blob
    assert "content-length" not in response.headers  # HTTP/1.1: a cut shows in the chunking
    assert response.headers["x-pulp-artifact-size"] == str(len(blob))
    assert response.headers["content-type"] == "application/octet-stream"
    assert wait_for(lambda: content_artifact(repo, "a.bin").artifact_id is not None)
    artifact = content_artifact(repo, "a.bin").artifact
    assert artifact.sha256 == hashlib.sha256(blob).hexdigest()
    with open(artifact.file.path, "rb") as stored:
        assert stored.read() == blob
    again = httpx.get(url(any_server, distribution, "a.bin"))
    assert again.content == blob
    assert again.headers["content-length"] == str(len(blob))
    assert again.headers["etag"] == f'"{artifact.sha256}"'
    assert upstream.hits[prefix + "a.bin"] == 1


def test_streamed_policy_saves_nothing(metered_server, upstream):
    blob = os.urandom(200_000)
    distribution, prefix, repo = on_demand(upstream, {"s.bin": blob}, policy="streamed")
    for _ in range(2):
        response = httpx.get(url(metered_server, distribution, "s.bin"), timeout=60)
        assert response.status_code == 200 and response.content == blob
    assert upstream.hits[prefix + "s.bin"] == 2
    # A save happens inside the download; once no download is in flight, none can come.
    assert wait_for(lambda: value(scrape(metered_server), DOWNLOADS) == 0)
    assert content_artifact(repo, "s.bin").artifact_id is None


#: What an upstream (a CDN, an S3 bucket) adds that says nothing about the content.
UPSTREAM_HEADERS = {"Set-Cookie": "session=upstream-secret", "Server": "upstream/1.0",
                    "ETag": '"upstream-etag"', "Last-Modified": "Mon, 01 Jan 2001 00:00:00 GMT",
                    "X-Amz-Request-Id": "abc", "Via": "1.1 cdn", "Age": "100",
                    "Cache-Control": "public, max-age=31536000", "Content-Language": "de",
                    "Content-Disposition": "attachment; filename=upstream.bin"}
#: What a response says about the content: the same before and after the save.
DESCRIBED = ("content-type", "etag", "last-modified", "cache-control", "x-pulp-artifact-size")


def test_a_response_describes_the_content_not_the_upstream(any_server, upstream):
    """pulpcore-content forwards the upstream's headers: its cookie, server, ETag and type,
    and the ETag and type change once the file is stored (x.xml.gz: octet-stream first,
    application/gzip after). Ours are the stored file's from the first byte."""
    # Unique bytes: content is unique by path and digest, and a unit saved by an earlier
    # run of this test would be served from storage.
    blob = gzip.compress(f"<metadata id='{unique_name()}'/>".encode() * 1000)
    distribution, prefix, repo = on_demand(upstream, {"x.xml.gz": blob})
    upstream.behaviour[prefix + "x.xml.gz"] = Behaviour(
        content_type="application/octet-stream", headers=UPSTREAM_HEADERS)
    first = httpx.get(url(any_server, distribution, "x.xml.gz"), timeout=60)
    assert first.status_code == 200 and first.content == blob
    assert "content-length" not in first.headers  # a live download, not storage
    assert wait_for(lambda: content_artifact(repo, "x.xml.gz").artifact_id is not None)
    stored = httpx.get(url(any_server, distribution, "x.xml.gz"), timeout=60)
    assert "content-length" in stored.headers  # served from storage now
    for name in DESCRIBED:
        assert first.headers.get(name) == stored.headers.get(name), name
    assert first.headers["content-type"] == "application/gzip"  # pulpcore's mime map
    assert first.headers["etag"] == f'"{hashlib.sha256(blob).hexdigest()}"'
    assert first.headers["cache-control"] == "public, max-age=0, must-revalidate"
    for name in ("set-cookie", "x-amz-request-id", "via", "age", "content-language",
                 "content-disposition"):
        assert name not in first.headers, name
    assert first.headers.get("server") != "upstream/1.0"
    assert "upstream" not in first.headers.get("last-modified", "")


def test_a_streamed_response_claims_no_digest_it_does_not_check(server, upstream):
    """Streamed downloads are never verified, so they carry no ETag from the digest; the
    type and Last-Modified are the repository's, the same on every request."""
    blob = unique_name().encode() * 10
    distribution, prefix, _ = on_demand(upstream, {"s.xml.gz": blob}, policy="streamed")
    upstream.behaviour[prefix + "s.xml.gz"] = Behaviour(headers=UPSTREAM_HEADERS)
    answers = [httpx.get(url(server, distribution, "s.xml.gz"), timeout=60)
               for _ in range(2)]
    assert [r.content for r in answers] == [blob] * 2
    assert upstream.hits[prefix + "s.xml.gz"] == 2
    assert "etag" not in answers[0].headers and "set-cookie" not in answers[0].headers
    assert answers[0].headers["content-type"] == "application/gzip"
    assert answers[0].headers["last-modified"] == answers[1].headers["last-modified"]
    assert answers[0].headers["last-modified"] != UPSTREAM_HEADERS["Last-Modified"]


@pytest.mark.adversarial  # issue #17: upstream faults, with test_upstream_faults_e2e.py
@pytest.mark.parametrize("policy", ["on_demand", "streamed"])
def test_an_upstream_gzip_coding_is_kept_as_the_files_bytes(any_server, upstream, policy):
    """A ``.gz`` whose upstream labels it ``Content-Encoding: gzip`` (misconfigured S3 or
    CDN origins send ``Packages.gz`` so): its digest is of the gzip bytes, so those are
    fetched (``Accept-Encoding: identity``, nothing inflated), stored and served, without
    a Content-Encoding that would make clients inflate it. pulpcore-content inflated it,
    failed the digest and answered 404 for the whole failure cool-down."""
    blob = gzip.compress(f"Package: pulp-{unique_name()}\n".encode() * 20_000)
    distribution, prefix, repo = on_demand(upstream, {"Packages.gz": blob}, policy=policy)
    upstream.behaviour[prefix + "Packages.gz"] = Behaviour(
        headers={"Content-Encoding": "gzip"}, content_type="text/plain")
    for _ in range(2):
        response = httpx.get(url(any_server, distribution, "Packages.gz"), timeout=60)
        assert response.status_code == 200
        assert "content-encoding" not in response.headers
        assert response.content == blob  # httpx would have inflated a coded body
        assert response.headers["content-type"] == "application/gzip"
        assert response.headers["x-pulp-artifact-size"] == str(len(blob))
        if policy == "on_demand":
            assert wait_for(lambda: content_artifact(repo, "Packages.gz").artifact_id)
    # The length a client is told is the artifact's: stored (on_demand, the second answer
    # above) or streamed afresh to an HTTP/1.0 client, which is given a Content-Length.
    if policy == "on_demand":
        assert response.headers["content-length"] == str(len(blob))
    ten = subprocess.run(["curl", "-sS", "-0", "-D", "-", "-o", "-",
                          url(any_server, distribution, "Packages.gz")],
                         capture_output=True, timeout=60)
    head, _, body = ten.stdout.partition(b"\r\n\r\n")
    assert ten.returncode == 0 and body == blob, ten.stderr
    assert f"content-length: {len(blob)}".encode() in head.lower()
    assert b"content-encoding" not in head.lower()
    assert upstream.asked[prefix + "Packages.gz"].get("Accept-Encoding") == "identity"
    if policy == "on_demand":
        artifact = content_artifact(repo, "Packages.gz").artifact
        assert artifact.sha256 == hashlib.sha256(blob).hexdigest()
        with open(artifact.file.path, "rb") as stored:
            assert stored.read() == blob
        assert upstream.hits[prefix + "Packages.gz"] == 1  # curl's answer came from storage
        assert RemoteArtifact.objects.get(url=upstream.url(prefix + "Packages.gz")
                                          ).failed_at is None
    else:
        assert upstream.hits[prefix + "Packages.gz"] == 3


def test_range_is_served_and_the_artifact_still_saved(any_server, upstream):
    blob = os.urandom(1_000_000)
    distribution, _, repo = on_demand(upstream, {"r.bin": blob})
    response = httpx.get(url(any_server, distribution, "r.bin"),
                         headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert response.content == blob[1000:2000]
    assert response.headers["content-range"] == f"bytes 1000-1999/{len(blob)}"
    assert response.headers["content-length"] == "1000"
    assert wait_for(lambda: content_artifact(repo, "r.bin").artifact_id is not None)


def test_range_beyond_known_size_is_416(server, upstream):
    distribution, prefix, _ = on_demand(upstream, {"r.bin": b"12345"})
    response = httpx.get(url(server, distribution, "r.bin"), headers={"Range": "bytes=10-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */5"
    assert upstream.hits[prefix + "r.bin"] == 0


@pytest.mark.parametrize(("headers", "status"), [
    ({"If-None-Match": "{etag}", "Range": "bytes=10-"}, 304),
    ({"If-Match": '"other"', "Range": "bytes=10-"}, 412),
])
def test_preconditions_come_before_an_unsatisfiable_range(server, upstream, headers, status):
    """RFC 9110 §13.2.2 on a download not stored yet, as on a stored file: a 304 or 412
    outranks the 416 a known size would give. The ETag is the stored file's."""
    blob = os.urandom(5)
    distribution, prefix, _ = on_demand(upstream, {"v.bin": blob})
    upstream.behaviour[prefix + "v.bin"] = Behaviour(headers={"ETag": '"up-1"'})
    etag = f'"{hashlib.sha256(blob).hexdigest()}"'
    asked = {k: v.replace("{etag}", etag) for k, v in headers.items()}
    response = httpx.get(url(server, distribution, "v.bin"), headers=asked)
    assert response.status_code == status
    assert upstream.hits[prefix + "v.bin"] == 1  # answered from the download's validators


def test_a_stopping_worker_leaves_no_spool_behind(upstream):
    """Spools go with their worker: one that stops while a download runs (its client
    left; the upstream is held) cancels it at shutdown, saves nothing and removes the spool
    and its sidecar."""
    from pulp_content_asgi.ondemand.coordination import spool_path

    blob = os.urandom(300_000)
    distribution, prefix, repo = on_demand(upstream, {"s.bin": blob})
    held = threading.Event()
    upstream.behaviour[prefix + "s.bin"] = Behaviour(gate=held, gate_after=65536)
    spool = spool_path(f"ca:{content_artifact(repo, 's.bin').pk}")
    running = content_app("granian")
    try:
        with httpx.stream("GET", url(running, distribution, "s.bin"), timeout=60) as response:
            assert response.status_code == 200  # then the client leaves
        assert wait_for(lambda: os.path.exists(spool) and os.path.exists(f"{spool}.json"))
    finally:
        assert stop_server(running) == 0
        held.set()
    assert not os.path.exists(spool) and not os.path.exists(f"{spool}.json")
    assert content_artifact(repo, "s.bin").artifact_id is None


def test_head_sends_headers_and_the_download_is_saved(server, upstream):
    blob = os.urandom(500_000)
    distribution, _, repo = on_demand(upstream, {"h.bin": blob})
    response = httpx.head(url(server, distribution, "h.bin"))
    assert response.status_code == 200 and response.content == b""
    assert response.headers["x-pulp-artifact-size"] == str(len(blob))
    assert wait_for(lambda: content_artifact(repo, "h.bin").artifact_id is not None)


def test_failing_remote_falls_back_to_the_next_one(server, upstream, backup_upstream):
    blob = os.urandom(100_000)
    distribution, prefix, _ = on_demand(upstream, {"f.bin": blob},
                                        extra_remote=backup_upstream)
    upstream.behaviour[prefix + "f.bin"] = Behaviour(status=503)
    # pulpcore's downloader retries 5xx with backoff before the next remote is tried.
    response = httpx.get(url(server, distribution, "f.bin"), timeout=60)
    assert response.status_code == 200 and response.content == blob
    assert backup_upstream.hits[prefix + "f.bin"] == 1


def test_all_remotes_failing_is_404(server, upstream):
    distribution, prefix, _ = on_demand(upstream, {"gone.bin": b"x"})
    upstream.behaviour[prefix + "gone.bin"] = Behaviour(status=404)
    assert httpx.get(url(server, distribution, "gone.bin"), timeout=30).status_code == 404


def test_corrupt_upstream_truncates_marks_failed_and_saves_nothing(
        server, upstream, backup_upstream):
    blob = os.urandom(2 * 1024 * 1024)
    distribution, prefix, repo = on_demand(upstream, {"bad.bin": blob},
                                           extra_remote=backup_upstream)
    bad = RemoteArtifact.objects.get(url=upstream.url(prefix + "bad.bin"))
    # Make the corrupt remote the first choice (ACS remotes come first; this one is older).
    RemoteArtifact.objects.filter(url=backup_upstream.url(prefix + "bad.bin")).update(
        failed_at=None)
    upstream.behaviour[prefix + "bad.bin"] = Behaviour(corrupt=True)
    backup_upstream.behaviour[prefix + "bad.bin"] = Behaviour(status=500)
    before = set(glob.glob(os.path.join(settings.WORKING_DIRECTORY, "*")))
    run = subprocess.run(["curl", "-s", "-o", "/dev/null", url(server, distribution, "bad.bin")],
                         timeout=60)
    assert run.returncode == 18  # "transfer closed with outstanding read data remaining"
    bad.refresh_from_db()
    assert bad.failed_at is not None
    assert content_artifact(repo, "bad.bin").artifact_id is None
    # The next request skips the corrupt remote (cooldown) and uses the repaired backup.
    backup_upstream.behaviour.pop(prefix + "bad.bin")
    assert httpx.get(url(server, distribution, "bad.bin")).content == blob
    assert upstream.hits[prefix + "bad.bin"] == 1
    assert wait_for(lambda: not (set(glob.glob(os.path.join(
        settings.WORKING_DIRECTORY, "*"))) - before - {content_artifact(repo, "bad.bin")
                                                      .artifact.file.path}), timeout=15)


def test_a_small_corrupt_file_never_reaches_the_client(server, upstream, tmp_path):
    """pulpcore's test_remote_content_changed_with_on_demand: curl gets headers, then a cut
    (exit 18), and no byte of the unverified file, so it writes no output file."""
    blob = os.urandom(1024)
    distribution, prefix, repo = on_demand(upstream, {"small.iso": blob})
    upstream.behaviour[prefix + "small.iso"] = Behaviour(corrupt=True)
    output = tmp_path / "out.iso"
    run = subprocess.run(["curl", "-sS", "-o", str(output), url(server, distribution,
                                                                 "small.iso")],
                         capture_output=True, timeout=60)
    assert run.returncode == 18, run.stderr
    assert b"transfer closed with outstanding read data remaining" in run.stderr
    assert not output.exists()
    assert content_artifact(repo, "small.iso").artifact_id is None
    again = httpx.get(url(server, distribution, "small.iso"), timeout=30)
    assert again.status_code == 404  # the only remote is in its failure cooldown


def test_http10_clients_get_a_length_so_a_cut_shows(server, upstream):
    """HTTP/1.0 (nginx's default upstream protocol) has no chunking: without a declared
    length a cut stream would look complete to the proxy."""
    blob = os.urandom(600_000)
    distribution, prefix, _ = on_demand(upstream, {"ten.bin": blob, "bad.bin": blob})
    good = subprocess.run(["curl", "-sS", "-0", "-D", "-", "-o", "/dev/null",
                           url(server, distribution, "ten.bin")],
                          capture_output=True, timeout=60)
    assert good.returncode == 0
    assert f"content-length: {len(blob)}".encode() in good.stdout.lower()
    upstream.behaviour[prefix + "bad.bin"] = Behaviour(corrupt=True)
    cut = subprocess.run(["curl", "-sS", "-0", "-o", "/dev/null",
                          url(server, distribution, "bad.bin")],
                         capture_output=True, timeout=60)
    assert cut.returncode == 18, cut.stderr


def test_content_reclaimed_right_after_a_download_is_downloaded_again(server, upstream):
    """A download saved moments ago must not answer for an artifact reclaimed since."""
    blob = os.urandom(100_000)
    distribution, prefix, repo = on_demand(upstream, {"r.bin": blob})
    assert httpx.get(url(server, distribution, "r.bin"), timeout=30).content == blob
    assert wait_for(lambda: content_artifact(repo, "r.bin").artifact_id is not None)
    # What pulpcore's reclaim task does to the artifact (it needs a task to run itself).
    stored = content_artifact(repo, "r.bin")
    artifact = stored.artifact
    ContentArtifact.objects.filter(pk=stored.pk).update(artifact=None)
    artifact.delete()
    assert content_artifact(repo, "r.bin").artifact_id is None
    assert httpx.get(url(server, distribution, "r.bin"), timeout=30).content == blob
    assert upstream.hits[prefix + "r.bin"] == 2
    assert wait_for(lambda: content_artifact(repo, "r.bin").artifact_id is not None)


def test_concurrent_clients_share_one_upstream_download(any_server, upstream):
    blob = os.urandom(50 * 1024 * 1024)
    distribution, prefix, repo = on_demand(upstream, {"big.bin": blob})
    upstream.behaviour[prefix + "big.bin"] = Behaviour(chunk_delay=0.002)
    target = url(any_server, distribution, "big.bin")
    expected = hashlib.sha256(blob).hexdigest()

    async def fetch(client: httpx.AsyncClient) -> str:
        digest = hashlib.sha256()
        async with client.stream("GET", target, timeout=120) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                digest.update(chunk)
        return digest.hexdigest()

    async def main() -> list[str]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=60)) as client:
            return await asyncio.gather(*(fetch(client) for _ in range(50)))

    assert asyncio.run(main()) == [expected] * 50
    assert upstream.hits[prefix + "big.bin"] == 1
    assert wait_for(lambda: content_artifact(repo, "big.bin").artifact_id is not None)


def test_client_disconnect_does_not_stop_the_save(server, upstream):
    blob = os.urandom(8 * 1024 * 1024)
    distribution, prefix, repo = on_demand(upstream, {"d.bin": blob})
    upstream.behaviour[prefix + "d.bin"] = Behaviour(chunk_delay=0.01)
    with httpx.stream("GET", url(server, distribution, "d.bin")) as response:
        next(response.iter_raw(65536))  # one chunk, then hang up
    assert wait_for(lambda: content_artifact(repo, "d.bin").artifact_id is not None, 60)
    assert ContentArtifact.objects.filter(relative_path="d.bin", artifact__isnull=False,
                                          pk=content_artifact(repo, "d.bin").pk).count() == 1
    assert upstream.hits[prefix + "d.bin"] == 1


def test_file_remote(server, tmp_path, unique):
    blob = os.urandom(123_456)
    (tmp_path / "local.bin").write_bytes(blob)
    u = unique
    remote = FileRemote.objects.create(name=f"file-{u}", url=f"file://{tmp_path}/",
                                       policy="on_demand")
    repo = data.repository(f"fileremote-{u}", {
        "local.bin": data.OnDemand(f"file://{tmp_path}/local.bin", blob)}, remote=remote)
    distribution = data.distribute(f"fileremote-{u}",
                                   publication=data.publish(repo.latest_version()))
    response = httpx.get(url(server, distribution, "local.bin"))
    assert response.status_code == 200 and response.content == blob
    assert wait_for(lambda: content_artifact(repo, "local.bin").artifact_id is not None)


def test_listing_shows_remote_sizes(server, upstream):
    distribution, _, _ = on_demand(upstream, {"sized.bin": b"x" * 4200})
    page = httpx.get(url(server, distribution, "")).text
    assert "sized.bin" in page and "4.2 kB" in page


def test_two_workers_download_once(upstream, tmp_path):
    """Requests for one on-demand file reach both workers while its download is held
    upstream: one worker leads it, the other's requests follow it across processes,
    and upstream is asked once."""
    blob = os.urandom(4 * 1024 * 1024)
    distribution, prefix, _ = on_demand(upstream, {"w.bin": blob})
    gate = threading.Event()
    upstream.behaviour[prefix + "w.bin"] = Behaviour(gate=gate)
    shared = str(tmp_path / "prometheus")
    running = content_app("uvicorn", workers=2, env=metered_env(shared))
    target = url(running, distribution, "w.bin")

    def fetch() -> tuple[int, bytes]:
        response = httpx.get(target, timeout=120)  # a connection of its own
        return response.status_code, hashlib.sha256(response.content).digest()

    def both_workers_in() -> bool:
        """One worker leads the download and another worker has a request following it."""
        workers = per_worker(shared)
        leaders = {pid for pid, found in workers.items() if value(found, DOWNLOADS) > 0}
        return bool(leaders) and any(value(found, JOINED) > 0
                                     for pid, found in workers.items() if pid not in leaders)

    try:
        with ThreadPoolExecutor(64) as pool:
            pending = [pool.submit(fetch)]
            deadline = time.monotonic() + DEADLINE
            while not both_workers_in() and time.monotonic() < deadline and len(pending) < 64:
                pending.append(pool.submit(fetch))  # until the kernel gave one to each
                time.sleep(0.05)
            in_both = both_workers_in()
            gate.set()
            results = [p.result(timeout=120) for p in pending]
    finally:
        gate.set()
        stop_server(running)
    assert in_both, per_worker(shared)
    assert results == [(200, hashlib.sha256(blob).digest())] * len(results)
    assert upstream.hits[prefix + "w.bin"] == 1
