"""The Redis response cache with a real Redis: MISS/HIT, invalidation through pulpcore's
own model hooks, guards, Redis outages, and sharing entries with pulpcore-content."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from pulpcore.app.models import HeaderContentGuard

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import free_port
from tests.conftest import BIN, content_app, start_server, stop_server


class PrivateRedis:
    """A redis-server on a free loopback port that the tests may stop and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                              text=True).stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True).stdout


@pytest.fixture(scope="module")
def redis_server():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cache_settings(redis_server):
    """This process's pulpcore hooks invalidate in the same Redis as the servers."""
    import pulpcore.app.redis_connection as connections

    overrides = override_settings(CACHE_ENABLED=True, REDIS_HOST="127.0.0.1",
                                  REDIS_PORT=redis_server.port, REDIS_URL=None)
    overrides.enable()
    connections._conn = connections._a_conn = None
    yield {"PULP_CACHE_ENABLED": "true", "PULP_REDIS_HOST": "127.0.0.1",
           "PULP_REDIS_PORT": str(redis_server.port)}
    overrides.disable()
    connections._conn = connections._a_conn = None


@pytest.fixture(scope="module")
def cached_server(cache_settings):
    running = content_app("granian", env=cache_settings)
    yield running
    stop_server(running)


def published(unique: str, files: dict[str, bytes], **distribution: object):
    repo = data.repository(f"cache-{unique}", files)
    pub = data.publish(repo.latest_version())
    fields = {"publication": pub} if "repository" not in distribution else {}
    return data.distribute(f"cache-{unique}", **fields, **distribution), repo


def get(server, distribution, path, **kwargs):
    return httpx.get(server.url(f"/pulp/content/{distribution.base_path}/{path}"), **kwargs)


