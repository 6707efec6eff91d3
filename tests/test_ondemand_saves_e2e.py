"""On-demand saves interrupted (issue #17): PostgreSQL crashed and Redis killed at the
critical points of a save, on a private cluster and a private Redis this module owns.

The save is stopped at a known point by PostgreSQL itself, never by the clock: the test
holds a row lock on the content artifact, so the save waits in its ``UPDATE`` after the
file was placed and the artifact row inserted (``pg_stat_activity`` says when it waits);
for the commit whose acknowledgement is lost, a relay between the app and PostgreSQL
(``tests/pgrelay.py``) forwards the save's ``COMMIT``, reads PostgreSQL's answer and
closes the connection instead of passing it on.
Afterwards, whatever happened: every artifact row has its whole file, every file in
storage has its row, and the content artifact is linked to the right artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from tests.helpers import (
    DEADLINE,
    PrivateRedis,
    cluster_server_env,
    content_app,
    migrated_cluster,
    stop_server,
    unique_name,
    wait_for,
)
from tests.pgrelay import PgRelay
from tests.upstream import Behaviour

# Issue #17's faults: also run by `make adversarial` (tests/adversarial.py).
pytestmark = pytest.mark.adversarial

#: What the app logs when a save cut off by the database completes on a later attempt.
SAVED_AGAIN = "now that the database is back"

BUILD = """
import sys
from pulp_content_asgi import bootstrap
bootstrap.setup()
from pulp_file.app.models import FileRemote
from pulpcore.app.models import ContentArtifact
from pulp_content_asgi.devtools import data
base, file_url, blob_path, name = sys.argv[1:5]
with open(blob_path, "rb") as blob_file:
    blob = blob_file.read()
remote = FileRemote.objects.create(name=name, url=base, policy="on_demand")
repo = data.repository(name, {"f.bin": data.OnDemand(file_url, blob)}, remote=remote)
data.distribute(name, publication=data.publish(repo.latest_version()))
version = repo.latest_version()
print(ContentArtifact.objects.get(relative_path="f.bin", content__in=version.content).pk)
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, dict[str, str]]]:
    pg, env = migrated_cluster()
    yield pg, env
    with contextlib.suppress(subprocess.CalledProcessError):
        pg.stop()
    pg.remove()


@pytest.fixture(scope="module")
def redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(cluster, redis) -> Iterator[Any]:
    """One granian worker on the private cluster, with the response cache in the private
    Redis (the save stores the next request's cache entry). Its heartbeat tolerates the
    outages (the worker's exit after CONTENT_APP_TTL is test_db_outage_e2e's subject)."""
    _, env = cluster
    running = content_app(env=cluster_server_env(
        env, CONTENT_ASGI_DB_POOL_TIMEOUT="2", CONTENT_APP_TTL="300", CACHE_ENABLED="true",
        REDIS_HOST="127.0.0.1", REDIS_PORT=str(redis.port)))
    yield running
    stop_server(running)


def media_root(env: dict[str, str]) -> str:
    return os.path.join(os.path.dirname(env["PULP_SETTINGS"]), "media")


def working_files(env: dict[str, str]) -> list[str]:
    """Files the app left in its WORKING_DIRECTORY (spools, downloads), its own hidden
    spool-area id aside."""
    where = os.path.join(os.path.dirname(env["PULP_SETTINGS"]), "tmp")
    return sorted(f for f in os.listdir(where) if not f.startswith("."))


def connect(pg: Any, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="pulp",
                           autocommit=autocommit)


def sql(pg: Any, query: str, params: tuple = ()) -> list[tuple]:
    with connect(pg) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description is not None else []


