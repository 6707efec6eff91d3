"""Amplification is bounded (issue #17): a request that wants little of a big on-demand
file (one byte of it, its headers, or the start of it before the client hangs up) does not
commit the server to downloading and storing all of it.

``CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES`` is the bound: once no client (in any process
following the download) is receiving it, a download with more than that left to fetch is
cancelled, saves nothing and leaves no spool; one with less is finished and saved as before.

The upstream is a real server on loopback that counts the body bytes it handed to each
connection and notices when the downloader hangs up. It holds every download of the big
file after :data:`HELD_AFTER` bytes until the test opens it, so the bound is checked on
events, not on the clock: the app hangs up on the held upstream (the download is
cancelled) *before* the gate opens, so the bytes fetched are at most ``HELD_AFTER`` (the
slack over what the client was sent: what the upstream sent before the client left).
Without the bound the download resumes when the gate opens and fetches the whole file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterator

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
    response = httpx.get(target, headers={"Range": "bytes=0-0"}, timeout=60)
    assert response.status_code == 206 and len(response.content) == 1


def headers_only(target: str) -> None:
    response = httpx.head(target, timeout=60)
    assert response.status_code == 200
    assert response.headers["x-pulp-artifact-size"] == str(BIG)


def hang_up_early(target: str) -> None:
    with httpx.stream("GET", target, timeout=60) as response:
        assert response.status_code == 200
        next(response.iter_raw(65536))  # the first 64 KiB, then the client hangs up


@pytest.mark.parametrize("ask", [one_byte, headers_only, hang_up_early],
                         ids=["1-byte-range", "head", "abandoned"])
def test_a_download_nobody_receives_stops_at_the_bound(bounded, upstream, ask):
    distribution, path, repo, name, gate, _ = held(upstream)
    try:
        ask(url(bounded, distribution, name))
        # The app hangs up on the held upstream: the download is cancelled.
        assert wait_for(lambda: upstream.hung_up[path] == 1), (
            f"the download went on after its client left ({upstream.sent[path]} bytes "
            "fetched, held there)")
    finally:
        gate.set()
    assert upstream.hits[path] == 1
    assert upstream.sent[path] <= HELD_AFTER < BIG
    spool = spool_of(repo, name)
    assert wait_for(lambda: not os.path.exists(spool) and not os.path.exists(f"{spool}.json"))
    assert wait_for(lambda: value(scrape(bounded), DOWNLOADS) == 0)
    assert content_artifact(repo, name).artifact_id is None
    assert value(scrape(bounded), ABANDONED) >= 1
    # The next request downloads it afresh, and a client that stays gets all of it, saved.
    upstream.behaviour.pop(path)
    again = httpx.get(url(bounded, distribution, name), timeout=120)
    assert again.status_code == 200
    assert hashlib.sha256(again.content).hexdigest() == hashlib.sha256(
        upstream.files[path]).hexdigest()
    assert upstream.hits[path] == 2
    assert wait_for(lambda: content_artifact(repo, name).artifact_id is not None)


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
    spool = spool_of(repo, name)
    assert wait_for(lambda: not os.path.exists(spool) and not os.path.exists(f"{spool}.json"))
    assert content_artifact(repo, name).artifact_id is None


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
    if ask is one_byte:
        response = httpx.get(target, headers={"Range": "bytes=0-0"}, timeout=600)
        assert response.status_code == 206 and response.content == blob[:1]
    else:
        hang_up_early(target)
    assert wait_for(lambda: upstream.hung_up[path] == 1
                    or content_artifact(repo, "m.bin").artifact_id is not None, 600)
    saved = content_artifact(repo, "m.bin").artifact_id is not None
    with capsys.disabled():
        print(f"\n{app} {ask.__name__}: fetched {upstream.sent[path]} of {MEASURED} bytes "
              f"from the upstream, saved: {saved}")
    if app == "ours":
        assert not saved and upstream.sent[path] < MEASURED
