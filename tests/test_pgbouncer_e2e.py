"""Behind pgbouncer in transaction mode (docs/differences.md, "Prepared statements").

A real pgbouncer (Debian's package; ``make test-tools`` installs it), started afresh for
each test, runs in front of the test PostgreSQL with ``pool_mode = transaction``, two
server connections for the app's pool of four, and ``server_round_robin`` so that one
client's consecutive transactions run on different server connections, as they do in a
busy pooler. With ``CONTENT_ASGI_DB_PREPARED_STATEMENTS = False``, what
docs/differences.md tells operators to set, every request is answered with the published
bytes. With the default (True) a statement psycopg prepared on one server connection is
executed by name on the other, and the request fails (pgbouncer 1.18, Debian 12's, has no
prepared-statement support in transaction mode).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.pgcluster import BINDIR
from pulp_content_asgi.devtools.processes import Server, free_port
from tests.helpers import DBNAME, content_app, stop_server, unique_name

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
PSQL = shutil.which("psql") or os.path.join(BINDIR or "/usr/bin", "psql")
#: Server connections pgbouncer opens to PostgreSQL: fewer than the app's pool
#: (CONTENT_ASGI_DB_CONNECTIONS, 4), so the app's connections share them.
SERVER_CONNECTIONS = 2
FILES = {f"pkg/file-{n:02d}.bin": os.urandom(1024 * (1 + 7 * n)) for n in range(24)}
REQUESTS = 480
CLIENTS = 16


@dataclass
class Bouncer:
    """A running pgbouncer: its process (in its own session), port and folder."""

    process: subprocess.Popen[bytes]
    port: int
    root: str

    def log(self) -> str:
        with open(os.path.join(self.root, "pgbouncer.log"), errors="replace") as log:
            return log.read()

    def show(self, what: str) -> list[dict[str, str]]:
        """``SHOW <what>`` on pgbouncer's admin console, one dict per row."""
        out = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                              "-d", "pgbouncer", "--csv", "-c", f"SHOW {what}"],
                             check=True, capture_output=True, text=True).stdout
        return list(csv.DictReader(io.StringIO(out)))

    def clients(self) -> list[dict[str, str]]:
        """The client connections to the test database (the app's: nothing else uses
        this pgbouncer)."""
        return [c for c in self.show("CLIENTS") if c["database"] == DBNAME]

    def queries(self) -> int:
        """Statements pgbouncer passed to PostgreSQL for the test database so far."""
        return sum(int(row["total_query_count"]) for row in self.show("STATS")
                   if row["database"] == DBNAME)


def _config(root: str, port: int) -> str:
    path = os.path.join(root, "pgbouncer.ini")
    with open(os.path.join(root, "userlist.txt"), "w") as users:
        users.write('"postgres" ""\n')  # trust: the name must be listed, with any password
    with open(path, "w") as out:
        out.write(
            "[databases]\n"
            f"* = host={os.environ.get('PGHOST', '127.0.0.1')} "
            f"port={os.environ.get('PGPORT', '5432')}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {root}/userlist.txt\nadmin_users = postgres\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {SERVER_CONNECTIONS}\nmax_client_conn = 200\n"
            f"logfile = {root}/pgbouncer.log\npidfile = {root}/pgbouncer.pid\n"
            # Idle server connections are handed out oldest first, not last used first.
            "server_round_robin = 1\n")
    return path


def _accepts(port: int) -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]
                          ).returncode == 0


def _open_server_connections(bouncer: Bouncer) -> None:
    """Make pgbouncer open its :data:`SERVER_CONNECTIONS` server connections now: as many
    clients each hold a transaction open at once, then all end them (pgbouncer keeps the
    connections for the next clients)."""
    import psycopg

    held = [psycopg.connect(host="127.0.0.1", port=bouncer.port, user="postgres",
                            dbname=DBNAME) for _ in range(SERVER_CONNECTIONS)]
    try:
        for connection in held:
            connection.execute("SELECT 1")  # not autocommit: the transaction stays open
        servers = [s for s in bouncer.show("SERVERS") if s["database"] == DBNAME]
        assert len(servers) == SERVER_CONNECTIONS, servers
    finally:
        for connection in held:
            connection.close()


