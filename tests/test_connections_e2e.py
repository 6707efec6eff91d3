"""PostgreSQL connections stay bounded: hundreds of concurrent downloads hold none, and a
worker whose connections are all busy answers 503 after a bounded wait."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import httpx
import psycopg
from django.conf import settings

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import family
from tests.conftest import content_app, stop_server


def app_connections(server_pid: int) -> int:
    """Connections of this server's workers (they are named ``pulp-content-asgi[<pid>]``)."""
    names = [f"pulp-content-asgi[{pid}]" for pid in family(server_pid)]
    db = settings.DATABASES["default"]
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres",
                         autocommit=True) as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                            "application_name = ANY(%s)", (db["NAME"], names)).fetchone()
        return int(row[0])


def test_500_slow_downloads_never_exceed_the_pool(unique):
    blob = os.urandom(256 * 1024)
    repo = data.repository(f"slow-{unique}", {"s.bin": blob})
    distribution = data.distribute(f"slow-{unique}",
                                   publication=data.publish(repo.latest_version()))
    pool = 4
    running = content_app("uvicorn", env={"PULP_CONTENT_ASGI_DB_CONNECTIONS": str(pool)})
    url = running.url(f"/pulp/content/{distribution.base_path}/s.bin")
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], app_connections(running.pid))
            time.sleep(0.05)

    async def slow_reader(client: httpx.AsyncClient) -> int:
        received = 0
        async with client.stream("GET", url, timeout=120) as response:
            async for chunk in response.aiter_raw(16384):
                received += len(chunk)
                await asyncio.sleep(0.01)
        return received

    async def main() -> list[int]:
        limits = httpx.Limits(max_connections=600, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits) as client:
            return await asyncio.gather(*(slow_reader(client) for _ in range(500)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        sizes = asyncio.run(main())
    finally:
        done.set()
        sampler.join()
        stop_server(running)
    assert sizes == [len(blob)] * 500
    assert 0 < peak[0] <= pool


def test_busy_connections_mean_a_bounded_wait_then_503(unique):
    """RBAC guards hash Basic-auth passwords (~0.3 s each) on the ORM thread."""
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
        async with httpx.AsyncClient(auth=(user.username, "pw"), timeout=60) as client:
            return await asyncio.gather(*(client.get(url) for _ in range(12)))

    try:
        responses = asyncio.run(main())
    finally:
        stop_server(running)
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"]
    assert "database is unavailable" in refused.text


def test_idle_connections_are_released(unique):
    """pulpcore#2816: connections opened for a burst do not linger."""
    repo = data.repository(f"idle-{unique}", {"i.txt": b"idle"})
    distribution = data.distribute(f"idle-{unique}",
                                   publication=data.publish(repo.latest_version()))
    running = content_app("uvicorn", env={"PULP_CONTENT_ASGI_DB_MAX_IDLE": "1"})
    url = running.url(f"/pulp/content/{distribution.base_path}/i.txt")

    async def burst() -> None:
        async with httpx.AsyncClient() as client:
            await asyncio.gather(*(client.get(url) for _ in range(40)))

    try:
        asyncio.run(burst())
        peak = app_connections(running.pid)
        deadline = time.monotonic() + 20
        while app_connections(running.pid) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert peak > 1
        assert app_connections(running.pid) <= 1  # down to the pool's minimum
    finally:
        stop_server(running)