def answers(pg: Any) -> bool:
    try:
        sql(pg, "SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


class OnDemandFile:
    """A published on-demand file of random bytes on the private cluster."""

    def __init__(self, pg: Any, env: dict[str, str], upstream: Any, size: int) -> None:
        self.blob = os.urandom(size)
        self.sha256 = hashlib.sha256(self.blob).hexdigest()
        self.name = unique_name()
        self.upstream_path = f"{self.name}/f.bin"
        upstream.files[self.upstream_path] = self.blob
        with tempfile.NamedTemporaryFile() as blob_file:
            blob_file.write(self.blob)
            blob_file.flush()
            self.ca = subprocess.run(
                [sys.executable, "-c", BUILD, upstream.url(f"{self.name}/"),
                 upstream.url(self.upstream_path), blob_file.name, self.name],
                env=env, check=True, capture_output=True, text=True).stdout.strip()
        self.pg = pg
        self.stored = os.path.join(media_root(env), "artifact", self.sha256[:2],
                                   self.sha256[2:])

    def url(self, server: Any) -> str:
        return server.url(f"/pulp/content/{self.name}/f.bin")

    def linked(self) -> bool:
        """Whether its content artifact is linked to the artifact of its bytes."""
        try:
            rows = sql(self.pg, "SELECT a.sha256 FROM core_contentartifact ca JOIN "
                       "core_artifact a ON a.pulp_id = ca.artifact_id "
                       "WHERE ca.pulp_id = %s::uuid", (self.ca,))
        except psycopg.OperationalError:
            return False
        return rows == [(self.sha256,)]


def problems(pg: Any, env: dict[str, str]) -> list[str]:
    """Everything that is half-saved: rows without their whole file, files without rows,
    content artifacts linked to an artifact of other bytes than their remote promised."""
    root = media_root(env)
    found: list[str] = []
    named = set()
    for sha256, name, size in sql(pg, "SELECT sha256, file, size FROM core_artifact"):
        named.add(name)
        path = os.path.join(root, name)
        if not os.path.exists(path):
            found.append(f"row without its file: {name}")
            continue
        with open(path, "rb") as stored:
            if hashlib.sha256(stored.read()).hexdigest() != sha256:
                found.append(f"file not whole: {name} ({os.path.getsize(path)}/{size} bytes)")
    for directory, _, files in os.walk(os.path.join(root, "artifact")):
        for file in files:
            name = os.path.relpath(os.path.join(directory, file), root)
            if name not in named:
                found.append(f"file without its row: {name}")
    mislinked = sql(pg, "SELECT ca.pulp_id FROM core_contentartifact ca JOIN core_artifact a "
                    "ON a.pulp_id = ca.artifact_id JOIN core_remoteartifact ra ON "
                    "ra.content_artifact_id = ca.pulp_id WHERE ra.sha256 <> a.sha256")
    found += [f"content artifact linked to other bytes: {row[0]}" for row in mislinked]
    return found


def waiting(pg: Any, event_type: str, event: str | None, statement: str) -> bool:
    """Whether a session waits on ``event_type``/``event`` in a statement starting with
    ``statement`` (the app's save, held where the test wants it)."""
    rows = sql(pg, "SELECT wait_event, query FROM pg_stat_activity WHERE wait_event_type = %s",
               (event_type,))
    return any((event is None or got == event) and query.lstrip().upper().startswith(statement)
               for got, query in rows)


@contextlib.contextmanager
def row_held(pg: Any, content_artifact: str) -> Iterator[Callable[[], None]]:
    """Hold the content artifact's row: the app's save waits in its ``UPDATE`` until the
    yielded ``release()`` (or until PostgreSQL goes away)."""
    conn = connect(pg, autocommit=False)
    # This transaction's own commit must not wait for the (absent) standby.
    conn.execute("SET LOCAL synchronous_commit = local")
    conn.execute("SELECT 1 FROM core_contentartifact WHERE pulp_id = %s::uuid FOR UPDATE",
                 (content_artifact,))
    try:
        yield conn.commit
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.close()


def in_background(request: Callable[[], httpx.Response]) -> Future[httpx.Response]:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(request)
    pool.shutdown(wait=False)
    return future


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=120)


