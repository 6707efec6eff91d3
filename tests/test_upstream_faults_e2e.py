"""An upstream that misbehaves (issue #17, "Upstream misbehaviour"), on_demand and streamed.

A raw-socket upstream on loopback (tests/upstream.py ``RawUpstream``) frames its answers
as told: chunked without a length, a ``Content-Length`` shorter or longer than the body,
redirect chains to "signed" URLs whose query must arrive byte for byte, bytes trickled
one at a time, headers then silence, silence before the headers, a reset mid-body, error
statuses and a ``200`` HTML error page. For each: what the client sees (status, headers,
bytes; after the headers only a cut, never a complete-looking wrong body), what is saved
(no artifact row, no file in storage, no linked content artifact, no file left in
WORKING_DIRECTORY), the failure cool-down, and what the next request gets once the
upstream behaves. docs/ondemand.md "An upstream that misbehaves" has the table.

The remotes here retry once (``max_retries=1``) and time out after a second or two
(``sock_read_timeout``, ``total_timeout``), so every failure ends in seconds; pulpcore's
defaults (3 retries, ``total_timeout`` 300 s, no ``sock_read_timeout``) only make it
slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.utils import timezone
from pulp_file.app.models import FileRemote
from pulpcore.app.models import Artifact, RemoteArtifact

from tests.helpers import content_artifact, on_demand, unique_name, url, wait_for
from tests.upstream import Raw, RawUpstream

POLICIES = ["on_demand", "streamed"]
#: ``make adversarial`` (HYPOTHESIS_PROFILE=adversarial) also runs the longer variants.
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "adversarial"


def longer(*values: object, id: str | None = None) -> object:
    """A variant that only ``make adversarial`` runs: ``make test`` keeps a bounded slice
    (each retried or timed-out download costs seconds), here the streamed twin of a
    failure the streamed path meets exactly as on_demand does (the same spool, the same
    downloader)."""
    return pytest.param(*values, id=id, marks=[
        pytest.mark.adversarial,
        pytest.mark.skipif(not LONG, reason="a longer variant: make adversarial")])


#: on_demand in every run; streamed in ``make adversarial`` only.
SLICED = ["on_demand", longer("streamed", id="streamed")]
#: Bigger than the verified tail (256 KiB), so bytes flow before the verdict.
SIZE = 600_000


@pytest.fixture(scope="module")
def raw():
    server = RawUpstream().start()
    yield server
    server.stop()


@dataclass
class Seen:
    """What a client got: status, headers, the bytes, and whether the body was cut (the
    connection closed before the framing said the body was complete)."""

    status: int
    headers: httpx.Headers
    body: bytes
    cut: bool


def get(target: str, timeout: float = 120) -> Seen:
    body = bytearray()
    with httpx.stream("GET", target, timeout=timeout) as response:
        try:
            for chunk in response.iter_raw():
                body += chunk
        except httpx.RemoteProtocolError:  # h11: incomplete chunked read / short body
            return Seen(response.status_code, response.headers, bytes(body), True)
        return Seen(response.status_code, response.headers, bytes(body), False)


def _files(root: str) -> set[str]:
    """Every file below ``root`` but the spool area's id (created once, kept by design)."""
    from pulp_content_asgi.ondemand.coordination import AREA_FILE

    found = set()
    for folder, _, names in os.walk(root):
        found.update(os.path.join(folder, name) for name in names if name != AREA_FILE)
    return found


@pytest.fixture
def leftovers():
    """The files that appear in WORKING_DIRECTORY during the test (once its downloads
    are cleaned up: spools, sidecars and downloader files go shortly after the end)."""
    before = _files(str(settings.WORKING_DIRECTORY))

    def new() -> set[str]:
        return _files(str(settings.WORKING_DIRECTORY)) - before

    return new


def repository(raw: RawUpstream, blob: bytes, policy: str, name: str = "f.bin",
               **timeouts: float) -> tuple[object, str, object]:
    distribution, prefix, repo = on_demand(raw, {name: blob}, policy=policy)
    FileRemote.objects.filter(url=raw.url(prefix)).update(max_retries=1, **timeouts)
    return distribution, prefix, repo


