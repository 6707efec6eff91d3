"""The ORM-thread discipline: one hop, the connection back in the pool afterwards, a
connection killed under us replaced transparently, and pooled connections that died while
idle discarded before use."""

from __future__ import annotations

import asyncio
import os

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from pulpcore.app.models import Domain

from pulp_content_asgi import db
from tests.helpers import wait_for


def _in_use() -> int:
    """Pooled connections currently checked out (the test thread may hold one)."""
    connection.ensure_connection()
    stats = connection.pool.get_stats()
    return int(stats["pool_size"] - stats.get("pool_available", 0))


def test_work_runs_off_the_event_loop_thread_and_returns_its_connection():
    import threading

    def work() -> tuple[str, str]:
        return threading.current_thread().name, Domain.objects.get(name="default").name

    before = _in_use()
    thread, name = asyncio.run(db.run(work))
    assert thread.startswith("content-db") and name == "default"
    assert _in_use() == before


def test_a_killed_connection_is_replaced_and_the_work_retried():
    pids = []

    def kill_then_query() -> str:
        pid = connection.cursor().connection.info.backend_pid
        pids.append(pid)
        if len(pids) == 1:
            db_settings = settings.DATABASES["default"]
            with psycopg.connect(host=db_settings["HOST"], port=db_settings["PORT"],
                                 user=db_settings["USER"], dbname="postgres",
                                 autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return Domain.objects.get(name="default").name

    assert asyncio.run(db.run(kill_then_query)) == "default"
    assert len(pids) == 2 and pids[0] != pids[1]


def test_errors_that_are_not_about_the_connection_propagate():
    def broken() -> None:
        Domain.objects.get(name="no-such-domain")

    with pytest.raises(Domain.DoesNotExist):
        asyncio.run(db.run(broken))


def _admin() -> psycopg.Connection:
    db_settings = settings.DATABASES["default"]
    return psycopg.connect(host=db_settings["HOST"], port=db_settings["PORT"],
                           user=db_settings["USER"], dbname="postgres", autocommit=True)


def test_pooled_connections_that_died_while_idle_are_discarded_before_use():
    """What a PostgreSQL restart does to an idle pool, done to this process's idle pooled
    connections: the next unit runs once, on a live connection (no failure, no retry)."""
    asyncio.run(db.run(lambda: Domain.objects.get(name="default")))  # the pool has one
    mine = f"pulp-content-asgi[{os.getpid()}]"
    held = connection.connection.info.backend_pid if connection.connection else 0
    idle = ("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND state = 'idle' AND pid <> %s")
    with _admin() as admin:
        killed = [row[0] for row in admin.execute(idle, (mine, held)).fetchall()]
        assert killed
        for pid in killed:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # Gone on the server's side: their sockets are closed.
        assert wait_for(lambda: not admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (killed,)).fetchall())
    runs: list[int] = []

    def work() -> str:
        runs.append(connection.cursor().connection.info.backend_pid)
        return Domain.objects.get(name="default").name

    assert asyncio.run(db.run(work)) == "default"
    assert len(runs) == 1 and runs[0] not in killed
