"""PostgreSQL connections stay bounded: hundreds of concurrent downloads hold none, and a
worker whose connections are all busy makes requests wait for one: a busy pool is not an
outage, so every request is answered 200 with its whole body."""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time

import httpx
import psycopg
from django.conf import settings

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import family
from tests.helpers import DEADLINE, content_app, stop_server, wait_for


def app_connections(server_pid: int) -> int:
    """Connections of this server's workers (they are named ``pulp-content-asgi[<pid>]``)."""
    names = [f"pulp-content-asgi[{pid}]" for pid in family(server_pid)]
    db = settings.DATABASES["default"]
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres",
                         autocommit=True) as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                            "application_name = ANY(%s)", (db["NAME"], names)).fetchone()
        return int(row[0])


class Peak:
    """The most connections a server's workers held while the ``with`` block ran
    (sampled from pg_stat_activity by a thread, as often as it can)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.value = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.value = max(self.value, app_connections(self.server_pid))
            time.sleep(0.02)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def test_500_slow_downloads_never_exceed_the_pool(unique):
    blob = os.urandom(256 * 1024)
    repo = data.repository(f"slow-{unique}", {"s.bin": blob})
    distribution = data.distribute(f"slow-{unique}",
                                   publication=data.publish(repo.latest_version()))
    pool = 4
    running = content_app("uvicorn", env={"PULP_CONTENT_ASGI_DB_CONNECTIONS": str(pool)})
    url = running.url(f"/pulp/content/{distribution.base_path}/s.bin")

    async def slow_reader(client: httpx.AsyncClient) -> tuple[int, int]:
        received = 0
        async with client.stream("GET", url, timeout=300) as response:
            async for chunk in response.aiter_raw(16384):
                received += len(chunk)
                await asyncio.sleep(0.01)
        return response.status_code, received

    async def main() -> list[tuple[int, int]]:
        limits = httpx.Limits(max_connections=600, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits) as client:
            return await asyncio.gather(*(slow_reader(client) for _ in range(500)))

    try:
        with Peak(running.pid) as peak:
            answers = asyncio.run(main())
    finally:
        stop_server(running)
    assert answers == [(200, len(blob))] * 500
    assert 0 < peak.value <= pool


def test_busy_connections_make_requests_wait_not_fail(unique):
    """RBAC guards hash Basic-auth passwords (~0.3 s each) on the ORM thread: with one
    connection, 12 such requests queue for ~4 s, far past a 0.5 s pool timeout, and all
    are served (psycopg-pool's timeout only fires when PostgreSQL cannot be reached)."""
    from django.contrib.auth import get_user_model
    from pulpcore.app.models import RBACContentGuard
    from pulpcore.app.role_util import assign_role

    guard = RBACContentGuard.objects.create(name=f"busy-{unique}")
    user = get_user_model().objects.create_user(f"busy-{unique}", password="pw")
    assign_role("core.rbaccontentguard_downloader", user, guard)
    repo = data.repository(f"busy-{unique}", {"b.txt": b"busy"})
    distribution = data.distribute(f"busy-{unique}", content_guard=guard,
                                   publication=data.publish(repo.latest_version()))
    running = content_app(env={"PULP_CONTENT_ASGI_DB_CONNECTIONS": "1",
                               "PULP_CONTENT_ASGI_DB_POOL_TIMEOUT": "0.5"})
    url = running.url(f"/pulp/content/{distribution.base_path}/b.txt")

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(auth=(user.username, "pw"), timeout=300) as client:
            return await asyncio.gather(*(client.get(url) for _ in range(12)))

    try:
        responses = asyncio.run(main())
    finally:
        stop_server(running)
    assert [(r.status_code, r.content) for r in responses] == [(200, b"busy")] * 12


def test_a_burst_on_one_worker_is_served_completely(unique):
    """1,000 clients arriving at once on one granian worker with 2 connections (the
    issue's measurement got 310 x 503 "database unavailable" with PostgreSQL healthy)."""
    blob = os.urandom(64 * 1024 + 1)  # streamed after the ORM hop, not inlined
    repo = data.repository(f"burst-{unique}", {"f.bin": blob})
    distribution = data.distribute(f"burst-{unique}",
                                   publication=data.publish(repo.latest_version()))
    running = content_app("granian", env={"PULP_CONTENT_ASGI_DB_CONNECTIONS": "2",
                                          "PULP_CONTENT_ASGI_DB_POOL_TIMEOUT": "1"})
    url = running.url(f"/pulp/content/{distribution.base_path}/f.bin")

    async def one(client: httpx.AsyncClient) -> tuple[int, bytes]:
        response = await client.get(url)
        return response.status_code, response.content

    async def main() -> list[tuple[int, bytes]]:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=300) as client:
            return await asyncio.gather(*(one(client) for _ in range(1000)))

    try:
        answers = asyncio.run(main())
    finally:
        stop_server(running)
    statuses = collections.Counter(status for status, _ in answers)
    assert statuses == {200: 1000}
    assert all(body == blob for _, body in answers)


def test_idle_connections_are_released(unique):
    """pulpcore#2816: connections opened for a burst do not linger."""
    repo = data.repository(f"idle-{unique}", {"i.txt": b"idle"})
    distribution = data.distribute(f"idle-{unique}",
                                   publication=data.publish(repo.latest_version()))
    running = content_app("uvicorn", env={"PULP_CONTENT_ASGI_DB_MAX_IDLE": "1"})
    url = running.url(f"/pulp/content/{distribution.base_path}/i.txt")

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=120) as client:
            responses = await asyncio.gather(*(client.get(url) for _ in range(40)))
        return [r.status_code for r in responses]

    try:
        with Peak(running.pid) as peak:
            statuses = asyncio.run(burst())
        assert statuses == [200] * 40
        assert peak.value > 1
        # Down to the pool's minimum once idle for more than max_idle (1 s).
        assert wait_for(lambda: app_connections(running.pid) <= 1, DEADLINE)
    finally:
        stop_server(running)