def assert_nothing_saved(repo: object, name: str, leftovers, *blobs: bytes) -> None:
    """No artifact row or file for any of ``blobs``, the content artifact unlinked, and no
    file of the download left in WORKING_DIRECTORY."""
    assert content_artifact(repo, name).artifact_id is None
    for blob in blobs:
        digest = hashlib.sha256(blob).hexdigest()
        assert not Artifact.objects.filter(sha256=digest).exists()
        stored = os.path.join(settings.MEDIA_ROOT, "artifact", digest[:2], digest[2:])
        assert not os.path.exists(stored), stored
    assert wait_for(lambda: not leftovers(), timeout=30), leftovers()


def failed_at(raw: RawUpstream, prefix: str, name: str = "f.bin"):
    return RemoteArtifact.objects.get(url=raw.url(prefix + name)).failed_at


def cool_down_over(raw: RawUpstream, prefix: str, name: str = "f.bin") -> None:
    """What REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN seconds do, without waiting for them."""
    past = timezone.now() - timedelta(seconds=settings.REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN + 1)
    RemoteArtifact.objects.filter(url=raw.url(prefix + name)).update(failed_at=past)


def behaves(raw: RawUpstream, prefix: str, name: str = "f.bin") -> None:
    """The upstream is repaired (and the remote's short timeouts, which a busy machine
    might trip on a healthy download, are back to pulpcore's defaults)."""
    raw.behaviour.pop(prefix + name, None)
    FileRemote.objects.filter(url=raw.url(prefix)).update(total_timeout=None,
                                                          sock_read_timeout=None)


def assert_served_then_saved(server, distribution, repo, blob: bytes, policy: str,
                             name: str = "f.bin") -> None:
    """The upstream behaves: the file, whole; saved for on_demand, not for streamed."""
    seen = get(url(server, distribution, name))
    assert (seen.status, seen.cut, seen.body == blob) == (200, False, True)
    if policy == "on_demand":
        assert wait_for(lambda: content_artifact(repo, name).artifact_id is not None)
        with open(content_artifact(repo, name).artifact.file.path, "rb") as stored:
            assert stored.read() == blob
    else:
        assert content_artifact(repo, name).artifact_id is None


# -- framing ----------------------------------------------------------------------------

@pytest.mark.parametrize("policy", SLICED)
def test_chunked_without_a_length_is_served_whole(server, raw, leftovers, policy):
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy)
    raw.behaviour[prefix + "f.bin"] = Raw(chunked=True)
    seen = get(url(server, distribution, "f.bin"))
    assert (seen.status, seen.cut, seen.body == blob) == (200, False, True)
    assert seen.headers["x-pulp-artifact-size"] == str(len(blob))  # the promised size
    if policy == "on_demand":
        assert wait_for(lambda: content_artifact(repo, "f.bin").artifact_id is not None)
        assert content_artifact(repo, "f.bin").artifact.size == len(blob)
    else:
        assert_nothing_saved(repo, "f.bin", leftovers, blob)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("declared", [SIZE - 1000, SIZE + 1000], ids=["shorter", "longer"])
def test_a_length_other_than_the_promised_size_is_refused_before_the_headers(
        server, raw, leftovers, policy, declared):
    """The upstream declares another ``Content-Length`` than the remote artifact promised
    (shorter than the body: a client would read that many bytes and take them for the
    file): refused before any header reaches the client, so it gets 404 (the next remote
    would be tried), not a short file or a cut; not retried; nothing saved; the remote
    artifact cools down like a corrupt one. pulpcore-content sends the headers, then cuts
    an on_demand download (digest) but hands a streamed client the short body, complete."""
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy)
    raw.behaviour[prefix + "f.bin"] = Raw(length=declared, end="close")
    seen = get(url(server, distribution, "f.bin"))
    assert (seen.status, seen.cut) == (404, False)
    assert raw.hits[prefix + "f.bin"] == 1
    assert_nothing_saved(repo, "f.bin", leftovers, blob, blob[:declared])
    assert failed_at(raw, prefix) is not None
    assert httpx.get(url(server, distribution, "f.bin")).status_code == 404  # cooling down
    assert raw.hits[prefix + "f.bin"] == 1
    behaves(raw, prefix)
    cool_down_over(raw, prefix)
    assert_served_then_saved(server, distribution, repo, blob, policy)


