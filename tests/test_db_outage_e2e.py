"""The content app survives its database: a private PostgreSQL cluster owned by this test
is stopped and started under a stream of requests, on the content path and on a plugin's
live route (pulp_container's blob route)."""

from __future__ import annotations

import hashlib
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from pulp_content_asgi.devtools.pgcluster import Cluster
from tests import adversarial
from tests.helpers import DEADLINE, content_app, migrated_cluster, stop_server, wait_for

# Issue #17's faults: also run by `make adversarial` (tests/adversarial.py).
pytestmark = pytest.mark.adversarial

FILE = "/pulp/content/outage/f.txt"
BLOB = b"a layer that survives"
DIGEST = f"sha256:{hashlib.sha256(BLOB).hexdigest()}"
LAYER = f"/pulp/container/registry/image/blobs/{DIGEST}"
BODIES = {FILE: b"survives", LAYER: BLOB}
CLIENTS = 32
# A request that waited for psycopg-pool's timeout (POOL_TIMEOUT) instead of being
# answered would fail on the client's (CLIENT_TIMEOUT): the bound tells hanging from
# answering, far from either figure, not how fast an answer is.
POOL_TIMEOUT = "30"
CLIENT_TIMEOUT = 10.0

_BUILD = f"""
from pulp_content_asgi import bootstrap; bootstrap.setup()
from pulp_container.app.models import Blob, ContainerDistribution, ContainerRepository
from pulpcore.app.models import Content, ContentArtifact
from pulp_content_asgi.devtools import data
repo = data.repository('outage', {{'f.txt': {BODIES[FILE]!r}}})
data.distribute('outage', publication=data.publish(repo.latest_version()))
blob = Blob.objects.create(digest={DIGEST!r})
ContentArtifact.objects.create(content=blob, relative_path={DIGEST!r},
                               artifact=data.artifact_from_bytes({BLOB!r}))
registry = ContainerRepository.objects.create(name='outage-registry')
with registry.new_version() as version:
    version.add_content(Content.objects.filter(pk=blob.pk))
ContainerDistribution.objects.create(name='outage-registry', base_path='registry/image',
                                     repository=registry)
"""


@pytest.fixture(scope="module")
def cluster():
    pg, env = migrated_cluster()
    built = subprocess.run([sys.executable, "-c", _BUILD], env=env, capture_output=True,
                           text=True)
    assert built.returncode == 0, built.stderr
    yield pg, env
    pg.stop()
    pg.remove()


def private_env(env: dict[str, str], **settings: str) -> dict[str, str]:
    """The server's environment: the private cluster's settings plus ``PULP_*`` ones."""
    chosen = {k: env[k] for k in ("PULP_SETTINGS", "PGHOST", "PGPORT")}
    return {**chosen, **{f"PULP_{k}": v for k, v in settings.items()}}


@dataclass(frozen=True)
class Answer:
    """One request as its client saw it (``status`` None: no answer, ``error`` says why)."""

    path: str
    started: float
    seconds: float
    status: int | None
    retry_after: str | None = None
    body: bytes = b""
    error: str = ""


