"""The one way request code reaches the database: a bounded pool of ORM threads behind an
outage gate.

Each call runs a whole unit of ORM work in one thread hop and gives the connection back
to the pool before returning, so no connection is held while a body streams and a worker
never holds more connections than it has ORM threads. There are exactly as many ORM
threads as the connection pool's ``max_size`` (:func:`threads`), so a thread that asks the
pool for a connection always gets one at once (an idle one, or room to open one): a busy
worker queues its requests for a thread, bounded by memory like any other pending request,
and psycopg-pool's ``timeout`` only expires when PostgreSQL cannot be reached. A busy pool
is not an outage.

PostgreSQL outages (docs/operations.md, "PostgreSQL down"):

* Pooled connections are checked before use. An idle connection whose socket has become
  readable (PostgreSQL sent its termination notice, or closed it: a restart) is tested
  with psycopg-pool's ``check_connection`` and discarded when dead, so a restart while the
  worker was idle costs no request; a healthy idle connection costs one ``poll()``, not a
  round trip.
* Each worker (event loop) has a :class:`Gate`. It closes when a fresh connection attempt
  of its own (a probe) fails; it probes when a unit's connection failed and when the pool
  gave up connecting (:func:`pool_gave_up`). While it is closed no request waits
  for the pool: each waits for one connection attempt (a probe, at most one in flight per
  worker) that began after it arrived, and is refused with :class:`DatabaseUnavailable`
  (503) when that attempt fails — milliseconds when PostgreSQL refuses connections, at most
  :data:`PROBE_WAIT` seconds when it does not answer. Calls still waiting for a thread or
  a connection when the gate closes are given up (their unit never runs; a unit that began
  runs to its end). The first probe that connects opens the gate again.
* A unit whose connection died is retried once, on a checked connection, when a fresh
  connection attempt succeeds: pulpcore's own recovery, done in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

from pulp_content_asgi import conf

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# psycopg-pool's own default when ``"pool": True`` or a pool without sizes is configured.
_PSYCOPG_POOL_DEFAULT_SIZE = 4
#: Seconds a request waits for the gate's probe before it is answered 503 anyway (a
#: PostgreSQL that refuses connections answers a probe in milliseconds).
PROBE_WAIT = 0.5
#: Seconds between the starts of two probes of one worker: at most this many connection
#: attempts per second while PostgreSQL is down, whatever the load.
PROBE_INTERVAL = 0.05
# Connection keywords that configure psycopg's Python side, not libpq (a probe skips them).
_PYTHON_SIDE = ("cursor_factory", "row_factory", "context", "prepare_threshold", "autocommit")

_executor: ThreadPoolExecutor | None = None
_gate: tuple[asyncio.AbstractEventLoop, Gate] | None = None


class DatabaseUnavailable(Exception):
    """The database could not be reached (no connection could be opened, or it died twice)."""


class _ConnectionLost(Exception):
    """A unit's connection could not be had or failed under it (``__cause__`` says how)."""


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


def _pool_options() -> Any:
    from django.conf import settings

    return settings.DATABASES[DEFAULT_DB_ALIAS].get("OPTIONS", {}).get("pool")