@pytest.mark.parametrize("policy", SLICED)
def test_a_body_shorter_than_its_length_is_a_cut(server, raw, leftovers, policy):
    """The connection closes before the declared (and promised) length: retried, then a
    cut; nothing saved; no cool-down (a network failure, as in pulpcore), so the next
    request fetches again."""
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy)
    raw.behaviour[prefix + "f.bin"] = Raw(send=SIZE - 1000, end="close")
    seen = get(url(server, distribution, "f.bin"))
    assert seen.status == 200 and seen.cut and blob.startswith(seen.body)
    assert raw.hits[prefix + "f.bin"] == 2  # tried, retried once
    assert_nothing_saved(repo, "f.bin", leftovers, blob)
    assert failed_at(raw, prefix) is None
    behaves(raw, prefix)
    assert_served_then_saved(server, distribution, repo, blob, policy)


@pytest.mark.parametrize("policy", SLICED)
def test_a_reset_mid_body_is_a_cut(server, raw, leftovers, policy):
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy)
    raw.behaviour[prefix + "f.bin"] = Raw(send=SIZE // 2, end="reset")
    seen = get(url(server, distribution, "f.bin"))
    assert seen.status == 200 and seen.cut and blob.startswith(seen.body)
    assert raw.hits[prefix + "f.bin"] == 2
    assert_nothing_saved(repo, "f.bin", leftovers, blob)
    assert failed_at(raw, prefix) is None
    behaves(raw, prefix)
    assert_served_then_saved(server, distribution, repo, blob, policy)


@pytest.mark.parametrize("policy", SLICED)
def test_a_reset_that_the_retry_heals_gives_the_whole_file(server, raw, leftovers, policy):
    """The downloader's retry continues the response the client already has: the bytes
    already sent are skipped, and the client gets the file once, whole."""
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy)
    raw.behaviour[prefix + "f.bin"] = Raw(send=SIZE // 2, end="reset", times=1)
    seen = get(url(server, distribution, "f.bin"))
    assert (seen.status, seen.cut, seen.body == blob) == (200, False, True)
    assert raw.hits[prefix + "f.bin"] == 2
    if policy == "on_demand":
        assert wait_for(lambda: content_artifact(repo, "f.bin").artifact_id is not None)
        # The first attempt's partial file is gone too (pulpcore's retry leaves it).
        assert wait_for(lambda: not leftovers(), timeout=30), leftovers()
    else:
        assert_nothing_saved(repo, "f.bin", leftovers, blob)


@pytest.mark.parametrize("policy", SLICED)
def test_a_retry_that_sends_other_bytes_is_a_cut_not_a_spliced_file(
        server, raw, leftovers, policy):
    """The first attempt sends half of *other* bytes of the promised length (the upstream
    replaced the file, or a proxy mangled that attempt), then closes early; the retry
    sends the file. The client already has the first attempt's half: continuing it with
    the retry's second half would hand it a body that is neither file, complete-looking
    (for on_demand, with a verdict that only describes the retry's bytes). It must be
    cut instead; nothing of the spliced download is kept, no cool-down (the next request
    downloads it again)."""
    blob = os.urandom(SIZE)
    other = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy)
    # A clean FIN (not an RST) so the whole half reaches the app before the retry.
    raw.behaviour[prefix + "f.bin"] = Raw(body=other, send=SIZE // 2, end="close", times=1)
    seen = get(url(server, distribution, "f.bin"))
    assert raw.hits[prefix + "f.bin"] == 2  # tried, retried once
    assert seen.status == 200
    if not seen.cut:
        # On a busy machine the first attempt can fail before any of its bytes reached
        # the spool; then the retry is the whole download and the file is right. A
        # complete body is only ever the file, never a splice.
        assert seen.body == blob, (f"a body of {len(seen.body)} bytes spliced from two "
                                   "attempts was served complete")
    else:
        assert other[:SIZE // 2].startswith(seen.body)  # the first attempt's bytes, no more
    assert failed_at(raw, prefix) is None
    assert wait_for(lambda: not leftovers(), timeout=30), leftovers()
    behaves(raw, prefix)
    assert_served_then_saved(server, distribution, repo, blob, policy)


# -- redirects --------------------------------------------------------------------------

#: A signed query as CDNs and object stores write them: percent-encoded slashes and
#: equals signs, a lower-case escape, a tilde escape, a plus. Re-encoding any of them
#: (yarl's requoting of a URL given as text turns ``%2F`` into ``/`` and ``%7E`` into
#: ``~``) breaks the signature: the upstream answers 403 unless the query arrives as
#: written.
SIGNED = ("X-Amz-Credential=AKIA%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
          "&X-Amz-Signature=ab%2fcd%3D%3D&token=a+b%7Ec&Expires=1767225600")


@pytest.mark.parametrize("policy", SLICED)
@pytest.mark.parametrize("statuses", [
    longer((301,), id="301"), longer((302,), id="302"), longer((307,), id="307"),
    pytest.param((301, 302, 307), id="chain")])
def test_redirects_to_a_signed_url_are_followed_byte_for_byte(
        server, raw, leftovers, policy, statuses):
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy)
    signed = f"{prefix}signed/{unique_name()}.bin"
    raw.files[signed] = blob
    raw.behaviour[signed] = Raw(query=SIGNED)
    hops = [f"{prefix}f.bin"] + [f"{prefix}hop{i}" for i in range(1, len(statuses))]
    for i, status in enumerate(statuses):
        to = raw.url(hops[i + 1]) if i + 1 < len(hops) else f"{raw.url(signed)}?{SIGNED}"
        raw.behaviour[hops[i]] = Raw(status=status, headers={"Location": to}, body=b"")
    seen = get(url(server, distribution, "f.bin"))
    assert (seen.status, seen.cut, seen.body == blob) == (200, False, True), seen.body[:200]
    assert f"/{signed}?{SIGNED}" in raw.targets
    if policy == "on_demand":
        assert wait_for(lambda: content_artifact(repo, "f.bin").artifact_id is not None)
    else:
        assert_nothing_saved(repo, "f.bin", leftovers, blob)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_signed_remote_artifact_url_is_asked_byte_for_byte(server, raw, leftovers, policy):
    """The remote artifact's own URL carries the signed query (a remote URL with a token):
    it is requested as written."""
    blob = os.urandom(SIZE)
    distribution, prefix, _ = repository(raw, blob, policy)
    RemoteArtifact.objects.filter(url=raw.url(prefix + "f.bin")).update(
        url=f"{raw.url(prefix + 'f.bin')}?{SIGNED}")
    raw.behaviour[prefix + "f.bin"] = Raw(query=SIGNED)
    seen = get(url(server, distribution, "f.bin"))
    assert (seen.status, seen.cut, seen.body == blob) == (200, False, True), seen.body[:200]
    assert f"/{prefix}f.bin?{SIGNED}" in raw.targets


# -- slow and silent upstreams ------------------------------------------------------------

@pytest.mark.parametrize("policy", SLICED)
def test_a_trickling_upstream_is_cut_at_the_remotes_total_timeout(
        server, raw, leftovers, policy):
    """One byte every 50 ms never trips a read timeout: ``total_timeout`` bounds each
    attempt (pulpcore's default 300 s, here 1 s), then the client's response is cut."""
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy, total_timeout=1.0)
    raw.behaviour[prefix + "f.bin"] = Raw(trickle=0.05)
    seen = get(url(server, distribution, "f.bin"))
    assert seen.status == 200 and seen.cut and blob.startswith(seen.body)
    assert raw.hits[prefix + "f.bin"] == 2
    assert_nothing_saved(repo, "f.bin", leftovers, blob)
    assert failed_at(raw, prefix) is None
    assert wait_for(lambda: raw.open == 0)  # the downloader hung up
    behaves(raw, prefix)
    assert_served_then_saved(server, distribution, repo, blob, policy)


