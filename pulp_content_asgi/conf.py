"""Our own settings, read from pulpcore's settings (dynaconf: ``PULP_`` env, ``PULP_SETTINGS``).

Every name starts with ``CONTENT_ASGI_`` so it cannot collide with pulpcore's; the defaults
below are the documented ones (docs/settings.md). Set them like any Pulp setting, e.g.
``PULP_CONTENT_ASGI_DB_CONNECTIONS=16``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    # Connections (and ORM threads) per worker process; the psycopg pool's max_size. Four
    # served a core's worth of published files as fast as 8 in short smoke runs at c64
    # (bench/results/optimisations.md), and every extra one is multiplied by the workers.
    "CONTENT_ASGI_DB_CONNECTIONS": 4,
    # Seconds an ORM thread waits for psycopg-pool to hand it a connection before the
    # request is answered 503 "database unavailable". There are as many ORM threads as
    # pooled connections, so this only expires when PostgreSQL cannot be reached, never
    # because the worker is busy (busy requests queue for a thread: db.py).
    "CONTENT_ASGI_DB_POOL_TIMEOUT": 10.0,
    # Seconds an idle pooled connection is kept open (pulpcore#2816: release idle ones).
    "CONTENT_ASGI_DB_MAX_IDLE": 60.0,
    # Server-side binding with prepared statements (off behind pgbouncer transaction mode).
    "CONTENT_ASGI_DB_PREPARED_STATEMENTS": True,
    # Bytes read from storage per step while streaming a body.
    "CONTENT_ASGI_CHUNK_SIZE": 256 * 1024,
    # Files up to this size are read in the same thread hop that resolved them.
    "CONTENT_ASGI_INLINE_FILE_SIZE": 64 * 1024,
    # Hand whole local files to the server when it offers ASGI http.response.pathsend.
    "CONTENT_ASGI_PATHSEND": True,
    # Server used by the pulp-content-asgi command: "granian" or "uvicorn".
    "CONTENT_ASGI_SERVER": "granian",
    # Share the listening port with other servers (SO_REUSEPORT); off: an address already
    # in use stops pulp-content-asgi at start-up (exit status 1), as gunicorn does.
    "CONTENT_ASGI_REUSE_PORT": False,
    # Seconds a client has to send a request's headers, from its first byte (granian's
    # HTTP/1 header_read_timeout; uvicorn has no such limit): a connection that has not
    # finished them by then is closed (slowloris, docs/operations.md).
    "CONTENT_ASGI_HEADER_TIMEOUT": 30.0,
    # Connections a granian worker serves at once (granian's backpressure, whose own
    # default is 1024 / workers): slow readers and slowloris connections hold one each,
    # and past this the worker accepts no one. Uvicorn has no such limit.
    "CONTENT_ASGI_MAX_CONNECTIONS": 65536,
    # Threads per granian worker that may read the files granian sends itself (pathsend;
    # granian's runtime_blocking_threads, whose own default this is): a bound, the pool
    # grows with concurrent reads. 1 reads one piece at a time (fewer context switches,
    # throughput not measurably different on local page-cached files), and one slow read
    # (NFS) then holds up every pathsend download of the worker. Uvicorn ignores it.
    "CONTENT_ASGI_FILE_READ_THREADS": 512,
    # Seconds a Redis call of the response cache may take before the cache is bypassed.
    "CONTENT_ASGI_CACHE_TIMEOUT": 0.25,
    # Seconds the response cache stays bypassed after Redis failed.
    "CONTENT_ASGI_CACHE_RETRY": 5.0,
    # Redis connections a worker's event loop opens at most for the response cache; a
    # request finding them all busy waits up to CONTENT_ASGI_CACHE_TIMEOUT for one.
    "CONTENT_ASGI_CACHE_CONNECTIONS": 64,
    # Seconds clients are told to wait (Retry-After) when the database is unavailable.
    "CONTENT_ASGI_RETRY_AFTER": 5,
    # Path of the readiness check (database, and Redis when CACHE_ENABLED).
    "CONTENT_ASGI_HEALTH_PATH": "/pulp/content-asgi/health/",
    # Serve Prometheus metrics, summed over all workers, at CONTENT_ASGI_METRICS_PATH.
    "CONTENT_ASGI_PROMETHEUS_ENABLED": False,
    # Path of the Prometheus scrape endpoint (only answered when enabled).
    "CONTENT_ASGI_METRICS_PATH": "/pulp/content-asgi/metrics/",
    # Directory the workers share their counts in ("" lets pulp-content-asgi make one).
    "CONTENT_ASGI_PROMETHEUS_DIR": "",
    # Access log destination: a file path, "-" for stdout, or "" for none.
    "CONTENT_ASGI_ACCESS_LOGFILE": "",
    # "text" (pulpcore's format) or "json" (one object per line, access log included).
    "CONTENT_ASGI_LOG_FORMAT": "text",
    # Log level of the app's loggers ("" leaves pulpcore's LOGGING as it is).
    "CONTENT_ASGI_LOG_LEVEL": "",
    # Django middleware (dotted paths) the plugins' live routes run through; not the API's
    # MIDDLEWARE (pulp_content_asgi/routes/middleware.py has the default and why).
    "CONTENT_ASGI_ROUTE_MIDDLEWARE": None,
    # A running pulpcore-content ("http://127.0.0.1:24817") that answers the paths nothing
    # here serves (the legacy fallback, docs/migration.md); "" answers them 404.
    "CONTENT_ASGI_LEGACY_ORIGIN": "",
    # Seconds the legacy fallback waits to connect, and for each read, before 504.
    "CONTENT_ASGI_LEGACY_TIMEOUT": 60.0,
    # Dotted paths of ASGI middleware factories (app -> app), the first outermost.
    "CONTENT_ASGI_MIDDLEWARE": [],
    # Bytes an on-demand download may still fetch once no client (in any process) is
    # receiving it: with more left it is cancelled and nothing is saved; with less it is
    # finished and saved. None (or negative) finishes every download (issue #17).
    "CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES": None,
}


@dataclass(frozen=True)
class AppSettings:
    """A typed snapshot of the ``CONTENT_ASGI_*`` settings."""

    db_connections: int
    db_pool_timeout: float
    db_max_idle: float
    db_prepared_statements: bool
    chunk_size: int
    inline_file_size: int
    pathsend: bool
    server: str
    retry_after: int
    cache_timeout: float
    cache_retry: float
    cache_connections: int
    access_logfile: str
    health_path: str
    prometheus_enabled: bool
    metrics_path: str
    prometheus_dir: str
    log_level: str
    log_format: str
    route_middleware: tuple[str, ...]
    legacy_origin: str = ""
    legacy_timeout: float = 60.0
    middleware: tuple[str, ...] = ()
    reuse_port: bool = False
    ondemand_unattended_bytes: int | None = None
    header_timeout: float = 30.0
    max_connections: int = 65536
    file_read_threads: int = 512


#: The most file-reading threads a granian worker may be given (granian's own default
#: is 512; far larger values overflow its runtime's configuration).
MAX_FILE_READ_THREADS = 4096


def _get(settings: Any, name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def _whole(name: str, value: Any) -> int:
    """``value`` (an int, or text holding one) as an int; ImproperlyConfigured naming
    the setting ``name`` for anything else (``abc``, ``1.5``, ``true``, a list)."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ImproperlyConfigured(f"{name} must be a whole number; it is {value!r}")
    return value