def test_miss_then_hit(cached_server, unique):
    distribution, _ = published(unique, {"a.txt": b"alpha", "dir/b.bin": os.urandom(200_000)})
    first = get(cached_server, distribution, "a.txt")
    assert first.headers["x-pulp-cache"] == "MISS" and first.content == b"alpha"
    second = get(cached_server, distribution, "a.txt")
    assert second.headers["x-pulp-cache"] == "HIT" and second.content == b"alpha"
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["content-type"] == "text/plain"
    big = [get(cached_server, distribution, "dir/b.bin") for _ in range(2)]
    assert [r.headers["x-pulp-cache"] for r in big] == ["MISS", "HIT"]
    assert big[1].content == big[0].content
    ranged = get(cached_server, distribution, "dir/b.bin", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.content == big[0].content[:10]
    listing = [get(cached_server, distribution, "dir/") for _ in range(2)]
    assert [r.headers["x-pulp-cache"] for r in listing] == ["MISS", "HIT"]
    assert listing[0].text == listing[1].text
    conditional = get(cached_server, distribution, "a.txt",
                      headers={"If-None-Match": first.headers["etag"]})
    assert conditional.status_code == 304


def test_what_is_not_cached(cached_server, unique):
    distribution, _ = published(unique, {"a.txt": b"alpha", "dir/b.txt": b"b"})
    redirect = get(cached_server, distribution, "dir")
    assert redirect.status_code == 301 and "x-pulp-cache" not in redirect.headers
    nothing = data.distribute(f"cache-none-{unique}")
    for _ in range(2):
        response = get(cached_server, nothing, "x")
        assert response.status_code == 404 and "x-pulp-cache" not in response.headers


def test_cacheable_404s_are_cached(cached_server, unique):
    distribution, _ = published(unique, {"a.txt": b"alpha"})
    misses = [get(cached_server, distribution, "nope") for _ in range(2)]
    assert [r.status_code for r in misses] == [404, 404]
    assert [r.headers.get("x-pulp-cache") for r in misses] == ["MISS", "HIT"]


def test_invalidated_by_a_new_publication(cached_server, unique):
    distribution, repo = published(unique, {"a.txt": b"one"}, repository=None)
    distribution.repository = repo
    distribution.save()
    assert get(cached_server, distribution, "a.txt").headers["x-pulp-cache"] == "MISS"
    assert get(cached_server, distribution, "a.txt").headers["x-pulp-cache"] == "HIT"
    version = data.add_files(repo, {"b.txt": b"two"})
    data.publish(version)
    after = get(cached_server, distribution, "a.txt")
    assert after.headers["x-pulp-cache"] == "MISS"
    assert get(cached_server, distribution, "b.txt").content == b"two"


def test_invalidated_by_distribution_changes_and_deletion(cached_server, unique):
    distribution, repo = published(unique, {"a.txt": b"one"})
    for _ in range(2):
        get(cached_server, distribution, "a.txt")
    other = data.publish(data.add_files(repo, {"a.txt": b"changed"}))
    distribution.publication = other
    distribution.save()
    changed = get(cached_server, distribution, "a.txt")
    assert changed.headers["x-pulp-cache"] == "MISS"
    distribution.delete()
    assert get(cached_server, distribution, "a.txt").status_code == 404


def test_invalidated_when_the_guard_goes(cached_server, unique):
    guard = HeaderContentGuard.objects.create(name=f"g-{unique}", header_name="x-key",
                                              header_value="k")
    distribution, _ = published(unique, {"a.txt": b"guarded"}, content_guard=guard)
    key = {"X-Key": base64.b64encode(b"k").decode()}
    allowed = [get(cached_server, distribution, "a.txt", headers=key) for _ in range(2)]
    assert [r.headers["x-pulp-cache"] for r in allowed] == ["MISS", "HIT"]
    # The guard is checked on every request, hit or not.
    assert get(cached_server, distribution, "a.txt").status_code == 403
    guard.delete()
    assert get(cached_server, distribution, "a.txt").status_code == 200


def test_unguarded_hits_need_no_database(cached_server, redis_server, unique):
    """The event-loop lookup answers a hit without a single query."""
    from pulp_content_asgi.cache.lookup import CachedResolver
    from pulp_content_asgi.cache.store import RedisCache
    from pulp_content_asgi.http import paths
    from pulp_content_asgi.request import ContentRequest
    from tests.resolve import scope

    distribution, _ = published(unique, {"big.bin": os.urandom(300_000)})
    for _ in range(2):
        get(cached_server, distribution, "big.bin")
    path = f"/pulp/content/{distribution.base_path}/big.bin"
    request_scope = {**scope(path), "extensions": {"http.response.pathsend": {}}}
    target = paths.locate(path, settings.CONTENT_PATH_PREFIX, False)
    request = ContentRequest(request_scope, path, target.path, None)
    cache = RedisCache(0.25, 5.0, 600)
    with CaptureQueriesContext(connection) as queries:
        hit, _ = asyncio.run(CachedResolver(cache, pathsend=True).on_loop(request, target))
    assert hit is not None and hit.cache == "HIT"
    assert len(queries) == 0


def test_entries_are_shared_with_pulpcore_content(cached_server, cache_settings, unique):
    """Both apps read what the other cached (one Redis during a migration)."""
    distribution, _ = published(unique, {"ours.txt": b"ours", "theirs.txt": b"theirs"})
    argv = [os.path.join(BIN, "pulpcore-content"), "--bind", "127.0.0.1:{port}",
            "--workers", "1"]
    legacy = start_server(argv, env=cache_settings)
    try:
        assert get(cached_server, distribution, "ours.txt").headers["x-pulp-cache"] == "MISS"
        theirs = get(legacy, distribution, "ours.txt")
        assert theirs.headers.get("x-pulp-cache") == "HIT" and theirs.content == b"ours"
        assert get(legacy, distribution, "theirs.txt").headers.get("x-pulp-cache") == "MISS"
        ours = get(cached_server, distribution, "theirs.txt")
        assert ours.headers["x-pulp-cache"] == "HIT" and ours.content == b"theirs"
    finally:
        stop_server(legacy)


def test_invalidated_by_a_new_repository_version_and_by_reclaim(cached_server, unique):
    distribution, repo = published(unique, {"a.txt": b"one"}, repository=None)
    distribution.repository = repo
    distribution.save()
    for _ in range(2):
        get(cached_server, distribution, "a.txt")
    data.add_files(repo, {"b.txt": b"two"})  # Repository.new_version() invalidates
    assert get(cached_server, distribution, "a.txt").headers["x-pulp-cache"] == "MISS"
    assert get(cached_server, distribution, "a.txt").headers["x-pulp-cache"] == "HIT"
    repo.invalidate_cache(everything=True)  # what the reclaim task calls
    assert get(cached_server, distribution, "a.txt").headers["x-pulp-cache"] == "MISS"


def test_invalidated_when_the_remote_goes(cached_server, unique):
    from pulp_file.app.models import FileRemote

    remote = FileRemote.objects.create(name=f"r-{unique}", url="http://127.0.0.1:9/")
    distribution, _ = published(unique, {"a.txt": b"one"}, remote=remote)
    for _ in range(2):
        get(cached_server, distribution, "a.txt")
    remote.delete()
    assert get(cached_server, distribution, "a.txt").headers["x-pulp-cache"] == "MISS"


def test_a_saved_on_demand_download_is_cached(cached_server, unique):
    from tests.test_ondemand_e2e import content_artifact, on_demand
    from tests.upstream import Upstream

    upstream = Upstream().start()
    try:
        blob = os.urandom(100_000)
        distribution, prefix, repo = on_demand(upstream, {"od.bin": blob})
        first = get(cached_server, distribution, "od.bin")
        assert first.content == blob and "x-pulp-cache" not in first.headers
        # Saved and cached before the first response ended: the very next request hits.
        assert content_artifact(repo, "od.bin").artifact_id is not None
        second = get(cached_server, distribution, "od.bin")
        assert second.headers["x-pulp-cache"] == "HIT" and second.content == blob
        assert upstream.hits[prefix + "od.bin"] == 1
    finally:
        upstream.stop()


def test_a_request_joining_a_small_download_is_answered_from_the_cache(cached_server):
    """pulpcore's test_full_workflow: a client that reads only the headers of an on-demand
    response and leaves, then the next request: a HIT (it waits for the save, as all of
    a small file's bytes wait for verification anyway)."""
    from tests.test_ondemand_e2e import on_demand
    from tests.upstream import Behaviour, Upstream

    upstream = Upstream().start()
    try:
        blob = os.urandom(200_000)
        distribution, prefix, _ = on_demand(upstream, {"join.bin": blob})
        upstream.behaviour[prefix + "join.bin"] = Behaviour(chunk_delay=0.1)
        target = cached_server.url(f"/pulp/content/{distribution.base_path}/join.bin")
        with httpx.stream("GET", target, timeout=30) as first:
            assert first.status_code == 200 and "x-pulp-cache" not in first.headers
        second = httpx.get(target, timeout=30)  # the download is still running
        assert second.headers["x-pulp-cache"] == "HIT"
        assert second.content == blob
        assert upstream.hits[prefix + "join.bin"] == 1
    finally:
        upstream.stop()


# Last: it restarts the Redis the module's other servers use.
def test_redis_outage_is_invisible_to_clients(cache_settings, redis_server, unique):
    distribution, _ = published(unique, {"a.txt": b"alpha"})
    running = content_app("granian", env=cache_settings)
    try:
        assert get(running, distribution, "a.txt").headers["x-pulp-cache"] == "MISS"
        redis_server.stop()
        started = time.monotonic()
        for _ in range(5):
            response = get(running, distribution, "a.txt")
            assert response.status_code == 200 and response.content == b"alpha"
            assert "x-pulp-cache" not in response.headers
        assert time.monotonic() - started < 10
        redis_server.start()
        time.sleep(6)  # past CONTENT_ASGI_CACHE_RETRY
        statuses = [get(running, distribution, "a.txt").headers.get("x-pulp-cache")
                    for _ in range(2)]
        assert statuses == ["MISS", "HIT"]
    finally:
        stop_server(running)
        if redis_server.process is None:
            redis_server.start()