def executor() -> ThreadPoolExecutor:
    """This process's ORM threads, created on first use (after any fork)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=threads(_pool_options(), conf.current().db_connections),
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


# --- the ORM thread's side -----------------------------------------------------------

def _alive(raw: Any) -> bool:
    """Whether an idle psycopg connection still works: nothing may arrive on an idle
    connection but PostgreSQL's termination notice or the end of the stream (or, rarely,
    a harmless notice), so only a readable socket costs a round trip
    (psycopg-pool's ``check_connection``)."""
    if raw is None or raw.closed:
        return False
    poller = select.poll()  # not select(): a busy worker's descriptors exceed FD_SETSIZE
    poller.register(raw.fileno(), select.POLLIN)
    if not poller.poll(0):
        return True
    from psycopg import Error
    from psycopg_pool import ConnectionPool

    try:
        ConnectionPool.check_connection(raw)
    except Error:
        return False
    return True


def _checked_connection() -> None:
    """Give this thread a live connection (Django's ``default``): a pooled one PostgreSQL
    closed while it sat idle is discarded (the pool opens a replacement) and the next one
    taken. Raises Django's ``OperationalError`` when none can be had."""
    connection = connections[DEFAULT_DB_ALIAS]
    connection.ensure_connection()
    # Every idle connection may be dead (a restart): at most as many as the pool holds.
    for _ in range(threads(_pool_options(), conf.current().db_connections)):
        if _alive(connection.connection):
            return
        log.info("Discarding a pooled database connection the server has closed.")
        connection.close()  # psycopg-pool drops a broken connection it is given back
        connection.ensure_connection()


class _Unit:
    """One unit of ORM work for a thread; its caller may give up on it until it begins."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self._lock = threading.Lock()
        self._state = "waiting"  # -> "running" (the thread began) or "abandoned"

    @property
    def given_up(self) -> bool:
        return self._state == "abandoned"

    def begin(self) -> bool:
        with self._lock:
            if self._state == "abandoned":
                return False
            self._state = "running"
            return True

    def abandon(self) -> bool:
        """True when the unit will never run (it had not begun)."""
        with self._lock:
            if self._state == "running":
                return False
            self._state = "abandoned"
            return True


_ABANDONED = object()


def _execute(unit: _Unit) -> Any:
    """Run ``unit`` on this ORM thread (connection failures raise :class:`_ConnectionLost`)."""
    try:
        try:
            if unit.given_up:  # given up while it queued for this thread
                return _ABANDONED
            _checked_connection()
        except Exception as exc:
            if is_connection_failure(exc):
                raise _ConnectionLost(str(exc)) from exc
            raise
        if not unit.begin():  # the gate closed while this thread waited for a connection
            return _ABANDONED
        try:
            return unit.call()
        except Exception as exc:
            if is_connection_failure(exc) and not isinstance(exc, DatabaseUnavailable):
                raise _ConnectionLost(str(exc)) from exc
            raise
    finally:
        _release()


# --- the event loop's side -----------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _probe_params() -> dict[str, Any]:
    """The pool's connection parameters (Django's), libpq's part only."""
    params = connections[DEFAULT_DB_ALIAS].get_connection_params()
    return {k: v for k, v in params.items() if k not in _PYTHON_SIDE}


class Gate:
    """Whether this worker's requests may ask the pool for connections (one per event
    loop). See the module docstring; all methods run on the event loop."""

    def __init__(self) -> None:
        self.open = True
        self.reason = ""
        self._closed_at = 0.0
        #: Calls on their way to an ORM thread, and what their callers await.
        self.waiting: dict[_Unit, asyncio.Future[Any]] = {}
        self._probe: asyncio.Task[tuple[bool, float]] | None = None
        self._last_probe = 0.0
        #: Connection attempts made by probes (for tests and the log).
        self.probes = 0

    def close(self, reason: str) -> None:
        """A probe found PostgreSQL unreachable: refuse requests until one connects."""
        self.reason = reason
        if not self.open:
            return
        self.open = False
        self._closed_at = time.monotonic()
        for unit, outcome in list(self.waiting.items()):
            # Waiting for a thread or a connection: they would wait for the pool's timeout.
            if unit.abandon() and not outcome.done():
                outcome.set_exception(DatabaseUnavailable(reason))
        log.error("PostgreSQL is unreachable (%s): requests are answered 503 with "
                  "Retry-After until a connection succeeds again.", reason)

    def suspect(self) -> None:
        """Something failed to connect: probe now (closing the gate if the probe fails)."""
        if self.open and self._probe is None:
            self._start_probe()

    def _reopen(self) -> None:
        if self.open:
            return
        self.open = True
        log.warning("PostgreSQL accepts connections again after %.1fs; serving.",
                    time.monotonic() - self._closed_at)
        # Waiters psycopg-pool stopped growing for (it gave up connecting) get connections
        # now; check() also drops idle connections that died meanwhile.
        asyncio.get_running_loop().run_in_executor(None, _kick_pool)

    async def admit(self) -> None:
        """Return at once while open; else when a probe begun after this call connects.
        Raises :class:`DatabaseUnavailable` when it does not."""
        if self.open:
            return
        if not await self.verify():
            raise DatabaseUnavailable(self.reason)

    async def verify(self) -> bool:
        """Whether a connection attempt begun after this call succeeds (opening the gate),
        or fails (closing it); False also when none answered within :data:`PROBE_WAIT`."""
        arrived = time.monotonic()
        try:
            async with asyncio.timeout(PROBE_WAIT):
                while True:
                    probe = self._probe or self._start_probe()
                    # Shielded: a caller that leaves must not cancel others' probe.
                    connected, started = await asyncio.shield(probe)
                    if connected:
                        return True
                    if started >= arrived:
                        return False
        except TimeoutError:
            self.close(f"no connection within {PROBE_WAIT}s")
            return False

    def _start_probe(self) -> asyncio.Task[tuple[bool, float]]:
        self._probe = asyncio.ensure_future(self._run_probe())
        return self._probe

    async def _run_probe(self) -> tuple[bool, float]:
        wait = self._last_probe + PROBE_INTERVAL - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        started = time.monotonic()
        self.probes += 1
        try:
            await _connect_once(max(conf.current().db_pool_timeout, PROBE_WAIT))
        except Exception as exc:  # refused, timed out, authentication: all "unreachable"
            self.close(str(exc).strip() or type(exc).__name__)
            return False, started
        else:
            self._reopen()
            return True, started
        finally:
            self._last_probe = time.monotonic()
            self._probe = None