def _integer(settings: Any, name: str, low: int | None = None,
             high: int | None = None) -> int:
    """A whole-number setting; raises ImproperlyConfigured naming it (the command turns
    that into one line and exit status 1) for anything else: text that is no number,
    ``1.5``, ``true``, a list, or a number outside ``low``..``high``."""
    value = _whole(name, _get(settings, name))
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ImproperlyConfigured(f"{name} must be {bounds}; it is {value}")
    return value


def _flag(value: Any) -> bool:
    """Booleans from dynaconf arrive typed, but a plain environment string may not."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _names(value: Any) -> tuple[str, ...]:
    """A list setting; a plain environment string may also be comma-separated."""
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(v).strip() for v in value or () if str(v).strip())


def load(settings: Any | None = None) -> AppSettings:
    """Read our settings from ``settings`` (Django's by default), with defaults filled in."""
    if settings is None:
        from django.conf import settings as django_settings

        settings = django_settings
    return AppSettings(
        db_connections=_integer(settings, "CONTENT_ASGI_DB_CONNECTIONS"),
        db_pool_timeout=float(_get(settings, "CONTENT_ASGI_DB_POOL_TIMEOUT")),
        db_max_idle=float(_get(settings, "CONTENT_ASGI_DB_MAX_IDLE")),
        db_prepared_statements=_flag(_get(settings, "CONTENT_ASGI_DB_PREPARED_STATEMENTS")),
        chunk_size=_integer(settings, "CONTENT_ASGI_CHUNK_SIZE"),
        inline_file_size=_integer(settings, "CONTENT_ASGI_INLINE_FILE_SIZE"),
        pathsend=_flag(_get(settings, "CONTENT_ASGI_PATHSEND")),
        server=str(_get(settings, "CONTENT_ASGI_SERVER")),
        retry_after=_integer(settings, "CONTENT_ASGI_RETRY_AFTER"),
        cache_timeout=float(_get(settings, "CONTENT_ASGI_CACHE_TIMEOUT")),
        cache_retry=float(_get(settings, "CONTENT_ASGI_CACHE_RETRY")),
        cache_connections=_integer(settings, "CONTENT_ASGI_CACHE_CONNECTIONS"),
        access_logfile=str(_get(settings, "CONTENT_ASGI_ACCESS_LOGFILE") or ""),
        health_path=str(_get(settings, "CONTENT_ASGI_HEALTH_PATH")),
        prometheus_enabled=_flag(_get(settings, "CONTENT_ASGI_PROMETHEUS_ENABLED")),
        metrics_path=str(_get(settings, "CONTENT_ASGI_METRICS_PATH")),
        prometheus_dir=str(_get(settings, "CONTENT_ASGI_PROMETHEUS_DIR") or ""),
        log_level=str(_get(settings, "CONTENT_ASGI_LOG_LEVEL") or ""),
        log_format=str(_get(settings, "CONTENT_ASGI_LOG_FORMAT") or "text"),
        route_middleware=_route_middleware(_get(settings, "CONTENT_ASGI_ROUTE_MIDDLEWARE")),
        legacy_origin=str(_get(settings, "CONTENT_ASGI_LEGACY_ORIGIN") or ""),
        legacy_timeout=float(_get(settings, "CONTENT_ASGI_LEGACY_TIMEOUT")),
        middleware=_names(_get(settings, "CONTENT_ASGI_MIDDLEWARE")),
        reuse_port=_flag(_get(settings, "CONTENT_ASGI_REUSE_PORT")),
        ondemand_unattended_bytes=_bound("CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES", _get(
            settings, "CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES")),
        header_timeout=float(_get(settings, "CONTENT_ASGI_HEADER_TIMEOUT")),
        max_connections=_integer(settings, "CONTENT_ASGI_MAX_CONNECTIONS"),
        file_read_threads=_integer(settings, "CONTENT_ASGI_FILE_READ_THREADS", 1,
                                   MAX_FILE_READ_THREADS),
    )


def _bound(name: str, value: Any) -> int | None:
    """A size limit in bytes; None, a negative number, an empty string or "none" mean
    none; anything else that is no whole number is refused (:func:`_whole`)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    number = _whole(name, value)
    return None if number < 0 else number


def _route_middleware(value: Any) -> tuple[str, ...]:
    if value is None:
        from pulp_content_asgi.routes.middleware import DEFAULT

        return DEFAULT
    return tuple(str(name) for name in value)


def apply_log_level() -> None:
    """Apply ``CONTENT_ASGI_LOG_LEVEL`` (the CLI's ``--log-level``) to our loggers."""
    import logging

    level = current().log_level
    if level:
        logging.getLogger("pulp_content_asgi").setLevel(level.upper())


@functools.lru_cache(maxsize=1)
def current() -> AppSettings:
    """The settings of this process, read once (the hot path must not hit dynaconf)."""
    return load()
