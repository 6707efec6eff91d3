"""Request collapsing when things go wrong: a slow client, a leader that dies.

The tests wait on events, never on the clock: the upstream holds a download at a gate
until the test opens it, and the app's own counter of requests that joined a download
(Prometheus, ``metered_server``) says when a request has joined.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pulpcore.app.models import RemoteArtifact

from pulp_content_asgi.ondemand.coordination import lock_id, spool_path
from tests.helpers import content_artifact, on_demand, scrape, url, value, wait_for
from tests.upstream import Behaviour

JOINED = "pulp_content_ondemand_collapsed_requests_total"


def joined(server) -> float:
    """Requests (so far, since the server started) that joined a download in flight."""
    return value(scrape(server), JOINED)


def test_a_slow_client_does_not_slow_the_others(metered_server, upstream):
    """A client that stops reading does not hold back another client of the same
    download: the fast one receives everything while the slow one reads nothing."""
    blob = os.urandom(32 * 1024 * 1024)  # far more than the sockets' buffers hold
    distribution, prefix, _ = on_demand(upstream, {"shared.bin": blob})
    gate = threading.Event()
    upstream.behaviour[prefix + "shared.bin"] = Behaviour(gate=gate, gate_after=1024 * 1024)
    target = url(metered_server, distribution, "shared.bin")
    before = joined(metered_server)

    async def main() -> tuple[httpx.Response, bytes]:
        fast_done, slow_started = asyncio.Event(), asyncio.Event()

        async def slow(client: httpx.AsyncClient) -> bytes:
            received = []
            async with client.stream("GET", target) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_raw(16384):
                    received.append(chunk)
                    slow_started.set()
                    await fast_done.wait()  # reads nothing more until the fast one is done
            return b"".join(received)

        async with httpx.AsyncClient(timeout=300) as client:
            slow_task = asyncio.create_task(slow(client))
            await slow_started.wait()
            fast_task = asyncio.create_task(client.get(target))
            # The fast client has joined the (held) download; let the rest come.
            assert await asyncio.to_thread(wait_for, lambda: joined(metered_server) > before)
            gate.set()
            fast = await fast_task
            fast_done.set()
            return fast, await slow_task

    fast, slow_body = asyncio.run(main())
    assert fast.status_code == 200 and fast.content == blob
    assert slow_body == blob
    assert upstream.hits[prefix + "shared.bin"] == 1


# Another process leading a download: it takes the advisory lock, writes what its mode
# says, prints "leading", then waits for a line on stdin before it exits.
LEADER = """
import json, os, sys, time
import psycopg
lock, path, dsn, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
conn = psycopg.connect(dsn, autocommit=True)
conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
if mode == "midway":
    with open(path, "wb") as spool:
        spool.write(b"x" * 1000)
    with open(path + ".json", "w") as meta:
        json.dump({"headers": {"Content-Type": "application/octet-stream"}, "size": 1000}, meta)
if mode == "done":  # an earlier download, saved, whose artifact was reclaimed since
    with open(path, "wb") as spool:
        spool.write(b"z" * 10)
    with open(path + ".json", "w") as meta:
        json.dump({"headers": {}, "size": 10, "state": "done", "at": time.time() - 1}, meta)
if mode == "failed":  # an earlier attempt that failed; its files linger (grace period)
    with open(path, "wb") as spool:
        spool.write(b"y" * 10)
    with open(path + ".json", "w") as meta:
        json.dump({"headers": {}, "size": 10, "state": "failed", "status": 502,
                   "message": "digest mismatch", "at": time.time() - 1}, meta)
print("leading", flush=True)
sys.stdin.readline()
# "early" and "midway" die without finishing: PostgreSQL releases the lock.
os._exit(0 if mode in ("done", "failed") else 1)
"""


def _impersonate_leader(repo, name: str, mode: str) -> subprocess.Popen[str]:
    from django.conf import settings

    key = f"ca:{content_artifact(repo, name).pk}"
    db = settings.DATABASES["default"]
    dsn = f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname={db['NAME']}"
    leader = subprocess.Popen([sys.executable, "-c", LEADER, str(lock_id(key)),
                               spool_path(key), dsn, mode], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert leader.stdout is not None and leader.stdout.readline().strip() == "leading"
    return leader


def _release(leader: subprocess.Popen[str]) -> None:
    assert leader.stdin is not None
    leader.stdin.write("go\n")
    leader.stdin.close()
    leader.wait(60)


def _while_joined(server, request, leader: subprocess.Popen[str]):
    """Run ``request()`` in a thread; once it has joined the other process's download,
    let that process go on; ``request()``'s result."""
    before = joined(server)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(request)
        try:
            assert wait_for(lambda: joined(server) > before)
        finally:
            _release(leader)
        return pending.result(timeout=120)


