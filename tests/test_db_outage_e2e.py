"""The content app survives its database: a private PostgreSQL cluster owned by this test
is stopped and started under a stream of requests."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from pulp_content_asgi.devtools.pgcluster import BINDIR, Cluster
from tests.helpers import DEADLINE, content_app, stop_server, wait_for


@pytest.fixture(scope="module")
def cluster():
    assert BINDIR, "PostgreSQL's server binaries are missing: dev/database.sh installs them"
    pg = Cluster()
    pg.init()
    pg.start()
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(pg.port), "PGUSER": "postgres"}
    settings_root = os.path.join(pg.root, "pulp")
    script = (
        "import os, sys\n"
        "from pulp_content_asgi.devtools import settings as s\n"
        "s.ensure_database('pulp')\n"
        f"print(s.write({settings_root!r}, 'pulp'))\n")
    settings_path = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                   capture_output=True, text=True).stdout.strip()
    env["PULP_SETTINGS"] = settings_path
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "pulpcore-manager"),
                    "migrate", "--noinput"], env=env, check=True, capture_output=True)
    build = (
        "from pulp_content_asgi import bootstrap; bootstrap.setup()\n"
        "from pulp_content_asgi.devtools import data\n"
        "repo = data.repository('outage', {'f.txt': b'survives'})\n"
        "data.distribute('outage', publication=data.publish(repo.latest_version()))\n")
    subprocess.run([sys.executable, "-c", build], env=env, check=True, capture_output=True)
    yield pg, env
    pg.stop()
    pg.remove()


def private_env(env: dict[str, str], **settings: str) -> dict[str, str]:
    """The server's environment: the private cluster's settings plus ``PULP_*`` ones."""
    chosen = {k: env[k] for k in ("PULP_SETTINGS", "PGHOST", "PGPORT")}
    return {**chosen, **{f"PULP_{k}": v for k, v in settings.items()}}


def test_outage_gives_503_then_recovers_without_restart(cluster):
    pg, env = cluster
    running = content_app(env=private_env(env, CONTENT_ASGI_DB_POOL_TIMEOUT="2"))
    url = running.url("/pulp/content/outage/f.txt")
    try:
        assert httpx.get(url).content == b"survives"
        pg.stop()
        down = [httpx.get(url, timeout=30) for _ in range(3)]
        assert {r.status_code for r in down} == {503}
        assert all(r.headers["retry-after"] for r in down)
        assert "database is unavailable" in down[0].text
        pg.start()
        statuses: list[int] = []

        def served() -> bool:
            statuses.append(httpx.get(url, timeout=60).status_code)
            return statuses[-1] == 200

        assert wait_for(served, DEADLINE, interval=0.2), statuses
        assert set(statuses) <= {503, 200}, statuses  # never a 500 while it recovers
        after = [httpx.get(url).status_code for _ in range(20)]
        assert after == [200] * 20  # no stale connections left behind
        assert running.process.poll() is None  # recovered by itself, no restart
    finally:
        stop_server(running)


def test_heartbeat_gives_up_after_the_ttl_and_the_worker_exits(cluster):
    """Like pulpcore-content: a worker that cannot beat for CONTENT_APP_TTL exits (3)."""
    pg, env = cluster
    running = content_app("uvicorn", env=private_env(env, CONTENT_APP_TTL="2",
                                                     CONTENT_ASGI_DB_POOL_TIMEOUT="0.5"))
    try:
        pg.stop()
        assert running.process.wait(DEADLINE) == 3
        assert "failed to write a heartbeat" in running.log()
    finally:
        stop_server(running)
        pg.start()


def test_health_says_which_dependency_is_down(cluster):
    pg, env = cluster
    running = content_app(env=private_env(env, CONTENT_ASGI_DB_POOL_TIMEOUT="1"))
    health = running.url("/pulp/content-asgi/health/")
    try:
        assert httpx.get(health).json()["database"] == "ok"
        pg.stop()
        down = httpx.get(health, timeout=30)
        assert down.status_code == 503 and down.json()["database"] == "unavailable"
        # Pulp's readiness probe (HEAD on the prefix) follows the database once its last
        # answer (kept readiness.TTL seconds) has expired (test_readiness_e2e.py).
        probes: list[httpx.Response] = []
        assert wait_for(lambda: probes.append(
            httpx.head(running.url("/pulp/content/"), timeout=30)) or
            probes[-1].status_code != 200)
        assert probes[-1].status_code == 503 and probes[-1].headers["retry-after"]
    finally:
        stop_server(running)
        pg.start()
