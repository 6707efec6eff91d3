"""Talking to Redis without ever making a request wait for it.

Every call has a short timeout and no retries; a failure marks Redis unavailable for
``CONTENT_ASGI_CACHE_RETRY`` seconds, during which requests are served from the database
as if the cache were off (pulpcore swallows the errors too, but can stall on retries).
The async client serves cache hits on the event loop; the sync one is used on the ORM
thread, where the slow path already runs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings

from pulp_content_asgi.cache import keys

log = logging.getLogger(__name__)


def _client_kwargs(timeout: float) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_timeout": timeout, "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0), "health_check_interval": 0}


def _make(redis_class: Any, timeout: float) -> Any:
    kwargs = _client_kwargs(timeout)
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

    def __init__(self, timeout: float, retry_after: float, ttl: float | None) -> None:
        import redis
        import redis.asyncio

        self.ttl = ttl
        self.retry_after = retry_after
        self._async = _make(redis.asyncio.Redis, timeout)
        self._sync = _make(redis.Redis, timeout)
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self.available:
            log.warning("Redis unavailable (%s); serving without the response cache for "
                        "%ss.", exc, self.retry_after)
        self._down_until = time.monotonic() + self.retry_after

    # -- on the event loop -------------------------------------------------------------
    async def ping(self) -> bool:
        """Whether Redis answers now (ignores the back-off: health checks ask Redis)."""
        try:
            return bool(await self._async.ping())
        except Exception as exc:
            self._failed(exc)
            return False

    async def find_base(self, candidates: list[str]) -> str | None:
        """Which candidate distribution hash exists (one EXISTS, pulpcore's trick)."""
        if not candidates or not self.available:
            return None
        try:
            count = await self._async.exists(*keys.exists_probe(candidates))
        except Exception as exc:
            self._failed(exc)
            return None
        return keys.from_count(int(count), candidates)

    async def get(self, base: str, field: str) -> bytes | None:
        if not self.available:
            return None
        try:
            value = await self._async.hget(base, field)
        except Exception as exc:
            self._failed(exc)
            return None
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    async def forget(self, base: str, field: str) -> None:
        if self.available:
            try:
                await self._async.hdel(base, field)
            except Exception as exc:
                self._failed(exc)

    # -- on the ORM thread -------------------------------------------------------------
    def get_sync(self, base: str, field: str) -> bytes | None:
        if not self.available:
            return None
        try:
            value = self._sync.hget(base, field)
        except Exception as exc:
            self._failed(exc)
            return None
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    def set_sync(self, base: str, field: str, value: str, expire: bool = True) -> bool:
        """Store a field; False when Redis is unavailable (nothing was cached)."""
        if not self.available:
            return False
        try:
            self._sync.hset(base, field, value)
            if expire and self.ttl:
                self._sync.expire(base, int(self.ttl))
        except Exception as exc:
            self._failed(exc)
            return False
        return True

    def forget_sync(self, base: str, field: str) -> None:
        if self.available:
            try:
                self._sync.hdel(base, field)
            except Exception as exc:
                self._failed(exc)


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
            _cache = RedisCache(ours.cache_timeout, ours.cache_retry, ttl)
    return _cache
