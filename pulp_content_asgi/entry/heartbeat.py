"""The worker's ``AppStatus`` row, so ``/pulp/api/v3/status/`` lists it as a content app.

One row per worker process, written at start-up, beaten every ``CONTENT_APP_TTL // 4``
seconds and deleted at shutdown, as pulpcore-content does. A lost connection is retried
by :mod:`pulp_content_asgi.db`; if beats keep failing for longer than ``CONTENT_APP_TTL``
(the row already reads as offline by then) the worker exits with status 3 so its process
manager restarts it, matching pulpcore-content's fatal heartbeat failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from django.conf import settings
from django.db import DatabaseError, IntegrityError

from pulp_content_asgi import db

log = logging.getLogger(__name__)

WORKER_BOOT_ERROR = 3


def _register() -> object:
    from pulpcore.app.apps import pulp_plugin_configs
    from pulpcore.app.models import AppStatus
    from pulpcore.app.util import get_worker_name

    versions = {config.label: config.version for config in pulp_plugin_configs()}
    return AppStatus.objects.create(name=get_worker_name(), app_type="content",
                                    versions=versions)


class Heartbeat:
    """Owns this process's AppStatus row for the lifetime of the ASGI app."""

    def __init__(self) -> None:
        self.status: object | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register the worker (once); a duplicate name is a configuration error (raises)."""
        if self.status is not None:
            return
        try:
            self.status = await db.run(_register)
        except IntegrityError as exc:
            raise RuntimeError(
                "A content app with this worker name is already registered; make "
                "WORKER_NAME_TEMPLATE unique per process (it defaults to {pid}@{hostname})."
            ) from exc
        self._task = asyncio.create_task(self._beat(), name="content-heartbeat")

    async def _beat(self) -> None:
        interval = max(settings.CONTENT_APP_TTL // 4, 1)
        last_success = time.monotonic()
        name = getattr(self.status, "name", "?")
        while True:
            await asyncio.sleep(interval)
            try:
                await db.run(self.status.save_heartbeat)  # type: ignore[union-attr]
                last_success = time.monotonic()
                log.debug("Content app %r heartbeat written, next in %ss", name, interval)
            except (db.DatabaseUnavailable, DatabaseError) as exc:
                down_for = time.monotonic() - last_success
                log.warning("Content app %r could not write its heartbeat for %.0fs: %s",
                            name, down_for, exc)
                if down_for > settings.CONTENT_APP_TTL:
                    log.error("Content app %r failed to write a heartbeat for longer than "
                              "CONTENT_APP_TTL (%ss); exiting so the worker is restarted.",
                              name, settings.CONTENT_APP_TTL)
                    os._exit(WORKER_BOOT_ERROR)

    async def stop(self) -> None:
        """Stop beating and delete the row."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.status is not None:
            try:
                await db.run(self.status.delete)  # type: ignore[attr-defined]
            except (db.DatabaseUnavailable, DatabaseError) as exc:
                log.warning("Could not remove the content app's status row: %s", exc)
            self.status = None
