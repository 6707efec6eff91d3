"""Talking to Redis without ever making a request wait for it.

Every call has a short timeout and no retries; a failure marks Redis unavailable for
``CONTENT_ASGI_CACHE_RETRY`` seconds, during which requests are served from the database
as if the cache were off (pulpcore swallows the errors too, but can stall on retries).
The async client serves cache hits on the event loop; the sync one is used on the ORM
thread, where the slow path already runs.

All connections busy is not an outage: the async client opens at most
``CONTENT_ASGI_CACHE_CONNECTIONS`` connections per worker, and a request finding them all
in use waits for one (up to the same timeout), then, if none came free, is served without
the cache on its own, leaving the cache on for everyone else. redis-py's own pool raises
``MaxConnectionsError`` at once instead (100 connections by default since redis-py 6), which
counted as "Redis is down" and turned the cache off for every request: measured with 256
clients, 98 req/s instead of 1,202 at 64 (bench/results/2026-11-29T1543Z-vm-full-notes.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
from django.conf import settings

from pulp_content_asgi.cache import keys

log = logging.getLogger(__name__)
T = TypeVar("T")
#: What "Redis is unavailable" looks like: the client's errors and the socket's.
REDIS_ERRORS = (redis.RedisError, OSError)


def _client_kwargs(timeout: float) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_timeout": timeout, "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0), "health_check_interval": 0}


def _make(redis_class: Any, timeout: float, **extra: Any) -> Any:
    kwargs = {**_client_kwargs(timeout), **extra}
    url = getattr(settings, "REDIS_URL", None)
    if url:
        return redis_class.from_url(url, **kwargs)
    return redis_class(host=settings.REDIS_HOST, port=settings.REDIS_PORT,
                       db=getattr(settings, "REDIS_DB", 0),
                       password=getattr(settings, "REDIS_PASSWORD", None),
                       ssl=getattr(settings, "REDIS_SSL", False),
                       ssl_ca_certs=getattr(settings, "REDIS_SSL_CA_CERTS", None), **kwargs)


class RedisCache:
    """pulpcore's cache hashes, read and written with bounded waits."""

    #: Seconds between two warnings that requests were served without the cache because
    #: every connection was busy.
    BUSY_WARNING_INTERVAL = 60.0

    def __init__(self, timeout: float, retry_after: float, ttl: float | None,
                 connections: int = 64) -> None:
        """``timeout``: seconds per Redis call and per wait for a free connection;
        ``retry_after``: seconds the cache stays off after Redis failed; ``ttl``: seconds an
        entry lives (None: forever); ``connections``: the async client's most connections.

        Raises ValueError when ``connections`` is below 1.
        """
        import redis.asyncio

        if connections < 1:
            raise ValueError(f"CONTENT_ASGI_CACHE_CONNECTIONS must be at least 1, "
                             f"not {connections}")
        self.ttl = ttl
        self.timeout = timeout
        self.retry_after = retry_after
        self.connections = connections
        self._async = _make(redis.asyncio.Redis, timeout, max_connections=connections)
        self._sync = _make(redis.Redis, timeout)
        self._down_until = 0.0
        # Created on first use, in the worker's event loop (a semaphore binds to it).
        self._slots: asyncio.Semaphore | None = None
        self._busy_warned = float("-inf")
        #: Requests served without the cache because every connection was busy.
        self.busy_skips = 0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self.available:
            log.warning("Redis unavailable (%s); serving without the response cache for "
                        "%ss.", exc, self.retry_after)
        self._down_until = time.monotonic() + self.retry_after

    async def _ask(self, command: Callable[[Any], Awaitable[T]], default: T,
                   always: bool = False) -> T:
        """Run ``command`` on the async client; ``default`` if Redis fails or is backed
        off. Only Redis and socket errors count as "Redis is down": anything else is a bug
        and propagates."""
        if not (always or self.available):
            return default
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.connections)
        try:
            async with asyncio.timeout(self.timeout):
                await self._slots.acquire()
        except TimeoutError:
            self._busy()
            return default
        try:
            return await command(self._async)
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return default
        finally:
            self._slots.release()

    def _busy(self) -> None:
        """Every connection stayed in use for the whole timeout: this request goes
        without the cache; Redis is not marked unavailable."""
        self.busy_skips += 1
        now = time.monotonic()
        if now - self._busy_warned >= self.BUSY_WARNING_INTERVAL:
            self._busy_warned = now
            log.warning("All %d Redis connections of the response cache were busy for %ss; "
                        "serving requests without the cache meanwhile (%d so far). Raise "
                        "CONTENT_ASGI_CACHE_CONNECTIONS if Redis has room for more.",
                        self.connections, self.timeout, self.busy_skips)

    def _ask_sync(self, command: Callable[[Any], T], default: T) -> T:
        """The same on the sync client (the ORM thread, and the on-demand save's
        transaction, which must store its entry before it commits)."""
        if not self.available:
            return default
        try:
            return command(self._sync)
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return default

    # -- on the event loop -------------------------------------------------------------
    async def ping(self) -> bool:
        """Whether Redis answers now (ignores the back-off: health checks ask Redis)."""
        return bool(await self._ask(lambda r: r.ping(), False, always=True))

    async def find_base(self, candidates: list[str]) -> str | None:
        """The longest candidate distribution hash that exists: one EXISTS per candidate,
        pipelined, so one round trip (:func:`keys.longest_existing` says why not pulpcore's
        single EXISTS)."""
        if not candidates:
            return None

        async def ask(client: Any) -> list[int]:
            async with client.pipeline(transaction=False) as pipe:
                for key in candidates:
                    pipe.exists(key)
                return list(await pipe.execute())

        found = await self._ask(ask, None)
        return None if found is None else keys.longest_existing(candidates, found)

    async def get(self, base: str, field: str) -> bytes | None:
        return _as_bytes(await self._ask(lambda r: r.hget(base, field), None))

    async def forget(self, base: str, field: str) -> None:
        await self._ask(lambda r: r.hdel(base, field), None)

    # -- on the ORM thread -------------------------------------------------------------
    def get_sync(self, base: str, field: str) -> bytes | None:
        return _as_bytes(self._ask_sync(lambda r: r.hget(base, field), None))

    def set_sync(self, base: str, field: str, value: str, expire: bool = True) -> bool:
        """Store a field; False when Redis is unavailable (nothing was cached)."""
        def store(client: Any) -> bool:
            client.hset(base, field, value)
            if expire and self.ttl:
                client.expire(base, int(self.ttl))
            return True

        return self._ask_sync(store, False)

    def forget_sync(self, base: str, field: str) -> None:
        self._ask_sync(lambda r: r.hdel(base, field), None)


def _as_bytes(value: Any) -> bytes | None:
    return value if isinstance(value, bytes) or value is None else str(value).encode()


_cache: RedisCache | None = None
_configured = False


def current() -> RedisCache | None:
    """The cache of this process, or None when CACHE_ENABLED is off."""
    global _cache, _configured
    if not _configured:
        _configured = True
        if getattr(settings, "CACHE_ENABLED", False):
            from pulp_content_asgi import conf

            ours = conf.current()
            ttl = (getattr(settings, "CACHE_SETTINGS", None) or {}).get("EXPIRES_TTL", 600)
            _cache = RedisCache(ours.cache_timeout, ours.cache_retry, ttl,
                                ours.cache_connections)
    return _cache