def restart(pg: Any) -> None:
    pg.start()
    assert wait_for(lambda: answers(pg))


def assert_down_answers_503(url: str) -> None:
    down = httpx.get(url, timeout=60)
    assert down.status_code == 503, down.text
    assert down.headers["retry-after"]


def test_postgresql_crashing_after_the_file_is_placed_loses_nothing(cluster, app, upstream):
    """The file is in storage and the artifact row inserted, not committed, when PostgreSQL
    crashes. pulpcore (and this app before #17) moved the file into storage first and
    could not retry once the database was back: a file without its row, and the clients
    cut off. Now the clients get the verified bytes, and the save completes once
    PostgreSQL is back, with no restart."""
    pg, env = cluster
    item = OnDemandFile(pg, env, upstream, 2 * 1024 * 1024 + 5)
    with row_held(pg, item.ca):
        response = in_background(lambda: get(item.url(app)))
        assert wait_for(lambda: waiting(pg, "Lock", None, 'UPDATE "CORE_CONTENTARTIFACT"'))
        # The critical point: the file is in place, its row not committed.
        assert os.path.exists(item.stored)
        assert sql(pg, "SELECT 1 FROM core_artifact WHERE sha256 = %s", (item.sha256,)) == []
        pg.kill()
    try:
        assert_down_answers_503(item.url(app))
        first = response.result(timeout=DEADLINE)
        assert first.status_code == 200 and first.content == item.blob
    finally:
        restart(pg)
    assert wait_for(item.linked)
    assert problems(pg, env) == []
    again = get(item.url(app))
    assert again.status_code == 200 and again.content == item.blob
    assert again.headers["content-length"] == str(len(item.blob))  # from storage
    assert upstream.hits[item.upstream_path] == 1
    assert app.process.poll() is None  # recovered without a restart
    assert wait_for(lambda: working_files(env) == []), working_files(env)


@pytest.fixture(scope="module")
def relay(cluster) -> Iterator[PgRelay]:
    pg, _ = cluster
    running = PgRelay(pg.port)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def relayed_app(cluster, relay) -> Iterator[Any]:
    """One granian worker whose every database connection goes through :class:`PgRelay`
    (the test's own queries go to PostgreSQL directly)."""
    _, env = cluster
    running = content_app(env=cluster_server_env(
        env, CONTENT_ASGI_DB_POOL_TIMEOUT="2", CONTENT_APP_TTL="300",
        DATABASES__default__PORT=str(relay.port)))
    yield running
    stop_server(running)


def artifact_rows(pg: Any, sha256: str) -> int:
    return sql(pg, "SELECT count(*) FROM core_artifact WHERE sha256 = %s", (sha256,))[0][0]


def partial_copies(env: dict[str, str]) -> list[str]:
    """Copies into storage that never became a file (``.partial-`` names)."""
    return [os.path.join(d, f) for d, _, files in os.walk(media_root(env)) for f in files
            if f.startswith(".partial-")]