@pytest.mark.parametrize("mode", [
    # The leader vanishes before its headers: a follower takes over.
    "early",
    # Its earlier attempt failed and lingers for its own readers: not replayed.
    "failed",
    # Its download was saved before this request arrived, yet the request found nothing
    # stored (reclaimed since): not replayed either, downloaded again.
    "done",
])
def test_another_process_s_download_is_taken_over_or_not_replayed(metered_server, upstream,
                                                                  mode):
    blob = os.urandom(200_000)
    distribution, prefix, repo = on_demand(upstream, {"other.bin": blob})
    leader = _impersonate_leader(repo, "other.bin", mode)
    response = _while_joined(metered_server, lambda: httpx.get(
        url(metered_server, distribution, "other.bin"), timeout=120), leader)
    assert response.status_code == 200 and response.content == blob
    assert upstream.hits[prefix + "other.bin"] == 1
    assert wait_for(lambda: content_artifact(repo, "other.bin").artifact_id is not None)


def test_a_leader_dying_midway_cuts_its_followers_off(metered_server, upstream):
    """Its followers' answers are cut short (headers sent), and the log says so once."""
    distribution, _, repo = on_demand(upstream, {"cut.bin": os.urandom(300_000)})
    leader = _impersonate_leader(repo, "cut.bin", "midway")
    run = _while_joined(metered_server, lambda: subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
         url(metered_server, distribution, "cut.bin")],
        capture_output=True, text=True, timeout=120), leader)
    assert run.stdout == "200" and run.returncode == 18  # headers sent, body cut short
    # The operator reads why, once, from the app (not a server's traceback of it).
    cuts = [line for line in metered_server.log().splitlines()
            if "Cut short the answer" in line and f"/{distribution.base_path}/" in line]
    assert len(cuts) == 1 and "leading this download went away" in cuts[0], cuts
    assert "SpoolFailed" not in metered_server.log()


def test_a_retry_right_after_a_failure_is_not_cut_by_its_cleanup(metered_server, upstream):
    """pulpcore's test_remote_artifact_url_update: a 404, the remote fixed, a request
    within the failed attempt's grace period, and another joining it after that period:
    the failed attempt's cleanup must leave the new download's spool alone."""
    from pulp_content_asgi.ondemand.inflight import Inflight

    blob = os.urandom(2 * 1024 * 1024)
    distribution, prefix, repo = on_demand(upstream, {"retry.bin": blob})
    target = url(metered_server, distribution, "retry.bin")
    upstream.behaviour[prefix + "retry.bin"] = Behaviour(status=404)
    assert httpx.get(target, timeout=60).status_code == 404
    failed_at = time.monotonic()
    gate = threading.Event()
    # Fixed, but held after its first 64 KiB until the joiner is in.
    upstream.behaviour[prefix + "retry.bin"] = Behaviour(gate=gate, gate_after=65536)
    RemoteArtifact.objects.filter(content_artifact__pk=content_artifact(repo, "retry.bin").pk
                                  ).update(failed_at=None)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.get, target, timeout=120)
        assert wait_for(lambda: upstream.hits[prefix + "retry.bin"] == 2)
        # The failed attempt's files expire GRACE s after it failed (a timer in the app).
        # The new download cannot finish while the gate is shut, so waiting three times
        # as long only makes sure that cleanup has run before the joiner arrives.
        time.sleep(max(0.0, 3 * Inflight.GRACE - (time.monotonic() - failed_at)))
        before = joined(metered_server)
        joiner = pool.submit(httpx.get, target, timeout=120)
        assert wait_for(lambda: joined(metered_server) > before)
        gate.set()
        responses = [first.result(120), joiner.result(120)]
    for response in responses:
        assert response.status_code == 200 and response.content == blob
    assert upstream.hits[prefix + "retry.bin"] == 2  # the 404, then one download
