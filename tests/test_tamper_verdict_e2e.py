"""No response is complete before the verdict (docs/ondemand.md, "What the upstream
declares"): a Range request that ends before the end of the file waits for the digest
check of the whole download, so a tampered upstream reaches its client as a cut ``206``
(found by the #15 review: it was answered as soon as its bytes were in); and an HTTP/1.0
client of a file of unknown size, whose body would end where the connection closes,
waits for the verified download and gets an error instead of a complete-looking cut.
Nothing is saved in either case. Each test asserts what a client gets."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest
from pulpcore.app.models import RemoteArtifact

from tests.helpers import content_artifact, on_demand, wait_for
from tests.test_upstream_declared_e2e import maven, no_artifact, saved_jar
from tests.upstream import Raw


def flipped_early(blob: bytes, at: int = 100) -> bytes:
    data = bytearray(blob)
    data[at] ^= 0xFF
    return bytes(data)


def ranged(url: str, first: int, last: int) -> tuple[int, bytes, dict[str, str]] | None:
    """(status, body, headers) of a complete response, None when the app cut it."""
    try:
        response = httpx.get(url, headers={"Range": f"bytes={first}-{last}"}, timeout=60)
    except httpx.TransportError:
        return None
    return response.status_code, response.content, dict(response.headers)


@pytest.mark.parametrize("size", [100 * 1024, 2 * 1024 * 1024], ids=["small", "big"])
def test_on_demand_range_never_completes_with_bytes_other_than_the_promised(
        server, upstream, size):
    blob = os.urandom(size)
    dist, prefix, repo = on_demand(upstream, {"f.bin": blob})
    upstream.files[prefix + "f.bin"] = flipped_early(blob)  # same size, byte 100 flipped
    got = ranged(server.url(f"/pulp/content/{dist.base_path}/f.bin"), 0, 999)
    ca = content_artifact(repo, "f.bin")
    # The download fails its sha256 check: marked failed, nothing saved (this holds).
    assert wait_for(lambda: RemoteArtifact.objects.get(content_artifact=ca).failed_at)
    assert no_artifact(flipped_early(blob))
    assert got is None, (
        f"complete {got[0]} with tampered bytes, ETag {got[2].get('etag')} "
        f"(promised sha256 {hashlib.sha256(blob).hexdigest()})")


def test_pull_through_range_never_completes_with_bytes_other_than_the_sidecar_declares(
        server, upstream):
    dist, u, jar = maven(upstream)
    blob = os.urandom(100 * 1024)
    upstream.files[f"{u}/{jar}"] = flipped_early(blob)
    upstream.files[f"{u}/{jar}.sha1"] = hashlib.sha1(blob).hexdigest().encode()
    got = ranged(server.url(f"/pulp/content/{dist.base_path}/{jar}"), 0, 999)
    # The whole jar is refused and never saved (this holds).
    whole = ranged(server.url(f"/pulp/content/{dist.base_path}/{jar}"), 0, len(blob) - 1)
    assert whole is None or whole[0] >= 400
    assert not saved_jar(u)
    assert got is None or got[0] >= 400, (
        f"complete {got[0]} with bytes the .sha1 sidecar does not declare")


@pytest.fixture(scope="module")
def raw():
    from tests.upstream import RawUpstream

    server = RawUpstream().start()
    yield server
    server.stop()


@pytest.mark.parametrize("tampered", [True, False], ids=["tampered", "intact"])
def test_an_http10_client_of_an_unknown_size_file_waits_for_the_verdict(server, raw,
                                                                       tmp_path, tampered):
    """A file of unknown size (a chunked upstream without Content-Length) sent to an
    HTTP/1.1 client is chunked, so a refusal is a broken chunked body. An HTTP/1.0
    response has no chunks: without a Content-Length its end is the connection's close,
    and a cut would *be* a complete body (nginx's default ``proxy_http_version 1.0`` makes
    every client behind it such a client). So an HTTP/1.0 client waits for the verified
    download: an intact file comes with its length; a tampered one is a ``502`` that
    says so, and nothing is saved."""
    import subprocess

    dist, u, jar = maven(raw)
    blob = os.urandom(400 * 1024)
    raw.files[f"{u}/{jar}"] = flipped_early(blob, len(blob) // 2) if tampered else blob
    raw.files[f"{u}/{jar}.sha1"] = hashlib.sha1(blob).hexdigest().encode()
    raw.behaviour[f"{u}/{jar}"] = Raw(chunked=True)
    out = tmp_path / "out.jar"
    run = subprocess.run(["curl", "-sS", "--http1.0", "-D", "-", "-o", str(out),
                          "-w", "%{http_code}",
                          server.url(f"/pulp/content/{dist.base_path}/{jar}")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    head, status = run.stdout.rsplit("\n", 1)
    if tampered:
        assert status == "502", (status, out.read_bytes()[:200])
        assert b"failed" in out.read_bytes()
        assert not saved_jar(u)
    else:
        assert status == "200"
        assert f"content-length: {len(blob)}" in head.lower()
        assert out.read_bytes() == blob
        assert wait_for(lambda: saved_jar(u))


@pytest.mark.parametrize("http10", [False, True], ids=["http11", "http10"])
def test_an_empty_body_the_upstream_declares_otherwise_never_completes(server, upstream,
                                                                       tmp_path, http10):
    """The smallest tampering: an upstream that answers a file it declares (the ``.sha1``
    sidecar) with an empty ``200`` (a truncated upload, a broken mirror). The size is not
    recorded (pull-through), so the upstream's ``Content-Length: 0`` is the response's
    length, and "hold the last 256 KiB, or all of a smaller range" holds nothing: the
    client must still not get a complete response of bytes the verdict refuses (review
    #15 of bba490f)."""
    import subprocess

    dist, u, jar = maven(upstream)
    blob = os.urandom(100 * 1024)
    upstream.files[f"{u}/{jar}"] = b""
    upstream.files[f"{u}/{jar}.sha1"] = hashlib.sha1(blob).hexdigest().encode()
    out = tmp_path / "out.jar"
    run = subprocess.run(["curl", "-sS", *(["--http1.0"] if http10 else []),
                          "-o", str(out), "-w", "%{http_code}",
                          server.url(f"/pulp/content/{dist.base_path}/{jar}")],
                         capture_output=True, text=True, timeout=120)
    assert upstream.hits[f"{u}/{jar}"] >= 1
    assert not saved_jar(u)
    complete_200 = run.returncode == 0 and run.stdout == "200"
    assert not complete_200, (
        f"a complete empty 200 (curl exit {run.returncode}, {out.stat().st_size} bytes) "
        "for a file whose .sha1 declares other bytes")


def test_an_http10_client_of_a_known_size_file_sees_the_cut(server, upstream, tmp_path):
    """A known size goes out as ``Content-Length`` to an HTTP/1.0 client, so the held
    tail's cut is visible to it (curl: exit 18, a partial file), not a short body that
    looks complete."""
    import subprocess

    blob = os.urandom(1024 * 1024)
    dist, prefix, repo = on_demand(upstream, {"k.bin": blob})
    upstream.files[prefix + "k.bin"] = flipped_early(blob)
    out = tmp_path / "k.bin"
    run = subprocess.run(["curl", "-sS", "--http1.0", "-D", "-", "-o", str(out),
                          server.url(f"/pulp/content/{dist.base_path}/k.bin")],
                         capture_output=True, text=True, timeout=120)
    assert f"content-length: {len(blob)}" in run.stdout.lower(), run.stdout
    assert run.returncode == 18, (run.returncode, run.stderr)
    assert out.stat().st_size <= len(blob) - 256 * 1024
    ca = content_artifact(repo, "k.bin")
    assert wait_for(lambda: RemoteArtifact.objects.get(content_artifact=ca).failed_at)
    assert no_artifact(flipped_early(blob))


def test_multipart_ranges_of_a_tampered_download_never_complete(server, upstream):
    """Several ranges (``multipart/byteranges``, a declared ``Content-Length``), all
    before the end of a tampered 2 MiB file: each part's bytes wait for the verdict, so
    the response is cut, never complete."""
    blob = os.urandom(2 * 1024 * 1024)
    dist, prefix, repo = on_demand(upstream, {"m.bin": blob})
    upstream.files[prefix + "m.bin"] = flipped_early(blob)
    target = server.url(f"/pulp/content/{dist.base_path}/m.bin")
    try:
        got = httpx.get(target, headers={"Range": "bytes=0-99,1000-1999,5000-5099"},
                        timeout=60)
    except httpx.TransportError:
        got = None
    ca = content_artifact(repo, "m.bin")
    assert wait_for(lambda: RemoteArtifact.objects.get(content_artifact=ca).failed_at)
    assert got is None, (got.status_code, got.headers.get("content-type"))


def test_the_http10_502_says_what_the_next_request_gets(server, raw, tmp_path):
    """The ``502`` an HTTP/1.0 client of a tampered file of unknown size gets (an
    on-demand file whose sync recorded no size: pulp_npm, pulp_gem, pulp_ostree) is read
    by an operator: what it says about retrying must be what happens. The remote
    artifact is cooled down (``REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN``), so the next
    request does not download it again (review #15 of bba490f: the text promised it
    would)."""
    import subprocess

    blob = os.urandom(300 * 1024)
    dist, prefix, repo = on_demand(raw, {"u.bin": blob})
    ca = content_artifact(repo, "u.bin")
    RemoteArtifact.objects.filter(content_artifact=ca).update(size=None)
    raw.files[prefix + "u.bin"] = flipped_early(blob)
    raw.behaviour[prefix + "u.bin"] = Raw(chunked=True)
    target = server.url(f"/pulp/content/{dist.base_path}/u.bin")
    out = tmp_path / "out"
    run = subprocess.run(["curl", "-sS", "--http1.0", "-o", str(out), "-w", "%{http_code}",
                          target], capture_output=True, text=True, timeout=120)
    said = out.read_bytes().decode()
    assert run.stdout == "502", (run.stdout, said)
    assert wait_for(lambda: RemoteArtifact.objects.get(content_artifact=ca).failed_at)
    hits = raw.hits[prefix + "u.bin"]
    again = httpx.get(target, timeout=60)
    downloaded_again = raw.hits[prefix + "u.bin"] > hits
    promised = "the next request downloads it again" in said
    assert promised == downloaded_again, (said, again.status_code, again.text)
    assert prefix not in said and raw.base not in said, f"the upstream URL in: {said}"


@pytest.fixture(scope="module")
def stock_nginx(server):
    """nginx in front of the app as Pulp's own images set it up (conformance/stack.py's
    ``stock`` layout): nothing but ``proxy_pass``, so HTTP/1.0 to the app, buffering on."""
    from pulp_content_asgi.devtools.processes import stop
    from tests.helpers import start_nginx

    backend = server.base.rsplit(":", 1)[1]
    running, port = start_nginx("stock", lambda port: (
        f"server {{ listen 127.0.0.1:{port}; location /pulp/content/ {{ "
        f"proxy_pass http://127.0.0.1:{backend}; }} }}"))
    yield f"http://127.0.0.1:{port}"
    stop(running)


@pytest.mark.parametrize("tampered", [True, False], ids=["tampered", "intact"])
def test_behind_stock_nginx_a_file_of_unknown_size_is_whole_or_an_error(stock_nginx, raw,
                                                                       tampered):
    """Through Pulp's stock nginx layout (HTTP/1.0 to the app) an HTTP/1.1 client of a
    file of unknown size gets the verified file with its length, or the app's ``502``:
    never a body that looks complete (nginx would otherwise end a close-delimited body
    as complete). Nothing tampered is saved."""
    dist, u, jar = maven(raw)
    blob = os.urandom(400 * 1024)
    raw.files[f"{u}/{jar}"] = flipped_early(blob, len(blob) // 2) if tampered else blob
    raw.files[f"{u}/{jar}.sha1"] = hashlib.sha1(blob).hexdigest().encode()
    raw.behaviour[f"{u}/{jar}"] = Raw(chunked=True)
    try:
        got = httpx.get(f"{stock_nginx}/pulp/content/{dist.base_path}/{jar}", timeout=120)
    except httpx.TransportError as cut:
        pytest.fail(f"cut instead of an answer: {cut!r}")
    if tampered:
        assert got.status_code == 502, (got.status_code, got.content[:200])
        assert not saved_jar(u)
    else:
        assert got.status_code == 200 and got.content == blob
        assert got.headers["content-length"] == str(len(blob))
        assert wait_for(lambda: saved_jar(u))
