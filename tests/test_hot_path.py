"""The hot path's promises, counted exactly (bench/README.md's goals): a request for a
published file costs 1 database round trip and 1 thread hop, with the cache off (the
distribution is remembered and checked in the same statement as the content lookup:
resolution/remembered.py; tests/test_remembered.py shows that nothing stale is served).

The real app is called in-process (ASGI messages, no server). Round trips are the SQL
statements Django sends on the ORM thread (``connection.execute_wrapper``; the pooled
connection's checkout and return send none); thread hops are every
``loop.run_in_executor`` call, which is also what ``asyncio.to_thread`` and ``db.run``
use. The third request of a path is counted: the first registers the worker's heartbeat and
looks the distribution up in full (remembering it), the second lets psycopg prepare its
statements, as a long-running worker has.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from pulp_content_asgi import db
from pulp_content_asgi.devtools import data
from tests.helpers import asgi_call, scope, unique_name

SMALL = b"small file, read in the ORM hop\n"
LARGE = os.urandom(1024 * 1024)  # above CONTENT_ASGI_INLINE_FILE_SIZE
PATHSEND = {"http.response.pathsend": {}}


@pytest.fixture(scope="module")
def base() -> str:
    u = unique_name()
    repo = data.repository(f"hot-{u}", {"small.txt": SMALL, "large.bin": LARGE})
    data.distribute(f"hot-{u}", publication=data.publish(repo.latest_version()))
    return f"/pulp/content/hot-{u}/"


class Counted:
    """SQL statements sent by ORM threads and thread hops taken, while installed."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.hops: list[Callable[..., Any]] = []

    def run(self, real: Callable[..., Any]) -> Callable[..., Any]:
        """``db._execute`` that also records the statements of the unit it runs."""
        def count(execute: Callable[..., Any], sql: str, params: Any, many: bool,
                  context: dict) -> Any:
            self.statements.append(sql)
            return execute(sql, params, many, context)

        def counting(unit: Any) -> Any:
            with connection.execute_wrapper(count):  # this ORM thread's connection
                return real(unit)
        return counting

    def hop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count every executor call made on ``loop``."""
        real = loop.run_in_executor

        def counting(executor: Any, fn: Callable[..., Any], *args: Any) -> Any:
            self.hops.append(fn)
            return real(executor, fn, *args)
        loop.run_in_executor = counting  # type: ignore[method-assign]


def request(path: str, extensions: dict | None = None,
            counted: Counted | None = None) -> list[dict]:
    """The app's messages for one GET of ``path`` (on a loop of its own)."""
    from pulp_content_asgi.asgi import application

    async def call() -> list[dict]:
        if counted is not None:
            counted.hop(asyncio.get_running_loop())
        return await asgi_call(application, scope(path, extensions=extensions))

    return asyncio.run(call())


@pytest.mark.parametrize(("name", "extensions", "body"), [
    # Read inline, in the same hop that resolved it.
    ("small.txt", None, SMALL),
    # Handed to the server by path: the app reads nothing.
    ("large.bin", PATHSEND, None),
])
def test_a_published_file_costs_one_round_trip_and_one_hop(base, monkeypatch, name,
                                                           extensions, body):
    assert not settings.CACHE_ENABLED
    for _ in range(2):
        request(base + name, extensions)
    counted = Counted()
    monkeypatch.setattr(db, "_execute", counted.run(db._execute))
    sent = request(base + name, extensions, counted)
    assert sent[0]["status"] == 200
    if body is not None:
        assert b"".join(m.get("body", b"") for m in sent[1:]) == body
    else:
        assert sent[1]["type"] == "http.response.pathsend"
    assert len(counted.hops) == 1, counted.hops
    assert len(counted.statements) == 1, counted.statements
