"""CPU per published-file request, measured without wrk: N in-process requests of one
4 KiB published file through the real ASGI app, one at a time, cache off.

Prints JSON: ``app_cpu_us`` (CPU time of this process, every thread, per request: the
event loop and the ORM threads), ``pg_cpu_us`` (CPU time of this database's PostgreSQL
backends per request, from ``/proc/<pid>/stat``; PostgreSQL must run on this machine),
``statements`` (SQL statements per request) and the wall time per request. The median of
``--repeats`` rounds of ``--requests`` requests each is reported, with the min and max.

Run with PULP_SETTINGS pointing at a migrated database::

    python -m bench.cpu [--requests 2000] [--repeats 5]

It creates (once) a repository ``cpu-bench`` with one 4 KiB file, published and
distributed at ``cpu-bench``. A CPU-time measure, not a throughput one: numbers from two
commits are comparable on one machine, even a busy one (CPU time, unlike wall time, does
not count waiting for the CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from typing import Any

PATH = "/pulp/content/cpu-bench/small.bin"
BODY = bytes(range(256)) * 16  # 4 KiB


def _ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def _backends() -> list[int]:
    from django.db import connections

    with connections["default"].cursor() as cursor:
        # The asking backend too: the pool may hand every request the same connection.
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND backend_type = 'client backend'")
        return [row[0] for row in cursor.fetchall()]


def _pg_ticks() -> dict[int, int]:
    """CPU ticks of each client backend of this database."""
    found = {}
    for pid in _backends():
        with contextlib.suppress(OSError):  # gone meanwhile
            found[pid] = _ticks(pid)
    return found


def _spent(before: dict[int, int], after: dict[int, int]) -> int:
    """Ticks spent between two readings: by backends in both, and all of new ones (a
    backend that ended meanwhile is not counted: the pool keeps its connections)."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items())


def _dataset() -> None:
    from pulpcore.app.models import Distribution

    from pulp_content_asgi.devtools import data

    if Distribution.objects.filter(base_path="cpu-bench").exists():
        return
    repo = data.repository("cpu-bench", {"small.bin": BODY})
    data.distribute("cpu-bench", publication=data.publish(repo.latest_version()))


class _Counter:
    statements = 0


def _count_statements() -> None:
    from django.db.backends import utils

    original = utils.CursorWrapper.execute

    def execute(self: Any, sql: Any, params: Any = None) -> Any:
        _Counter.statements += 1
        return original(self, sql, params)

    utils.CursorWrapper.execute = execute  # type: ignore[method-assign]


async def _one(application: Any) -> None:
    scope = {"type": "http", "method": "GET", "path": PATH, "raw_path": PATH.encode(),
             "query_string": b"", "headers": [(b"host", b"bench")], "scheme": "http",
             "http_version": "1.1", "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2)}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await application(scope, receive, send)
    assert sent[0]["status"] == 200, sent[0]
    assert b"".join(m.get("body", b"") for m in sent[1:]) == BODY


async def _rounds(requests: int, repeats: int) -> list[dict[str, float]]:
    from pulp_content_asgi import db
    from pulp_content_asgi.asgi import application

    for _ in range(50):  # warm: heartbeat, prepared statements, caches
        await _one(application)
    tick = os.sysconf("SC_CLK_TCK")
    rounds = []
    for _ in range(repeats):
        pg_before = await db.run(_pg_ticks)
        statements = _Counter.statements
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            await _one(application)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        counted = _Counter.statements - statements
        pg_after = await db.run(_pg_ticks)
        rounds.append({"app_cpu_us": cpu / requests * 1e6,
                       "pg_cpu_us": _spent(pg_before, pg_after) / tick / requests * 1e6,
                       "wall_us": wall / requests * 1e6,
                       "statements": counted / requests})
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from pulp_content_asgi import bootstrap

    bootstrap.setup()
    _dataset()
    _count_statements()
    rounds = asyncio.run(_rounds(args.requests, args.repeats))
    summary = {key: {"median": round(statistics.median(r[key] for r in rounds), 1),
                     "min": round(min(r[key] for r in rounds), 1),
                     "max": round(max(r[key] for r in rounds), 1)}
               for key in rounds[0]}
    print(json.dumps({"requests": args.requests, "repeats": args.repeats, **summary}))


if __name__ == "__main__":
    main()
