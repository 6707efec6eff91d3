"""The health endpoint: whether this worker can serve content, per dependency (database,
and Redis when the cache is on), and what the worker that answered holds (process id,
asyncio tasks, threads, open file descriptors), so a leak shows from outside.
``HEAD {CONTENT_PATH_PREFIX}``, Pulp's readiness probe, checks the database only
(:mod:`.readiness`)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from collections import Counter

from pulp_content_asgi import db
from pulp_content_asgi.cache import store
from pulp_content_asgi.entry import readiness
from pulp_content_asgi.serving.response import Response

log = logging.getLogger(__name__)


def _count(directory: str) -> int | None:
    """Entries of a /proc directory (None where there is no /proc: not Linux)."""
    try:
        return len(os.listdir(directory))
    except OSError:
        return None


def worker() -> dict[str, object]:
    """What this worker process holds now: ``pid``; ``asyncio_tasks`` (pending tasks of
    its event loop, this health request's own included when the server runs requests
    as tasks, as uvicorn does); ``threads`` (native threads, the server's own included,
    ``/proc/self/task``; Python's count off Linux); ``python_threads`` (Python threads by
    name without its number: ``content-db`` are the ORM threads, ``asyncio`` the default
    executor's, both pools that grow to their bound and stay); ``open_fds``
    (``/proc/self/fd``, None off Linux). Figures that keep growing on an idle worker are
    a leak."""
    threads = _count("/proc/self/task")
    named = Counter(re.sub(r"[_-]?\d+$", "", t.name) for t in threading.enumerate())
    return {"pid": os.getpid(), "asyncio_tasks": len(asyncio.all_tasks()),
            "threads": threads if threads is not None else threading.active_count(),
            "python_threads": dict(sorted(named.items())),
            "open_fds": _count("/proc/self/fd")}


async def check() -> Response:
    """200 with each dependency's state, or 503 naming what is down; both with the
    answering worker's figures (:func:`worker`) under ``"worker"``."""
    states: dict[str, str] = {}
    try:
        await db.run(readiness.select_one)
        states["database"] = "ok"
    except Exception as exc:
        log.warning("Health check: database unavailable: %s", exc)
        states["database"] = "unavailable"
    cache = store.current()
    if cache is None:
        states["redis"] = "disabled"
    else:
        states["redis"] = "ok" if await cache.ping() else "unavailable"
    healthy = all(state in ("ok", "disabled") for state in states.values())
    body = json.dumps({"healthy": healthy, **states, "worker": worker()}).encode()
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return Response(200 if healthy else 503, headers, body)