@pytest.mark.parametrize("policy", SLICED)
def test_headers_then_silence_is_cut_at_the_sock_read_timeout(server, raw, leftovers, policy):
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy, sock_read_timeout=1.0)
    raw.behaviour[prefix + "f.bin"] = Raw(send=1000, end="stall")
    seen = get(url(server, distribution, "f.bin"))
    assert seen.status == 200 and seen.cut and blob.startswith(seen.body)
    assert raw.hits[prefix + "f.bin"] == 2
    assert_nothing_saved(repo, "f.bin", leftovers, blob)
    assert wait_for(lambda: raw.open == 0)
    behaves(raw, prefix)
    assert_served_then_saved(server, distribution, repo, blob, policy)


@pytest.mark.parametrize("policy", SLICED)
def test_silence_before_the_headers_is_a_404_not_a_500(server, raw, leftovers, policy):
    """No headers within ``sock_read_timeout``: pulpcore's downloader raises its own
    ``TimeoutException``, which pulpcore-content does not treat as a failed remote (500).
    Here it is one: the next remote is tried, and with none left the answer is 404, as
    for a refused connection."""
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy, sock_read_timeout=1.0)
    raw.behaviour[prefix + "f.bin"] = Raw(silent=True)
    seen = get(url(server, distribution, "f.bin"))
    assert (seen.status, seen.cut) == (404, False)
    assert raw.hits[prefix + "f.bin"] == 2
    assert_nothing_saved(repo, "f.bin", leftovers, blob)
    assert wait_for(lambda: raw.open == 0)
    behaves(raw, prefix)
    assert_served_then_saved(server, distribution, repo, blob, policy)


