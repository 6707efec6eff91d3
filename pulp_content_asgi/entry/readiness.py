"""``HEAD {CONTENT_PATH_PREFIX}``: the request Pulp's container readiness probe sends.

pulp-oci-images' ``readyz.py`` (``is_content_healthy``) calls ``requests.head()`` on the
content path prefix and treats any 4xx/5xx as "not ready". pulpcore-content answers it
after its authentication middleware looked up the ``default`` Domain, so with the
database unreachable it answers 500 and the pod leaves the load balancer. We answer from
one ``SELECT 1`` through the same pooled ORM threads requests use (a busy pool makes the
probe wait its turn, as requests do; only an unreachable database makes it fail), and
keep the result for :data:`TTL` seconds with at
most one check in flight per worker: a storm of probes costs at most one query per
worker per :data:`TTL`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from django.db import connection

from pulp_content_asgi import db

log = logging.getLogger(__name__)

#: Seconds a check's result answers later probes (kubelet probes every 10 s by default).
TTL = 1.0
#: The statement, named so that it can be told apart in PostgreSQL's logs.
STATEMENT = "SELECT 1 /* pulp-content-asgi readiness */"


def select_one() -> None:
    """One round trip to the database (ORM thread); raises if it cannot be reached."""
    with connection.cursor() as cursor:
        cursor.execute(STATEMENT)


class DatabaseReadiness:
    """Whether this worker reaches its database, checked at most once per :data:`TTL`.

    One instance per worker process (its event loop). A check is bounded like any request
    (:func:`pulp_content_asgi.db.run`): while the worker's outage gate is closed it fails
    as soon as a fresh connection attempt does.
    """

    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._checked_at: float | None = None  # time.monotonic() when the last check ended
        self._reachable = False
        self._running: asyncio.Future[bool] | None = None

    async def reachable(self) -> bool:
        """True when the last check (at most ``ttl`` s old, else a new one) reached it."""
        if self._checked_at is not None and time.monotonic() - self._checked_at < self.ttl:
            return self._reachable
        if self._running is None:
            self._running = asyncio.ensure_future(self._check())
        # Shielded: a probe that hangs up must not cancel the check others wait for.
        return await asyncio.shield(self._running)

    async def _check(self) -> bool:
        try:
            await db.run(select_one)
            reachable = True
        except Exception as exc:  # any failure means "not ready"; the log says which
            log.warning("Readiness (HEAD on the content prefix): database unavailable: %s",
                        exc)
            reachable = False
        self._reachable, self._checked_at, self._running = reachable, time.monotonic(), None
        return reachable
