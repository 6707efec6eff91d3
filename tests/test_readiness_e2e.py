"""What operators' probes and caches see: ``HEAD {prefix}`` follows the database (a private
PostgreSQL cluster is really stopped), and every answer of a guarded distribution is
``Cache-Control: private``."""

from __future__ import annotations

import base64
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pulpcore.app.models import HeaderContentGuard

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.pgcluster import Cluster
from pulp_content_asgi.devtools.processes import Server
from pulp_content_asgi.entry import readiness
from tests.conftest import content_app, stop_server
from tests.helpers import migrated_cluster

PREFIX = "/pulp/content/"
BIN = os.path.dirname(sys.executable)


def _until(check: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool],
           deadline: float = 60) -> list[httpx.Response]:
    """Ask ``check`` until ``done`` holds (or ``deadline`` s pass); every answer, in order."""
    answers = [check()]
    end = time.monotonic() + deadline
    while not done(answers[-1]) and time.monotonic() < end:
        time.sleep(0.2)
        answers.append(check())
    return answers


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, dict[str, str]]]:
    """A migrated private cluster logging every statement, and the server's environment."""
    pg, env = migrated_cluster(options=("log_statement=all",))
    yield pg, {k: env[k] for k in ("PULP_SETTINGS", "PGHOST", "PGPORT")}
    pg.stop()
    pg.remove()


@pytest.fixture
def app(cluster: tuple[Cluster, dict[str, str]]) -> Iterator[tuple[Cluster, Server]]:
    """Our app (one worker) on the private cluster, which is running again afterwards."""
    pg, env = cluster
    running = content_app(env={**env, "PULP_CONTENT_ASGI_DB_POOL_TIMEOUT": "1"})
    try:
        yield pg, running
    finally:
        stop_server(running)
        if not _accepts_connections(pg):  # a failed test may have left it stopped
            pg.start()


def _accepts_connections(pg: Cluster) -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(pg.port)]
                          ).returncode == 0


def test_head_prefix_is_not_ready_while_the_database_is_down(app):
    """Pulp's readiness probe (pulp-oci-images readyz.py: ``requests.head(prefix)`` then
    ``raise_for_status()``) must fail while the database is unreachable, and pass again
    once it is back, without a restart."""
    pg, running = app
    probe = running.url(PREFIX)
    assert httpx.head(probe).status_code == 200
    pg.stop()
    down = _until(lambda: httpx.head(probe, timeout=30), lambda r: r.status_code != 200)
    assert down[-1].status_code == 503, [r.status_code for r in down]
    assert down[-1].headers["retry-after"] == "5"
    assert httpx.get(running.url("/pulp/content-asgi/health/"), timeout=30).status_code == 503
    pg.start()
    up = _until(lambda: httpx.head(probe, timeout=30), lambda r: r.status_code == 200)
    assert [r.status_code for r in up][-1] == 200
    assert {r.status_code for r in up} <= {200, 503}  # never a 500 on the way back
    assert running.process.poll() is None


def test_a_probe_storm_costs_at_most_one_query_per_ttl(app):
    """200 probes from 8 clients: the database sees one readiness query per TTL at most."""
    pg, running = app
    probe = running.url(PREFIX)

    def queries() -> int:
        return pg.log().count(readiness.STATEMENT)

    before = queries()
    assert before >= 1  # the start-up probe's check: the log does show readiness queries
    started = time.monotonic()
    with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: client.head(probe).status_code, range(200)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 200
    made = queries() - before
    # At most one check per TTL window the storm spanned, plus the window it started in
    # (0 when the start-up probe's answer was still fresh); without the cache: 200.
    assert made <= math.ceil(elapsed / readiness.TTL) + 1, (made, elapsed)


def _published(name: str, files: dict[str, bytes], guard: bool) -> dict[str, str]:
    """A published distribution ``name`` of ``files``, behind a header guard if ``guard``;
    the request headers its guard lets in (none without one)."""
    content_guard = None
    credentials: dict[str, str] = {}
    if guard:
        content_guard = HeaderContentGuard.objects.create(
            name=name, header_name="x-secret", header_value="swordfish")
        credentials = {"X-Secret": base64.b64encode(b"swordfish").decode()}
    repo = data.repository(name, files)
    data.distribute(name, publication=data.publish(repo.latest_version()),
                    content_guard=content_guard)
    return credentials


@pytest.mark.parametrize("guard", [False, True], ids=["unguarded", "guarded"])
def test_guarded_files_are_private_to_shared_caches(server, unique, guard):
    """RFC 9111 §3.5: ``public`` would let a shared cache store a response to an authorised
    request; guarded files say ``private`` instead (docs/differences.md)."""
    headers = _published(f"cc-{unique}", {"file.txt": b"cache me?\n"}, guard)
    url = server.url(f"{PREFIX}cc-{unique}/file.txt")
    expected = ("max-age=0, must-revalidate, private" if guard
                else "public, max-age=0, must-revalidate")  # pulpcore-content's EDGE_CACHE_CONTROL
    got = httpx.get(url, headers=headers)
    assert (got.status_code, got.content) == (200, b"cache me?\n")
    assert got.headers["cache-control"] == expected
    head = httpx.head(url, headers=headers)
    assert (head.status_code, head.headers["cache-control"]) == (200, expected)
    revalidated = httpx.get(url, headers={**headers, "If-None-Match": got.headers["etag"]})
    assert (revalidated.status_code, revalidated.headers["cache-control"]) == (304, expected)


@pytest.mark.parametrize("guard", [False, True], ids=["unguarded", "guarded"])
def test_every_answer_of_a_guarded_distribution_is_private(server, unique, guard):
    """Not only whole files: ranges, 416s, listings, the redirects that add a slash and
    404s of a guarded distribution say ``private`` too (a shared cache must not hand any
    of them to another client); the guard's own refusal as well. Unguarded answers keep
    what pulpcore-content says (files ``public, ...``; nothing on the others)."""
    credentials = _published(f"all-{unique}", {"file.txt": b"0123456789",
                                              "dir/inner.txt": b"inner\n"}, guard)
    base = f"{PREFIX}all-{unique}"
    edge = "public, max-age=0, must-revalidate"
    file_policy = "max-age=0, must-revalidate, private" if guard else edge
    other = "private" if guard else None
    asked = [  # (path, extra request headers, status, body or None, Cache-Control)
        ("/file.txt", {}, 200, b"0123456789", file_policy),
        ("/file.txt", {"Range": "bytes=2-4"}, 206, b"234", file_policy),
        ("/file.txt", {"Range": "bytes=50-60"}, 416, None, file_policy),
        ("/", {}, 200, None, other),  # the distribution's listing
        ("/dir/", {}, 200, None, other),
        ("/dir", {}, 301, None, other),  # a directory without its slash
        ("", {}, 301, None, other),  # the distribution root without its slash
        ("/nope.txt", {}, 404, None, other),
    ]
    seen = []
    with httpx.Client(base_url=server.url("")) as client:
        for path, extra, _, body, _ in asked:
            got = client.get(f"{base}{path}", headers={**credentials, **extra})
            seen.append((path, extra, got.status_code,
                         got.content if body is not None else None,
                         got.headers.get("cache-control")))
        listing = client.get(f"{base}/", headers=credentials)
        assert '<a href="./file.txt">file.txt</a>' in listing.text
        refused = client.get(f"{base}/file.txt")
    assert seen == asked
    if guard:
        assert (refused.status_code, refused.headers.get("cache-control")) == (403, "private")
