"""The one way request code reaches the database: a bounded pool of ORM threads.

Each call runs a whole unit of ORM work in one thread hop and gives the connection back
to the pool before returning, so no connection is held while a body streams and a worker
never holds more connections than it has ORM threads. There are exactly as many ORM
threads as the connection pool's ``max_size`` (:func:`threads`), so a thread that asks the
pool for a connection always gets one at once (an idle one, or room to open one): a busy
worker queues its requests for a thread, bounded by memory like any other pending request,
and psycopg-pool's ``timeout`` only expires when PostgreSQL cannot be reached. A busy pool
is not an outage.

A connection that died under us (PostgreSQL restarted, network cut) is dropped and the
unit is retried once on a fresh one, which is pulpcore's own recovery, done in one place.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from pulp_content_asgi import conf

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# psycopg-pool's own default when ``"pool": True`` or a pool without sizes is configured.
_PSYCOPG_POOL_DEFAULT_SIZE = 4

_executor: ThreadPoolExecutor | None = None


class DatabaseUnavailable(Exception):
    """The database could not be reached (no connection could be opened, or it died twice)."""


def threads(pool: Any, configured: int) -> int:
    """How many ORM threads a worker runs: the connection pool's ``max_size``.

    ``pool`` is ``DATABASES["default"]["OPTIONS"]["pool"]`` (a dict of psycopg-pool
    arguments, ``True`` for its defaults, or absent/``False``); ``configured`` is
    ``CONTENT_ASGI_DB_CONNECTIONS``, which bootstrap makes the ``max_size`` unless the
    operator set a pool of their own. Threads must not outnumber connections: a thread
    waiting for a connection would wait for psycopg-pool's ``timeout`` and fail.
    """
    if pool is True:
        return _PSYCOPG_POOL_DEFAULT_SIZE
    if isinstance(pool, dict):
        size = pool.get("max_size") or pool.get("min_size") or _PSYCOPG_POOL_DEFAULT_SIZE
        return int(size)
    return configured


def executor() -> ThreadPoolExecutor:
    """This process's ORM threads, created on first use (after any fork)."""
    global _executor
    if _executor is None:
        from django.conf import settings

        pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
        _executor = ThreadPoolExecutor(
            max_workers=threads(pool, conf.current().db_connections),
            thread_name_prefix="content-db",
        )
    return _executor


def _release() -> None:
    for conn in connections.all(initialized_only=True):
        conn.close()


def _pool_timeout(exc: BaseException) -> bool:
    return type(exc).__name__ == "PoolTimeout"


def is_connection_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means the database could not be reached (not a bad query): what
    :func:`run` retries or answers with 503, whoever's code raised it."""
    if isinstance(exc, (DatabaseUnavailable, InterfaceError, OperationalError)):
        return True
    return isinstance(exc, DatabaseError) and _pool_timeout(exc.__cause__ or exc)


def _run(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        for attempt in (1, 2):
            try:
                return fn(*args, **kwargs)
            except (InterfaceError, OperationalError) as exc:
                _release()
                if attempt == 2 or _pool_timeout(exc.__cause__ or exc):
                    raise DatabaseUnavailable(str(exc)) from exc
                log.warning("Database connection lost (%s); retrying once.", exc)
        raise AssertionError("unreachable")
    except DatabaseError as exc:
        if _pool_timeout(exc.__cause__ or exc):
            raise DatabaseUnavailable(str(exc)) from exc
        raise
    finally:
        _release()


async def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn`` on an ORM thread with the caller's context variables (e.g. the domain).

    Waits for a free ORM thread however long the queue is (no timer: a busy worker is
    slow, not down). Raises :class:`DatabaseUnavailable` when PostgreSQL cannot be
    reached; ``fn``'s own exceptions propagate.
    """
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    call = functools.partial(ctx.run, _run, fn, args, kwargs)
    return await loop.run_in_executor(executor(), call)