# -- error answers ----------------------------------------------------------------------

@pytest.mark.parametrize("policy", SLICED)
@pytest.mark.parametrize(("status", "headers", "tries"), [
    (404, {}, 1), (500, {}, 2), (429, {}, 2), (429, {"Retry-After": "1"}, 2)],
    ids=["404", "500", "429", "429-retry-after"])
def test_error_statuses_are_a_404_and_nothing_saved(server, raw, leftovers, policy, status,
                                                    headers, tries):
    """pulpcore's answer: a remote that refuses before any byte is skipped; none left,
    404. 5xx and 429 are retried first (``max_retries``; ``Retry-After`` is not read)."""
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy)
    raw.behaviour[prefix + "f.bin"] = Raw(status=status, headers=headers,
                                          body=b"<html>busy</html>")
    seen = get(url(server, distribution, "f.bin"))
    assert (seen.status, seen.cut) == (404, False)
    assert raw.hits[prefix + "f.bin"] == tries
    assert_nothing_saved(repo, "f.bin", leftovers, blob)
    assert failed_at(raw, prefix) is None
    behaves(raw, prefix)
    assert_served_then_saved(server, distribution, repo, blob, policy)


HTML = b"<html><body><h1>Service Unavailable</h1>Please try again later.</body></html>\n"


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_200_html_error_page_of_another_size_is_never_the_file(
        server, raw, leftovers, policy, chunked):
    """A CDN that answers 200 with an HTML page: a declared length that is not the
    promised size is refused before the headers (404, the next remote would be tried);
    chunked, the page is cut (on_demand: the digest; streamed: the size). Either way the
    remote artifact cools down. pulpcore-content streams it: a cut for on_demand, the page
    as the file for streamed."""
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy)
    raw.behaviour[prefix + "f.bin"] = Raw(body=HTML, chunked=chunked,
                                          headers={"Content-Type": "text/html"})
    seen = get(url(server, distribution, "f.bin"))
    if chunked:
        assert seen.status == 200 and seen.cut
    else:
        assert (seen.status, seen.cut) == (404, False)
    assert_nothing_saved(repo, "f.bin", leftovers, blob, HTML)
    assert failed_at(raw, prefix) is not None
    assert httpx.get(url(server, distribution, "f.bin")).status_code == 404  # cooling down
    behaves(raw, prefix)
    cool_down_over(raw, prefix)
    assert_served_then_saved(server, distribution, repo, blob, policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_200_html_error_page_of_the_right_size(server, raw, leftovers, policy):
    """A page of exactly the promised size: ``on_demand`` finds the digest wrong and cuts
    (the last 256 KiB wait for the verdict); ``streamed`` content is not verified (as in
    pulpcore), so its client gets the page as the file."""
    blob = os.urandom(SIZE)
    distribution, prefix, repo = repository(raw, blob, policy)
    page = (HTML * (SIZE // len(HTML) + 1))[:SIZE]
    raw.behaviour[prefix + "f.bin"] = Raw(body=page, headers={"Content-Type": "text/html"})
    seen = get(url(server, distribution, "f.bin"))
    assert seen.status == 200
    assert seen.headers["content-type"] == "application/octet-stream"  # the file's type
    if policy == "streamed":
        assert (seen.cut, seen.body) == (False, page)
        assert failed_at(raw, prefix) is None
        return
    assert seen.cut and page.startswith(seen.body) and len(seen.body) <= SIZE - 256 * 1024
    assert_nothing_saved(repo, "f.bin", leftovers, blob, page)
    assert failed_at(raw, prefix) is not None
    assert httpx.get(url(server, distribution, "f.bin")).status_code == 404  # cooling down
    behaves(raw, prefix)
    cool_down_over(raw, prefix)
    assert_served_then_saved(server, distribution, repo, blob, policy)


# -- pulpcore-content on the same faults (docs/differences.md, "On-demand content") --------

@pytest.mark.parametrize(("fault", "policy"), [
    ("signed-url", "on_demand"), ("silent", "on_demand"),
    ("declared-shorter", "streamed"), ("html-page", "streamed"), ("trickle", "on_demand")])
def test_pulpcore_content_on_the_faults_we_answer_differently(legacy_server, raw, leftovers,
                                                              fault, policy):
    """What pulpcore-content (3.123, the same database) answers where we differ: a signed
    remote artifact URL's query re-encoded (the upstream refuses it: 404), a 500 for an
    upstream that says nothing in time, and a streamed client handed a short body or an
    HTML page as the complete file. Our answers are the tests above."""
    blob = os.urandom(SIZE)
    distribution, prefix, _ = repository(raw, blob, policy, sock_read_timeout=1.0)
    if fault == "signed-url":
        RemoteArtifact.objects.filter(url=raw.url(prefix + "f.bin")).update(
            url=f"{raw.url(prefix + 'f.bin')}?{SIGNED}")
        raw.behaviour[prefix + "f.bin"] = Raw(query=SIGNED)
    elif fault == "silent":
        raw.behaviour[prefix + "f.bin"] = Raw(silent=True)
    elif fault == "declared-shorter":
        raw.behaviour[prefix + "f.bin"] = Raw(length=SIZE - 1000)
    elif fault == "trickle":
        FileRemote.objects.filter(url=raw.url(prefix)).update(total_timeout=1.0)
        raw.behaviour[prefix + "f.bin"] = Raw(trickle=0.05)
    else:
        raw.behaviour[prefix + "f.bin"] = Raw(body=HTML, headers={"Content-Type": "text/html"})
    seen = get(url(legacy_server, distribution, "f.bin"))
    if fault == "signed-url":
        assert seen.status == 404  # asked with the query re-encoded: the upstream's 403
        assert f"/{prefix}f.bin?{SIGNED}" not in raw.targets
    elif fault == "silent":
        assert seen.status == 500
    elif fault == "declared-shorter":
        assert (seen.status, seen.cut, seen.body) == (200, False, blob[:SIZE - 1000])
    elif fault == "trickle":
        assert seen.status == 200 and seen.cut
        # The first attempt's partial file stays (the second's is removed).
        assert wait_for(lambda: any(p.endswith("-f.bin") for p in leftovers()))
        for path in leftovers():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    else:
        assert (seen.status, seen.cut, seen.body) == (200, False, HTML)
