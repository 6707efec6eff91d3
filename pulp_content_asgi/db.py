"""The one way request code reaches the database: a bounded pool of ORM threads.

Each call runs a whole unit of ORM work in one thread hop and gives the connection back
to the pool before returning, so no connection is held while a body streams and a worker
never holds more connections than it has ORM threads (= the pool's ``max_size``). A
connection that died under us (PostgreSQL restarted, network cut) is dropped and the
unit is retried once on a fresh one, which is pulpcore's own recovery, done in one place.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from pulp_content_asgi import conf

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None


class DatabaseUnavailable(Exception):
    """The database could not be reached or no pooled connection freed up in time."""


def executor() -> ThreadPoolExecutor:
    """This process's ORM threads, created on first use (after any fork)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=conf.current().db_connections, thread_name_prefix="content-db"
        )
    return _executor


def _release() -> None:
    for conn in connections.all(initialized_only=True):
        conn.close()


def _pool_timeout(exc: BaseException) -> bool:
    return type(exc).__name__ == "PoolTimeout"


def _run(fn: Callable[..., T], args: tuple, kwargs: dict, queued_at: float) -> T:
    waited = time.monotonic() - queued_at
    limit = conf.current().db_pool_timeout
    if waited > limit:
        # Every ORM thread (= pooled connection) was busy for longer than a request may
        # wait for a connection: answer 503 rather than let the queue grow without bound.
        raise DatabaseUnavailable(f"all {conf.current().db_connections} database connections "
                                  f"of this worker were busy for {waited:.1f}s")
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
    """Run ``fn`` on an ORM thread with the caller's context variables (e.g. the domain)."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    call = functools.partial(ctx.run, _run, fn, args, kwargs, time.monotonic())
    return await loop.run_in_executor(executor(), call)
