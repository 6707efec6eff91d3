"""The health endpoint: whether this worker can serve content, per dependency (database,
and Redis when the cache is on). ``HEAD {CONTENT_PATH_PREFIX}``, Pulp's readiness probe,
checks the database only (:mod:`.readiness`)."""

from __future__ import annotations

import json
import logging

from pulp_content_asgi import db
from pulp_content_asgi.cache import store
from pulp_content_asgi.entry import readiness
from pulp_content_asgi.serving.response import Response

log = logging.getLogger(__name__)


async def check() -> Response:
    """200 with each dependency's state, or 503 naming what is down."""
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
    body = json.dumps({"healthy": healthy, **states}).encode()
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return Response(200 if healthy else 503, headers, body)
