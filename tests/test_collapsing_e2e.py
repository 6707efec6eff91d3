"""Request collapsing when things go wrong: a slow client, a leader that dies."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest
from pulpcore.app.models import RemoteArtifact

from pulp_content_asgi.ondemand.coordination import lock_id, spool_path
from tests.test_ondemand_e2e import content_artifact, on_demand, url, wait_for
from tests.upstream import Behaviour


def test_a_slow_client_does_not_slow_the_others(server, upstream):
    blob = os.urandom(8 * 1024 * 1024)
    distribution, prefix, _ = on_demand(upstream, {"shared.bin": blob})
    upstream.behaviour[prefix + "shared.bin"] = Behaviour(chunk_delay=0.001)
    target = url(server, distribution, "shared.bin")
    slow_received = []

    async def slow(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", target, timeout=300) as response:
            async for chunk in response.aiter_raw(16384):
                slow_received.append(len(chunk))
                await asyncio.sleep(0.02)

    async def fast(client: httpx.AsyncClient) -> tuple[bytes, int]:
        await asyncio.sleep(0.2)  # join while the slow client is already reading
        response = await client.get(target, timeout=300)
        return response.content, sum(slow_received)

    async def main() -> tuple[bytes, int]:
        async with httpx.AsyncClient() as client:
            slow_task = asyncio.create_task(slow(client))
            body, slow_so_far = await fast(client)
            slow_task.cancel()
            return body, slow_so_far

    body, slow_so_far = asyncio.run(main())
    assert body == blob
    assert slow_so_far < len(blob) // 2  # the fast one finished long before the slow one
    assert upstream.hits[prefix + "shared.bin"] == 1


LEADER = """
import json, os, sys, time
import psycopg
lock, path, dsn, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
conn = psycopg.connect(dsn, autocommit=True)
conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
print("leading", flush=True)
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
    time.sleep(3)
    os._exit(0)
if mode == "failed":  # an earlier attempt that failed; its files linger (grace period)
    with open(path, "wb") as spool:
        spool.write(b"y" * 10)
    with open(path + ".json", "w") as meta:
        json.dump({"headers": {}, "size": 10, "state": "failed", "status": 502,
                   "message": "digest mismatch", "at": time.time() - 1}, meta)
    time.sleep(1.5)
    os._exit(0)
time.sleep(3)
os._exit(1)  # dies without finishing: PostgreSQL releases the lock
"""


def _impersonate_leader(repo, name: str, mode: str) -> subprocess.Popen[str]:
    from django.conf import settings

    key = f"ca:{content_artifact(repo, name).pk}"
    db = settings.DATABASES["default"]
    dsn = f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname={db['NAME']}"
    leader = subprocess.Popen([sys.executable, "-c", LEADER, str(lock_id(key)),
                               spool_path(key), dsn, mode], stdout=subprocess.PIPE, text=True)
    assert leader.stdout is not None and leader.stdout.readline().strip() == "leading"
    return leader


@pytest.mark.parametrize("mode", [
    # The leader vanishes before its headers: a follower takes over.
    "early",
    # Its earlier attempt failed and lingers for its own readers: not replayed.
    "failed",
    # Its download was saved before this request arrived, yet the request found nothing
    # stored (reclaimed since): not replayed either, downloaded again.
    "done",
])
def test_another_process_s_download_is_taken_over_or_not_replayed(server, upstream, mode):
    blob = os.urandom(200_000)
    distribution, prefix, repo = on_demand(upstream, {"other.bin": blob})
    leader = _impersonate_leader(repo, "other.bin", mode)
    try:
        response = httpx.get(url(server, distribution, "other.bin"), timeout=60)
    finally:
        leader.wait(10)
    assert response.status_code == 200 and response.content == blob
    assert upstream.hits[prefix + "other.bin"] == 1
    assert wait_for(lambda: content_artifact(repo, "other.bin").artifact_id is not None)


def test_a_leader_dying_midway_cuts_its_followers_off(server, upstream):
    distribution, _, repo = on_demand(upstream, {"cut.bin": os.urandom(300_000)})
    leader = _impersonate_leader(repo, "cut.bin", "midway")
    try:
        run = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              url(server, distribution, "cut.bin")],
                             capture_output=True, text=True, timeout=60)
    finally:
        leader.wait(10)
    assert run.stdout == "200" and run.returncode == 18  # headers sent, body cut short


def test_a_retry_right_after_a_failure_is_not_cut_by_its_cleanup(server, upstream):
    """pulpcore's test_remote_artifact_url_update: a 404, the remote fixed, a request
    within the failed attempt's grace period: that attempt's cleanup must leave the new
    download's spool alone."""
    blob = os.urandom(2 * 1024 * 1024)
    distribution, prefix, repo = on_demand(upstream, {"retry.bin": blob})
    upstream.behaviour[prefix + "retry.bin"] = Behaviour(status=404)
    assert httpx.get(url(server, distribution, "retry.bin"), timeout=30).status_code == 404
    upstream.behaviour[prefix + "retry.bin"] = Behaviour(chunk_delay=0.12)  # ~4 s, past 2 s
    RemoteArtifact.objects.filter(content_artifact__pk=content_artifact(repo, "retry.bin").pk
                                  ).update(failed_at=None)

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            first = asyncio.create_task(client.get(url(server, distribution, "retry.bin")))
            await asyncio.sleep(2.5)  # the failed attempt's grace period is over
            joiner = await client.get(url(server, distribution, "retry.bin"))
            return [await first, joiner]

    for response in asyncio.run(both()):
        assert response.status_code == 200 and response.content == blob
    assert upstream.hits[prefix + "retry.bin"] == 2  # the 404, then one download