async def _connect_once(timeout: float) -> None:
    """Open (and close) one connection with the pool's parameters, outside the pool."""
    import psycopg

    async with asyncio.timeout(timeout):
        conn = await psycopg.AsyncConnection.connect(**_probe_params())
        await conn.close()


def _kick_pool() -> None:
    pool = getattr(connections[DEFAULT_DB_ALIAS], "pool", None)
    if pool is not None:
        try:
            pool.check()
        except Exception as exc:  # the next request's own attempt reports it
            log.warning("Could not refill the connection pool: %s", exc)


def gate() -> Gate:
    """The running event loop's gate (a worker has one loop; tests may run several)."""
    global _gate
    loop = asyncio.get_running_loop()
    if _gate is None or _gate[0] is not loop:
        _gate = (loop, Gate())
    return _gate[1]


def pool_gave_up(pool: Any) -> None:
    """psycopg-pool's ``reconnect_failed`` callback (a pool thread; bootstrap sets it on
    the pool it configures): the pool could not open a connection, so calls waiting for
    one would wait for its ``timeout``. The gate probes at once and closes (giving them
    up) if its own fresh attempt fails too: a late report from an attempt made before
    PostgreSQL came back cannot close it."""
    current = _gate
    if current is None:
        return
    loop, found = current
    with contextlib.suppress(RuntimeError):  # that loop has ended
        loop.call_soon_threadsafe(found.suspect)


async def _call(unit: _Unit, found: Gate) -> Any:
    """``unit`` on an ORM thread; given up (503) if the gate closes before it begins."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[Any] = loop.create_future()
    future = loop.run_in_executor(executor(), _execute, unit)
    future.add_done_callback(functools.partial(_settle, outcome))
    found.waiting[unit] = outcome
    try:
        return await outcome
    except asyncio.CancelledError:
        future.cancel()  # not started yet: it never will be
        raise
    finally:
        del found.waiting[unit]


def _settle(outcome: asyncio.Future[Any], future: asyncio.Future[Any]) -> None:
    """Pass the thread's outcome on, unless the call was given up meanwhile (then it is
    only retrieved, so that asyncio does not log it as never retrieved)."""
    if future.cancelled():
        if not outcome.done():
            outcome.cancel()
        return
    error = future.exception()
    if outcome.done():
        return
    if error is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(future.result())


async def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn`` on an ORM thread with the caller's context variables (e.g. the domain).

    Waits for a free ORM thread however long the queue is (no timer: a busy worker is
    slow, not down). Raises :class:`DatabaseUnavailable` when PostgreSQL cannot be
    reached (at once while the worker's gate is closed); ``fn``'s own exceptions
    propagate.
    """
    found = gate()
    for attempt in (1, 2):
        if not found.open:
            await found.admit()
        ctx = contextvars.copy_context()
        unit = _Unit(functools.partial(ctx.run, fn, *args, **kwargs))
        try:
            return await _call(unit, found)  # type: ignore[no-any-return]
        except _ConnectionLost as lost:
            if attempt == 2 or not await found.verify():
                raise DatabaseUnavailable(str(lost)) from lost.__cause__
            log.warning("Database connection lost (%s); retrying once.", lost)
    raise AssertionError("unreachable")
