"""Amplification is bounded (issue #17): a request that wants little of a big on-demand
file (one byte of it, its headers, or the start of it before the client hangs up) does not
commit the server to downloading and storing all of it.

``CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES`` is the bound: once no client (in any process
following the download) is receiving it, a download with more than that left to fetch is
cancelled, saves nothing and leaves no spool; one with less is finished and saved as before.

The upstream is a real server on loopback that counts the body bytes it handed to each
connection and notices when the downloader hangs up. It holds a download after a number
of bytes (:data:`HELD_AFTER`, or a range's end) until the test opens it, so the bound is
checked on events, not on the clock: the app must hang up on the held upstream (the
download is cancelled) *before* the gate opens; without the bound the download resumes
when the gate opens and fetches the whole file. What is then asserted is what an operator
sees: the upstream's requests and bytes (exact where the hold makes them exact), the
``abandoned`` counter, no artifact, no spool or downloader file, no advisory lock of the
download left, and the next request saving the file whole.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.adversarial import PROFILE
from tests.helpers import (
    content_app,
    content_artifact,
    metered_env,
    on_demand,
    scrape,
    stop_server,
    url,
    value,
    wait_for,
)
from tests.upstream import Behaviour

MiB = 1024 * 1024
#: The bound the test server runs with.
LIMIT = 1 * MiB
#: The upstream holds a download after this many bytes until the test opens it.
HELD_AFTER = 2 * MiB
BIG = 32 * MiB + 123
DOWNLOADS = "pulp_content_ondemand_downloads"
ABANDONED = "pulp_content_ondemand_abandoned_total"
REQUESTS = "pulp_content_request_duration_seconds_count"


@pytest.fixture(scope="module")
def bounded(tmp_path_factory) -> Iterator[object]:
    """The app (granian, one worker) with a 1 MiB bound and Prometheus on."""
    metrics = str(tmp_path_factory.mktemp("bounded-metrics"))
    running = content_app(env=metered_env(
        metrics, PULP_CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES=str(LIMIT)))
    yield running
    stop_server(running)
    shutil.rmtree(metrics, ignore_errors=True)


@pytest.fixture(scope="module")
def second_host(tmp_path_factory) -> Iterator[object]:
    """Another instance on the same WORKING_DIRECTORY (another worker, or a host sharing
    it): it follows the downloads the ``bounded`` instance leads."""
    metrics = str(tmp_path_factory.mktemp("second-metrics"))
    running = content_app(env=metered_env(
        metrics, PULP_CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES=str(LIMIT)))
    yield running
    stop_server(running)
    shutil.rmtree(metrics, ignore_errors=True)


def finished(server: object) -> float:
    """Content requests the server has finished (sent, or seen the client leave)."""
    found = scrape(server)
    return sum(v for (name, labels), v in found.items()
               if name == REQUESTS and ("route", "stream_content") in labels)


def held(upstream: object, size: int = BIG) -> tuple[object, str, object, str,
                                                      threading.Event, bytes]:
    blob = os.urandom(size)
    distribution, prefix, repo = on_demand(upstream, {"big.bin": blob})
    gate = threading.Event()
    upstream.behaviour[prefix + "big.bin"] = Behaviour(gate=gate, gate_after=HELD_AFTER)
    return distribution, prefix + "big.bin", repo, "big.bin", gate, blob


def spool_of(repo: object, name: str) -> str:
    from pulp_content_asgi.ondemand.coordination import spool_path

    return spool_path(f"ca:{content_artifact(repo, name).pk}")


def one_byte(target: str) -> None:
    """Asks for one byte and hangs up once the ``206``'s headers are in. The byte itself
    would come only with the verdict on the whole file (a range's last bytes wait for the
    digest check, docs/ondemand.md), so a client that wants one byte and not the wait
    leaves like this."""
    with httpx.stream("GET", target, headers={"Range": "bytes=0-0"}, timeout=60) as response:
        assert response.status_code == 206
        assert response.headers["content-range"].startswith("bytes 0-0/")


def headers_only(target: str) -> None:
    response = httpx.head(target, timeout=60)
    assert response.status_code == 200
    assert response.headers["x-pulp-artifact-size"] == str(BIG)


def hang_up_early(target: str) -> None:
    with httpx.stream("GET", target, timeout=60) as response:
        assert response.status_code == 200
        next(response.iter_raw(65536))  # the first 64 KiB, then the client hangs up


def download_locks(repo: object, name: str) -> list[tuple]:
    """Advisory locks (held or awaited, by any session) naming the on-demand download of
    ``name``: its leader lock and its readers lock (``ondemand/coordination.py``; this
    process shares the servers' WORKING_DIRECTORY, so it derives the same ids). An int8
    advisory key is in ``pg_locks`` as ``classid`` (high 32 bits), ``objid`` (low 32 bits)
    and ``objsubid`` 1."""
    from django.db import connection

    from pulp_content_asgi.ondemand.coordination import lock_id, readers_id

    key = f"ca:{content_artifact(repo, name).pk}"
    found = []
    for lock in (lock_id(key), readers_id(key)):
        unsigned = lock & 0xFFFFFFFFFFFFFFFF
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid, mode, granted FROM pg_locks WHERE locktype = "
                           "'advisory' AND classid = %s::oid AND objid = %s::oid AND "
                           "objsubid = 1", [unsigned >> 32, unsigned & 0xFFFFFFFF])
            found += cursor.fetchall()
    return found


def working_files() -> set[str]:
    """Files in the servers' WORKING_DIRECTORY (spools, sidecars, downloaders' files)."""
    from django.conf import settings

    return {f for f in os.listdir(settings.WORKING_DIRECTORY) if not f.startswith(".")}


def saved_whole(repo: object, name: str, blob: bytes) -> bool:
    """Whether ``name`` is saved as an artifact whose stored file is ``blob``."""
    found = content_artifact(repo, name).artifact
    if found is None:
        return False
    with found.file.open("rb") as stored:
        return found.sha256 == hashlib.sha256(blob).hexdigest() == hashlib.sha256(
            stored.read()).hexdigest() and found.size == len(blob)


def assert_cancelled_cleanly(server: object, repo: object, name: str) -> None:
    """What an operator finds after a cancelled download: nothing saved, no spool or
    downloader file left, no lock of it held, no download counted as running."""
    spool = spool_of(repo, name)
    assert wait_for(lambda: not os.path.exists(spool) and not os.path.exists(f"{spool}.json"))
    assert wait_for(lambda: value(scrape(server), DOWNLOADS) == 0)
    assert content_artifact(repo, name).artifact_id is None
    # The leader lock goes once the download's grace ends (Inflight.GRACE).
    assert wait_for(lambda: download_locks(repo, name) == []), download_locks(repo, name)


@pytest.mark.parametrize("ask", [one_byte, headers_only, hang_up_early],
                         ids=["1-byte-range", "head", "abandoned"])
def test_a_download_nobody_receives_stops_at_the_bound(bounded, upstream, ask):
    distribution, path, repo, name, gate, blob = held(upstream)
    abandoned = value(scrape(bounded), ABANDONED)
    files_before = working_files()
    try:
        ask(url(bounded, distribution, name))
        # The app hangs up on the upstream while the upstream holds the rest: the download
        # is cancelled, not merely waiting.
        assert wait_for(lambda: upstream.hung_up[path] == 1), (
            f"the download went on after its client left ({upstream.sent[path]} bytes "
            "fetched, held there)")
    finally:
        gate.set()
    fetched = upstream.sent[path]  # final: that response ended when the app hung up
    assert upstream.hits[path] == 1
    # The operator's count says so, once: one download, cancelled once.
    assert value(scrape(bounded), ABANDONED) == abandoned + 1
    assert_cancelled_cleanly(bounded, repo, name)
    assert wait_for(lambda: working_files() <= files_before), working_files() - files_before
    # The next request downloads it afresh, and a client that stays gets all of it, saved
    # whole; the upstream served the little request's bytes and one whole file, no more
    # (the cancelled download was not resumed or retried once the upstream let go).
    upstream.behaviour.pop(path)
    again = httpx.get(url(bounded, distribution, name), timeout=120)
    assert again.status_code == 200
    assert hashlib.sha256(again.content).digest() == hashlib.sha256(blob).digest()
    assert wait_for(lambda: saved_whole(repo, name, blob))
    assert upstream.hits[path] == 2
    assert upstream.sent[path] == fetched + BIG
    assert value(scrape(bounded), ABANDONED) == abandoned + 1
    stored = httpx.get(url(bounded, distribution, name), timeout=120)
    assert stored.headers["content-length"] == str(BIG) and upstream.hits[path] == 2


#: Concurrent HEAD requests of the storm.
STORM = 64


def test_a_head_storm_on_a_cold_file_is_bounded(bounded, upstream, capsys):
    """64 concurrent HEADs of a cold 32 MiB file, each client leaving with its headers:
    at most one download per HEAD (those arriving while one runs join it), every one of
    them cancelled while the upstream still held the body, so the storm fetched at most
    ``hits * HELD_AFTER`` bytes and stored nothing; afterwards no spool, file or lock of
    it is left and the next GET saves the file whole."""
    distribution, path, repo, name, gate, blob = held(upstream)
    abandoned = value(scrape(bounded), ABANDONED)
    target = url(bounded, distribution, name)
    try:
        with ThreadPoolExecutor(STORM) as pool:
            answers = list(pool.map(lambda _: httpx.head(target, timeout=120), range(STORM)))
        assert [a.status_code for a in answers] == [200] * STORM
        assert {a.headers["x-pulp-artifact-size"] for a in answers} == {str(BIG)}
        assert all(a.content == b"" for a in answers)
        # Every download the storm started has been cancelled while held.
        assert wait_for(lambda: value(scrape(bounded), DOWNLOADS) == 0)
        assert wait_for(lambda: upstream.hung_up[path] == upstream.hits[path])
    finally:
        gate.set()
    downloads = upstream.hits[path]
    assert 1 <= downloads <= STORM
    assert value(scrape(bounded), ABANDONED) == abandoned + downloads
    fetched = upstream.sent[path]
    assert fetched <= downloads * HELD_AFTER
    assert_cancelled_cleanly(bounded, repo, name)
    with capsys.disabled():
        print(f"\nHEAD storm: {STORM} HEADs, {downloads} upstream downloads, {fetched} bytes "
              f"fetched of a {BIG}-byte file, nothing stored")
    upstream.behaviour.pop(path)
    again = httpx.get(target, timeout=120)
    assert again.status_code == 200 and hashlib.sha256(again.content).digest() == \
        hashlib.sha256(blob).digest()
    assert wait_for(lambda: saved_whole(repo, name, blob))
    assert upstream.sent[path] == fetched + BIG and upstream.hits[path] == downloads + 1


#: The file read in consecutive ranges, and the ranges (inclusive byte positions).
RANGED = 6 * MiB + 123
RANGES = [(0, 2 * MiB - 1), (2 * MiB, 4 * MiB - 1), (4 * MiB, 5 * MiB + MiB // 2 - 1),
          (5 * MiB + MiB // 2, RANGED - 1)]


def ask_range(target: str, first: int, last: int, blob: bytes) -> None:
    response = httpx.get(target, headers={"Range": f"bytes={first}-{last}"}, timeout=120)
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {first}-{last}/{len(blob)}"
    assert response.content == blob[first:last + 1]


@pytest.mark.parametrize("which", ["bounded", "server"], ids=["bound", "no-bound"])
def test_consecutive_ranges_fetch_the_file_once(which, request, upstream):
    """A client reading a cold file in consecutive ranges (curl ``-C -``, aria2c), with
    the bound and without: a range's last bytes wait for the verdict on the whole file
    (its bytes cannot be verified on their own), so the first range's client is still
    receiving while the download runs, the download is never unattended, and it is
    finished and saved; the other ranges come from storage. Every byte is fetched once.
    (Before ranges waited for the verdict, the bound made each range a new download from
    byte 0: 12 MiB fetched for this 6 MiB file.)"""
    running = request.getfixturevalue(which)
    blob = os.urandom(RANGED)
    distribution, prefix, repo = on_demand(upstream, {"ranged.bin": blob})
    path = prefix + "ranged.bin"
    target = url(running, distribution, "ranged.bin")
    abandoned = value(scrape(running), ABANDONED) if which == "bounded" else None
    ask_range(target, *RANGES[0], blob)
    # The whole file was fetched for the first range, and saved.
    assert wait_for(lambda: saved_whole(repo, "ranged.bin", blob))
    assert upstream.hits[path] == 1 and upstream.sent[path] == RANGED
    for first, last in RANGES[1:]:
        ask_range(target, first, last, blob)
    assert upstream.hits[path] == 1 and upstream.sent[path] == RANGED
    assert upstream.hung_up[path] == 0
    if abandoned is not None:
        assert value(scrape(running), ABANDONED) == abandoned


def test_a_streamed_download_nobody_receives_stops_at_once(server, upstream):
    """Streamed content is never saved, so a download of it that nobody receives is
    cancelled whatever is left (here with no bound set, the default)."""
    blob = os.urandom(4 * MiB)
    distribution, prefix, repo = on_demand(upstream, {"s.bin": blob}, policy="streamed")
    path = prefix + "s.bin"
    gate = threading.Event()
    upstream.behaviour[path] = Behaviour(gate=gate, gate_after=HELD_AFTER)
    try:
        hang_up_early(url(server, distribution, "s.bin"))
        assert wait_for(lambda: upstream.hung_up[path] == 1)
    finally:
        gate.set()
    assert upstream.sent[path] <= HELD_AFTER
    assert content_artifact(repo, "s.bin").artifact_id is None


def test_under_the_bound_the_download_is_finished_and_saved(bounded, upstream):
    """A file smaller than the bound is finished and saved after its client left, as
    before (the next request is served from storage)."""
    small = LIMIT - 100 * 1024
    blob = os.urandom(small)
    distribution, prefix, repo = on_demand(upstream, {"small.bin": blob})
    path = prefix + "small.bin"
    gate = threading.Event()
    upstream.behaviour[path] = Behaviour(gate=gate, gate_after=256 * 1024)
    before = finished(bounded)
    try:
        with httpx.stream("GET", url(bounded, distribution, "small.bin"),
                          timeout=60) as response:
            assert response.status_code == 200
            next(response.iter_raw(65536))
        assert wait_for(lambda: finished(bounded) > before)  # the app saw the client leave
    finally:
        gate.set()
    assert wait_for(lambda: content_artifact(repo, "small.bin").artifact_id is not None)
    assert upstream.hung_up[path] == 0 and upstream.sent[path] == small
    stored = httpx.get(url(bounded, distribution, "small.bin"), timeout=60)
    assert stored.content == blob and stored.headers["content-length"] == str(small)
    assert upstream.hits[path] == 1


def test_a_second_client_keeps_the_download_alive(bounded, upstream):
    """Two clients of one download in one process: the first leaves, the second still
    receives it, so it goes on, whole, and is saved."""
    distribution, path, repo, name, gate, blob = held(upstream)
    target = url(bounded, distribution, name)
    before = finished(bounded)
    try:
        with httpx.stream("GET", target, timeout=120) as staying:
            assert staying.status_code == 200
            # What assert_cancelled_cleanly looks for exists while a download runs: its
            # spool where spool_of says, its leader lock where download_locks looks (this
            # process derives the servers' ids), so those checks can fail.
            assert os.path.exists(spool_of(repo, name))
            assert ("ExclusiveLock", True) in [(mode, granted) for _, mode, granted
                                               in download_locks(repo, name)]
            with httpx.stream("GET", target, timeout=60) as leaving:
                assert leaving.status_code == 200
                next(leaving.iter_raw(65536))
            assert wait_for(lambda: finished(bounded) > before)  # the first one left
            gate.set()
            body = b"".join(staying.iter_raw())
    finally:
        gate.set()
    assert hashlib.sha256(body).digest() == hashlib.sha256(blob).digest()
    assert upstream.hits[path] == 1 and upstream.hung_up[path] == 0
    assert wait_for(lambda: content_artifact(repo, name).artifact_id is not None)


def test_a_follower_in_another_process_keeps_the_download_alive(bounded, second_host,
                                                                upstream):
    """The leader's only client leaves while another instance on the same
    WORKING_DIRECTORY (another worker, or a host sharing it) still sends the download to
    its client: the download goes on, whole, and is saved."""
    distribution, path, repo, name, gate, blob = held(upstream)
    before = finished(bounded)
    try:
        with httpx.stream("GET", url(bounded, distribution, name), timeout=60) as leading:
            assert leading.status_code == 200  # the bounded instance leads
            with httpx.stream("GET", url(second_host, distribution, name),
                              timeout=120) as following:
                assert following.status_code == 200  # the other one follows its spool
                next(leading.iter_raw(65536))
                leading.close()
                assert wait_for(lambda: finished(bounded) > before)  # the leader's left
                gate.set()
                body = b"".join(following.iter_raw())
    finally:
        gate.set()
    assert hashlib.sha256(body).digest() == hashlib.sha256(blob).digest()
    assert upstream.hits[path] == 1 and upstream.hung_up[path] == 0
    assert wait_for(lambda: content_artifact(repo, name).artifact_id is not None)


def test_once_the_followers_client_leaves_too_the_download_stops(bounded, second_host,
                                                                 upstream):
    """As above, but then the follower's client leaves as well: the leader notices that
    no process reads the download any more and cancels it; nothing is saved, no spool."""
    distribution, path, repo, name, gate, _ = held(upstream)
    first_left, second_left = finished(bounded), finished(second_host)
    try:
        with httpx.stream("GET", url(bounded, distribution, name), timeout=60) as leading:
            assert leading.status_code == 200
            with httpx.stream("GET", url(second_host, distribution, name),
                              timeout=60) as following:
                assert following.status_code == 200
                next(leading.iter_raw(65536))
                leading.close()
                assert wait_for(lambda: finished(bounded) > first_left)
                assert len(next(following.iter_raw(65536))) > 0
            assert wait_for(lambda: finished(second_host) > second_left)
        assert wait_for(lambda: upstream.hung_up[path] == 1), (
            f"the download went on after its last client left ({upstream.sent[path]} "
            "bytes fetched, held there)")
    finally:
        gate.set()
    assert upstream.hits[path] == 1 and upstream.sent[path] <= HELD_AFTER
    assert_cancelled_cleanly(bounded, repo, name)


#: The measured file, and the bound of the measurement (the bound is off by default).
MEASURED = 256 * MiB
MEASURED_BOUND = 128 * MiB


@pytest.fixture(scope="module")
def measured_server(tmp_path_factory) -> Iterator[object]:
    """The app with a 128 MiB bound, for the measurement of docs/differences.md."""
    metrics = str(tmp_path_factory.mktemp("measured-metrics"))
    running = content_app(env=metered_env(
        metrics, PULP_CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES=str(MEASURED_BOUND)))
    yield running
    stop_server(running)
    shutil.rmtree(metrics, ignore_errors=True)


@pytest.mark.adversarial
@pytest.mark.skipif(PROFILE != "adversarial", reason="a measurement: make adversarial")
@pytest.mark.parametrize("app", ["ours", "pulpcore-content"])
@pytest.mark.parametrize("ask", [one_byte, hang_up_early], ids=["1-byte-range", "abandoned"])
def test_upstream_bytes_fetched_for_little_asked(app, ask, measured_server, legacy_server,
                                                 upstream, capsys):
    """The figures of docs/differences.md: bytes each app fetches from a full-speed
    upstream (no gate) for a 1-byte range, and for a client that hangs up after 64 KiB,
    of a cold 256 MiB file; ours with a 128 MiB bound. Until the download ended (the app
    hung up on the upstream, or saved the file)."""
    running = measured_server if app == "ours" else legacy_server
    blob = os.urandom(MEASURED)
    distribution, prefix, repo = on_demand(upstream, {"m.bin": blob})
    path = prefix + "m.bin"
    target = url(running, distribution, "m.bin")
    ask(target)
    assert wait_for(lambda: upstream.hung_up[path] == 1
                    or content_artifact(repo, "m.bin").artifact_id is not None, 600)
    saved = content_artifact(repo, "m.bin").artifact_id is not None
    with capsys.disabled():
        print(f"\n{app} {ask.__name__}: fetched {upstream.sent[path]} of {MEASURED} bytes "
              f"from the upstream, saved: {saved}")
    if app == "ours":
        assert not saved and upstream.sent[path] < MEASURED


def test_an_http10_client_that_hangs_up_while_waiting_leaves_its_download(bounded):
    """An HTTP/1.0 client of a file of unknown size (a chunked upstream, no size recorded)
    waits for the verified download before its headers (docs/ondemand.md). Behind nginx's
    default ``proxy_http_version 1.0`` every client is such a client, and nginx hangs up
    on the app when its client goes. A client that hangs up while it waits receives
    nothing: the download is unattended and, with more than the bound left (an unknown
    size counts as more), cancelled. Here the upstream sends 2 MiB of the jar and then
    holds the rest until its client (the app) hangs up (review #15 of bba490f)."""
    import socket
    from urllib.parse import urlsplit

    from tests.test_upstream_declared_e2e import maven
    from tests.upstream import Raw, RawUpstream

    raw = RawUpstream().start()
    try:
        dist, u, jar = maven(raw)
        blob = os.urandom(4 * MiB)
        raw.files[f"{u}/{jar}"] = blob
        raw.files[f"{u}/{jar}.sha1"] = hashlib.sha1(blob).hexdigest().encode()
        raw.behaviour[f"{u}/{jar}"] = Raw(chunked=True, send=HELD_AFTER, end="stall")
        target = urlsplit(url(bounded, dist, jar))
        client = socket.create_connection((target.hostname, target.port))
        client.sendall(f"GET {target.path} HTTP/1.0\r\nHost: {target.netloc}\r\n\r\n"
                       .encode())
        assert wait_for(lambda: raw.hits[f"{u}/{jar}"] == 1)
        assert raw.open >= 1  # the app holds the stalled download
        client.close()
        assert wait_for(lambda: raw.open == 0), (
            "the download went on (its upstream connection still open) after its only "
            "client, an HTTP/1.0 one waiting for the verdict, hung up")
    finally:
        raw.stop()


def test_a_followers_range_of_a_tampered_download_is_cut(bounded, second_host, upstream):
    """A range of a download another instance leads (read through its spool and
    sidecar, :class:`FollowedSpool`) waits for the leader's verdict like a local one: a
    tampered download cuts it (the leader's client too), nothing is saved."""
    distribution, path, repo, name, gate, _ = held(upstream, size=4 * MiB)
    upstream.behaviour[path].corrupt = True  # the first 16 bytes flipped, same size
    try:
        with httpx.stream("GET", url(bounded, distribution, name), timeout=60) as leading:
            assert leading.status_code == 200  # the bounded instance leads
            with httpx.stream("GET", url(second_host, distribution, name),
                              headers={"Range": "bytes=0-999"}, timeout=60) as following:
                assert following.status_code == 206  # read from the leader's spool
                gate.set()
                with pytest.raises(httpx.TransportError):
                    following.read()
            with pytest.raises(httpx.TransportError):
                leading.read()
    finally:
        gate.set()
    ca = content_artifact(repo, name)
    from pulpcore.app.models import RemoteArtifact

    assert wait_for(lambda: RemoteArtifact.objects.get(content_artifact=ca).failed_at)
    assert content_artifact(repo, name).artifact_id is None