@pytest.mark.parametrize("database", ["answers-the-retry", "gone-until-later"])
def test_a_commit_whose_acknowledgement_is_lost_keeps_its_file(cluster, relay, relayed_app,
                                                               upstream, database):
    """PostgreSQL commits the save, and the connection dies before the app reads the
    acknowledgement (:class:`PgRelay` forwards the ``COMMIT``, reads PostgreSQL's
    ``CommandComplete COMMIT``, withholds it and closes both sockets). As far as the app
    knows the save failed, yet its rows are committed. A save that removed its file when
    the commit failed would leave a row without its file; this one keeps the file and
    runs again, finds its rows and links to them: one artifact, its file whole.

    ``answers-the-retry``: the database answers at once, so the save's unit is retried
    once on a fresh connection (``db.run``). ``gone-until-later``: the relay refuses
    connections from the lost commit on, so the save waits for the database
    (``Fetch._save_when_back``) while requests are answered 503; then it is let back."""
    pg, env = cluster
    item = OnDemandFile(pg, env, upstream, 1024 * 1024 + 3)
    log_before = len(relayed_app.log())
    relay.lost.clear()
    relay.arm(b'INSERT INTO "core_artifact"', then_refuse=database == "gone-until-later")
    try:
        first = get(item.url(relayed_app))
        assert first.status_code == 200 and first.content == item.blob
        assert relay.lost.wait(DEADLINE)
        # PostgreSQL answered the COMMIT: the rows are there, the app never heard so.
        assert relay.committed(), relay.reply
        assert item.linked()
        assert problems(pg, env) == []  # the file stayed with its committed row
        if database == "gone-until-later":
            assert_down_answers_503(item.url(relayed_app))
            relay.accept()
            assert wait_for(lambda: SAVED_AGAIN in relayed_app.log()[log_before:])
        else:
            assert wait_for(lambda: "retrying once" in relayed_app.log()[log_before:])
    finally:
        relay.accept()
    log = relayed_app.log()[log_before:]
    assert "Traceback" not in log, log
    # The retry found the rows: nothing duplicated, nothing removed, nothing half-made.
    assert item.linked()
    assert artifact_rows(pg, item.sha256) == 1
    assert problems(pg, env) == []
    assert partial_copies(env) == []
    again = get(item.url(relayed_app))
    assert again.status_code == 200 and again.content == item.blob
    assert again.headers["content-length"] == str(len(item.blob))  # from storage
    assert upstream.hits[item.upstream_path] == 1
    assert relayed_app.process.poll() is None
    assert wait_for(lambda: working_files(env) == []), working_files(env)


def test_postgresql_crashing_during_the_download_loses_nothing(cluster, app, upstream):
    """Down before the save even starts (the upstream holds the body at a gate): the
    download goes on, the clients get it whole, the save waits for the database."""
    pg, env = cluster
    item = OnDemandFile(pg, env, upstream, 1024 * 1024 + 7)
    gate = threading.Event()
    upstream.behaviour[item.upstream_path] = Behaviour(gate=gate, gate_after=65536)
    response = in_background(lambda: get(item.url(app)))
    try:
        assert wait_for(lambda: upstream.hits[item.upstream_path] == 1)
        pg.kill()
        gate.set()
        assert_down_answers_503(item.url(app))
        first = response.result(timeout=DEADLINE)
        assert first.status_code == 200 and first.content == item.blob
    finally:
        gate.set()
        restart(pg)
    assert wait_for(item.linked)
    assert problems(pg, env) == []
    assert upstream.hits[item.upstream_path] == 1
    # Before #17 the downloaded file stayed behind in WORKING_DIRECTORY.
    assert wait_for(lambda: working_files(env) == []), working_files(env)


def test_redis_killed_during_the_save_loses_nothing(cluster, app, redis, upstream):
    """The save stores the next request's cache entry in Redis, inside its transaction:
    Redis gone at that moment costs the cache entry, never the save."""
    pg, env = cluster
    item = OnDemandFile(pg, env, upstream, 1024 * 1024 + 11)
    try:
        with row_held(pg, item.ca) as release:
            response = in_background(lambda: get(item.url(app)))
            assert wait_for(lambda: waiting(pg, "Lock", None, 'UPDATE "CORE_CONTENTARTIFACT"'))
            redis.stop()
            release()
        first = response.result(timeout=DEADLINE)
        assert first.status_code == 200 and first.content == item.blob
        assert wait_for(item.linked)
        assert problems(pg, env) == []
        without = get(item.url(app))  # served from storage, without the cache
        assert without.status_code == 200 and without.content == item.blob
    finally:
        redis.start()
    statuses: list[int] = []
    assert wait_for(lambda: statuses.append(get(item.url(app)).status_code) or
                    statuses[-1] == 200)
    assert set(statuses) == {200}
    assert upstream.hits[item.upstream_path] == 1
    assert app.process.poll() is None
