"""Collapsing downloads across worker processes (and hosts sharing WORKING_DIRECTORY).

The leader for an artifact is whoever holds a PostgreSQL session advisory lock derived
from the artifact's key; PostgreSQL releases it if the leader's process dies. The leader
spools into a file whose name is derived from the same key, next to a small JSON file
with the upstream headers and, at the end, the outcome (:mod:`.spool`); followers read
both. One
dedicated connection per process holds all of its locks (never one from the request
pool). Without the database the process simply leads its own downloads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)


def lock_id(key: str) -> int:
    """A signed 64-bit advisory lock id for ``key``."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def spool_path(key: str) -> str:
    name = hashlib.sha256(key.encode()).hexdigest()[:40]
    return os.path.join(str(settings.WORKING_DIRECTORY), f"ondemand-{name}")


class Coordinator:
    """This process's advisory locks, on one connection of its own."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._mutex = threading.Lock()

    def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            db = settings.DATABASES["default"]
            self._conn = psycopg.connect(
                host=db.get("HOST") or None, port=db.get("PORT") or None,
                user=db.get("USER") or None, password=db.get("PASSWORD") or None,
                dbname=db.get("NAME"), autocommit=True,
                application_name="pulp-content-asgi-locks")
        return self._conn

    def try_lock(self, lock: int) -> bool | None:
        """True: we lead; False: someone else does; None: cannot tell (lead locally)."""
        import psycopg

        with self._mutex:
            try:
                row = self._connection().execute("SELECT pg_try_advisory_lock(%s)",
                                                 (lock,)).fetchone()
                return bool(row[0])
            except psycopg.Error as exc:
                log.warning("Cannot coordinate downloads through the database: %s", exc)
                self._conn = None
                return None

    def unlock(self, lock: int) -> None:
        import psycopg

        with self._mutex:
            try:
                self._connection().execute("SELECT pg_advisory_unlock(%s)", (lock,))
            except psycopg.Error:
                self._conn = None  # a lost session has released its locks anyway


coordinator = Coordinator()