class Load:
    """:data:`CLIENTS` clients, each sending one request after the other (the file and
    the blob in turn) until stopped; every answer is kept."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True)
                         for n in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _client(self, number: int) -> None:
        paths = (FILE, LAYER) if number % 2 else (LAYER, FILE)
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            sent = 0
            while not self._stop.is_set():
                path = paths[sent % 2]
                sent += 1
                started = time.monotonic()
                try:
                    response = client.get(self.server.url(path))
                except httpx.HTTPError as exc:
                    answer = Answer(path, started, time.monotonic() - started, None,
                                    error=repr(exc))
                else:
                    answer = Answer(path, started, time.monotonic() - started,
                                    response.status_code, response.headers.get("retry-after"),
                                    response.content)
                with self._lock:
                    self.answers.append(answer)

    def begun_after(self, moment: float, until: float = float("inf")) -> list[Answer]:
        """Answers to the requests sent between ``moment`` and ``until``."""
        with self._lock:
            return [a for a in self.answers if moment <= a.started < until]

    def wait_for(self, moment: float, count: int) -> bool:
        """Wait until ``count`` requests sent after ``moment`` were answered."""
        return wait_for(lambda: len(self.begun_after(moment)) >= count, DEADLINE)


def summary(answers: list[Answer]) -> str:
    seconds = [a.seconds for a in answers]
    return (f"{len(answers)} answers, median {statistics.median(seconds):.3f}s, "
            f"max {max(seconds):.3f}s")


def report(name: str, text: str) -> None:
    """Figures for the docs (pytest -s shows them; nothing asserts on them)."""
    print(f"\n[{name}] {text}")


@pytest.mark.parametrize("how", ["stop", "kill"])
@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_under_load_an_outage_is_answered_503_at_once_and_recovery_loses_nothing(cluster,
                                                                                server, how):
    """32 clients, one worker. While PostgreSQL is down every request is answered 503 with
    Retry-After, none waits for the pool's timeout (30 s; the clients give up after 10 s);
    once it accepts connections again, not one request fails. ``how``: a fast shutdown
    (``pg_ctl stop -m fast``: sessions are told, then closed) or a crash (``-m
    immediate``: every backend quits at once, mid-query, as when PostgreSQL is killed)."""
    pg, env = cluster
    running = content_app(server, env=private_env(env,
                                                  CONTENT_ASGI_DB_POOL_TIMEOUT=POOL_TIMEOUT))
    try:
        with Load(running) as load:
            began = time.monotonic()
            assert load.wait_for(began, 200)
            stopping = time.monotonic()
            pg.stop() if how == "stop" else pg.kill()
            stopped = time.monotonic()
            assert load.wait_for(stopped, 300)
            restarting = time.monotonic()
            pg.start()
            accepting = time.monotonic()
            assert load.wait_for(accepting, 600)
        everything = load.begun_after(began)
        # Answered while PostgreSQL was down (sent after it stopped, answered before it was
        # started again). A request sent just before the restart may be read by the worker
        # once PostgreSQL accepts connections again, and then rightly gets its 200.
        down = [a for a in load.begun_after(stopped, restarting)
                if a.started + a.seconds < restarting]
        straddling = [a for a in load.begun_after(stopped, accepting)
                      if a.started + a.seconds >= restarting]
        up = load.begun_after(accepting)
        # Never a 500 nor a request left hanging, even while PostgreSQL stops and starts.
        assert {a.error for a in everything} == {""}
        assert set(Counter(a.status for a in everything)) <= {200, 503}
        before = [a for a in everything if a.started + a.seconds < stopping]
        assert len(before) >= 200 and {a.status for a in before} == {200}
        assert len(down) >= 300 and Counter(a.status for a in down) == {503: len(down)}
        assert all(a.status == 503 or a.body == BODIES[a.path] for a in straddling)
        assert all(a.retry_after == "5" and b"database is unavailable" in a.body
                   for a in down)
        assert {a.path for a in down} == {FILE, LAYER} == {a.path for a in up}
        assert Counter(a.status for a in up) == {200: len(up)}
        assert all(a.body == BODIES[a.path] for a in up)
        assert running.process.poll() is None  # recovered by itself, no restart
        # One gate episode: closed once by a failed probe, opened once by one that connected
        # (it did not flap per request, and stayed closed for the whole outage).
        log = running.log()
        assert log.count("PostgreSQL is unreachable") == 1, log
        assert log.count("PostgreSQL accepts connections again") == 1, log
        served = [a.started + a.seconds for a in everything
                  if a.status == 200 and a.started + a.seconds >= restarting]
        figures = (f"while down: {summary(down)}, all 503 + Retry-After; first 200 "
                   f"{min(served) - accepting:+.2f} s after PostgreSQL accepted connections; "
                   f"after: {len(up)} requests, {sum(a.status != 200 for a in up)} failed")
        report(f"outage under load, {server}, {how}", figures)
        tally = adversarial.TALLIES["faults"].counts
        tally["requests"] += len(everything)
        tally.update(f"status {a.status}" for a in everything)
        adversarial.record_fault(f"PostgreSQL {'stopped' if how == 'stop' else 'killed'} "
                                 f"under load ({CLIENTS} clients, one {server} worker)",
                                 figures)
    finally:
        stop_server(running)
        ensure_up(pg)


def ensure_up(pg: Cluster) -> None:
    """Start the cluster unless it runs (a failed test may have left it stopped)."""
    try:
        psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres",
                        dbname="postgres", connect_timeout=2).close()
    except psycopg.OperationalError:
        pg.start()


def _pooled(pg: Cluster) -> int:
    """The app's connections open on the cluster (bootstrap names them)."""
    with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres",
                         dbname="postgres") as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                           "LIKE 'pulp-content-asgi[%'").fetchone()
    assert row is not None
    return int(row[0])


def burst(server: Any, count: int) -> list[int]:
    """``count`` requests from :data:`CLIENTS` clients at once; their statuses."""
    def one(n: int) -> int:
        path = (FILE, LAYER)[n % 2]
        response = httpx.get(server.url(path), timeout=CLIENT_TIMEOUT)
        assert response.status_code != 200 or response.content == BODIES[path]
        return response.status_code

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(count)))


def test_connections_that_died_while_idle_cost_no_request(cluster):
    """PostgreSQL restarted while the worker was idle: every pooled connection is dead,
    and the first requests after it are all answered 200."""
    pg, env = cluster
    running = content_app(env=private_env(env, CONTENT_ASGI_DB_POOL_TIMEOUT=POOL_TIMEOUT))
    try:
        assert set(burst(running, 4 * CLIENTS)) == {200}
        held = _pooled(pg)
        assert held >= 2  # the pool grew under the burst; those connections die now
        pg.stop()
        pg.start()
        statuses = burst(running, 2 * CLIENTS)
        assert Counter(statuses) == {200: 2 * CLIENTS}
        figures = (f"{held} pooled connections died; first {len(statuses)} requests after "
                   f"the restart: {dict(Counter(statuses))}")
        report("dead pooled connections", figures)
        adversarial.record_fault("PostgreSQL restarted while the worker was idle", figures)
    finally:
        stop_server(running)
        ensure_up(pg)


def test_outage_gives_503_then_recovers_without_restart(cluster):
    """At low traffic too: 503s while down, and the very first request once PostgreSQL
    accepts connections is served (no stray 503 from a second dead connection)."""
    pg, env = cluster
    running = content_app(env=private_env(env, CONTENT_ASGI_DB_POOL_TIMEOUT="2"))
    try:
        for path in (FILE, LAYER):
            assert httpx.get(running.url(path)).content == BODIES[path]
        pg.stop()
        for path in (FILE, LAYER, FILE, LAYER):
            down = httpx.get(running.url(path), timeout=30)
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"] == "5"
            assert "database is unavailable" in down.text
        pg.start()
        after = [httpx.get(running.url(path)) for path in (FILE, LAYER) * 10]
        assert [r.status_code for r in after] == [200] * 20
        assert all(r.content == BODIES[p] for r, p in zip(after, (FILE, LAYER) * 10, strict=True))
        assert running.process.poll() is None  # recovered by itself, no restart
    finally:
        stop_server(running)
        ensure_up(pg)


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
        ensure_up(pg)


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
        ensure_up(pg)