@pytest.fixture
def pgbouncer() -> Iterator[Bouncer]:
    """pgbouncer in transaction mode in front of the test PostgreSQL, its configuration
    in a folder of its own; the port is ``TEST_PGBOUNCER_PORT`` when set, else a free one.
    As root it runs as ``postgres`` (pgbouncer refuses to run as root). A fresh one per
    test: statements an earlier app prepared stay on pgbouncer's server connections."""
    assert os.path.exists(PGBOUNCER), \
        "pgbouncer is missing: make test-tools (dev/test-tools.sh) installs it"
    root = tempfile.mkdtemp(prefix="pgbouncer-", dir="/tmp")
    port = int(os.environ.get("TEST_PGBOUNCER_PORT") or free_port())
    config = _config(root, port)
    user = None
    if os.getuid() == 0:
        user = "postgres"
        for path in (root, *(os.path.join(root, n) for n in os.listdir(root))):
            shutil.chown(path, "postgres")
    with open(os.path.join(root, "stdout"), "wb") as out:
        process = subprocess.Popen([PGBOUNCER, config], stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, user=user)
    bouncer = Bouncer(process, port, root)
    try:
        deadline = time.monotonic() + 30
        while not _accepts(port):
            assert process.poll() is None, f"pgbouncer exited:\n{bouncer.log()}"
            assert time.monotonic() < deadline, f"pgbouncer did not answer:\n{bouncer.log()}"
            time.sleep(0.1)
        _open_server_connections(bouncer)
        yield bouncer
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # SIGTERM: pgbouncer exits at once
            process.wait(20)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def published() -> str:
    """A distribution of :data:`FILES`; its base path."""
    name = f"bouncer-{unique_name()}"
    repo = data.repository(name, FILES)
    data.distribute(name, publication=data.publish(repo.latest_version()))
    return name


def through(bouncer: Bouncer, prepared: bool | None) -> Server:
    """Our app (one worker, the default pool of 4 connections) connecting to PostgreSQL
    through ``bouncer``; ``prepared`` sets CONTENT_ASGI_DB_PREPARED_STATEMENTS (None:
    left at its default)."""
    env = {"PULP_DATABASES__default__HOST": "127.0.0.1",
           "PULP_DATABASES__default__PORT": str(bouncer.port)}
    if prepared is not None:
        env["PULP_CONTENT_ASGI_DB_PREPARED_STATEMENTS"] = str(prepared).lower()
    return content_app(env=env)


def fetch_all(server: Server, base_path: str) -> list[tuple[str, int, bool]]:
    """:data:`REQUESTS` GETs of the files from :data:`CLIENTS` threads: (path, status,
    whether the body is the file's bytes) for each."""
    paths = [list(FILES)[n % len(FILES)] for n in range(REQUESTS)]
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=CLIENTS)) as client:

        def get(path: str) -> tuple[str, int, bool]:
            got = client.get(server.url(f"/pulp/content/{base_path}/{path}"))
            return path, got.status_code, got.content == FILES[path]

        with ThreadPoolExecutor(CLIENTS) as pool:
            return list(pool.map(get, paths))


def fetch_one_by_one(server: Server, base_path: str, count: int = 60
                     ) -> list[tuple[int, bytes, bytes]]:
    """``count`` GETs one after the other from one connection: (status, body, the file's
    bytes) for each. Each costs the app one transaction, so consecutive lookups run on
    pgbouncer's two server connections in turn."""
    paths = [list(FILES)[n % len(FILES)] for n in range(count)]
    with httpx.Client(timeout=60) as client:
        answers = []
        for path in paths:
            got = client.get(server.url(f"/pulp/content/{base_path}/{path}"))
            answers.append((got.status_code, got.content, FILES[path]))
        return answers


def test_without_prepared_statements_every_file_is_served_through_pgbouncer(
        pgbouncer, published):
    """The setting docs/differences.md tells operators to use behind a transaction-mode
    pooler: every request is answered 200 with the file's bytes, one by one (where the
    default fails: the next test) and :data:`CLIENTS` at a time; the app's lookups went
    through pgbouncer, on several of its pooled connections sharing
    :data:`SERVER_CONNECTIONS` server connections."""
    before = pgbouncer.queries()
    server = through(pgbouncer, prepared=False)
    try:
        one_by_one = fetch_one_by_one(server, published)
        answers = fetch_all(server, published)
        clients = pgbouncer.clients()
        passed = pgbouncer.queries() - before
        log = server.log()
    finally:
        stop_server(server)
    assert [(status, body == sent) for status, body, sent in one_by_one] == \
        [(200, True)] * len(one_by_one)
    assert [(status, same) for _, status, same in answers] == [(200, True)] * REQUESTS
    assert len(clients) >= 2, clients  # the app's pool, multiplexed by pgbouncer
    assert passed >= REQUESTS + len(one_by_one), passed  # every lookup went through it
    assert "prepared statement" not in log, log


def test_prepared_statements_fail_behind_a_transaction_mode_pgbouncer(pgbouncer, published):
    """What docs/differences.md warns about, with the default (prepared statements on):
    the same requests one by one. psycopg prepares the lookup on one server connection
    (``prepare_threshold=2``) and then executes it by name on the other, which does not
    have it; the request is answered 500 and the log names the cause. Requests whose
    lookup runs where the statement was prepared still succeed."""
    server = through(pgbouncer, prepared=None)
    try:
        answers = fetch_one_by_one(server, published)
        log = server.log()
    finally:
        stop_server(server)
    statuses = [status for status, _, _ in answers]
    assert 500 in statuses, statuses
    assert {status for status in statuses} == {200, 500}, statuses
    assert all(body == sent for status, body, sent in answers if status == 200)
    assert all(body.startswith(b"500: Internal Server Error: the content app failed")
               for status, body, _ in answers if status == 500)
    assert "ProgrammingError: prepared statement \"_pg3_" in log, log
    assert log.count("Failed to serve GET") == statuses.count(500), log
