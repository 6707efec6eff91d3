"""Collapsing downloads across worker processes (and hosts sharing WORKING_DIRECTORY).

The leader for an artifact is whoever holds a PostgreSQL session advisory lock derived
from the artifact's key and the *spool area*; PostgreSQL releases it if the leader's
process dies. The leader spools into a file whose name is derived from the same (and a
generation, :func:`spool_path`), next to a small JSON file with the upstream headers
and, at the end, the outcome (:mod:`.spool`);
followers read both. One dedicated connection per process holds all of its locks (never
one from the request pool). Without the database the process simply leads its own
downloads.

The spool area is an id kept in ``WORKING_DIRECTORY`` (:func:`spool_area`): every process
that sees the same directory (the workers of a host, or hosts sharing it over NFS) reads
the same id and so competes for the same lock, while a host with a directory of its own
has its own leader: a follower never waits for a spool file that another host writes on
a disk it cannot see.

Who still reads a download is a second lock, the *readers* lock (:func:`readers_id`): a
follower holds it shared while it has clients, and the leader, once its own clients have
left, takes it exclusively for a moment to learn that no other process reads the download
either (and to keep a new follower from starting while it cancels the download).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import uuid
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

#: The file in WORKING_DIRECTORY holding the spool area's id (hidden from ``*`` globs).
AREA_FILE = ".ondemand-spool-area"
_areas: dict[str, str] = {}
#: Part of every download lock's id (:func:`lock_id`) and every shared spool file's name
#: (:func:`spool_path`), so that processes compete for a lock exactly when they spool
#: under the same name. Releases that coordinate downloads otherwise must use another:
#: then neither follows the other, each leads its own download into its own file. Change
#: it whenever the lock, the spool's name or its format (the sidecar) changes.
SPOOL_GENERATION = "a4"


def _read_or_create(path: str) -> str:
    """The id in ``path``, written first if absent: created under a private name and
    hard-linked into place, so concurrent first callers (any host) all read one id."""
    with contextlib.suppress(FileNotFoundError), open(path) as existing:
        found = existing.read().strip()
        if found:
            return found
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mine = uuid.uuid4().hex
    private = f"{path}.{mine}"
    try:
        with open(private, "w") as out:
            out.write(mine)
        os.link(private, path)
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(private)
    with open(path) as existing:
        return existing.read().strip() or mine


def spool_area() -> str:
    """The id shared by every process that sees this process's WORKING_DIRECTORY (read
    once per process and directory). A directory this process cannot write gives an id
    of its own: it then leads every download it needs, never following another."""
    directory = str(settings.WORKING_DIRECTORY)
    if directory not in _areas:
        try:
            _areas[directory] = _read_or_create(os.path.join(directory, AREA_FILE))
        except OSError as exc:
            log.warning("Cannot keep the spool area id in %s (%s); this process will not "
                        "collapse its downloads with others.", directory, exc)
            _areas[directory] = uuid.uuid4().hex
    return _areas[directory]


def _identity(key: str) -> bytes:
    """What a download's lock and its spool file are both named after (32 bytes)."""
    return hashlib.sha256(f"{SPOOL_GENERATION}:{spool_area()}:{key}".encode()).digest()


def lock_id(key: str) -> int:
    """A signed 64-bit advisory lock id for ``key`` within this process's spool area and
    :data:`SPOOL_GENERATION`: only processes that spool under the same name compete for
    it (a process that followed a lock whose leader names its spool otherwise would wait
    for a file that never appears)."""
    return int.from_bytes(_identity(key)[:8], "big", signed=True)


def readers_id(key: str) -> int:
    """The lock that followers of ``key``'s download hold shared while they have clients."""
    return lock_id(f"{key}\0readers")


def spool_path(key: str) -> str:
    """The file the leader of ``key``'s download spools into, in WORKING_DIRECTORY.

    Derived from exactly what the leadership lock is derived from (:data:`SPOOL_GENERATION`,
    spool area and key, :func:`lock_id`): processes that compete for the same lock share
    the file, and only they. Earlier releases: 112dcc5 took its lock from the key alone
    and named its file ``ondemand-<sha256(key)>``; 9e3c274 to b459552 took it from spool
    area and key and named the file the same way; 9609e0c to 3340078 took it from area
    and key and named the file ``ondemand-a2-<sha256("a2:area:key")>``; 654fbda to
    476a855^ put "a2" in both lock and name, and 476a855 to 7907913^ "a3". Each of the
    first three pairings with a later release either led one download into one file
    (each truncating the other's bytes) or followed a lock whose leader wrote another
    file. Up to 872b7d3 a new spool truncated a file left at its path, while from 1916a8e
    a complete spool's inode is also the saved artifact's (:meth:`Spool.keep`), so those
    two must not share a path either. This release ("a4") takes a lock and a file
    differing from all of theirs: each leads its own download into its own file
    (tests/test_rolling_spool_e2e.py, against 112dcc5, b459552, 3340078 and 872b7d3).
    """
    name = _identity(key).hex()[:40]
    return os.path.join(str(settings.WORKING_DIRECTORY), f"ondemand-{SPOOL_GENERATION}-{name}")


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
        return self._ask("SELECT pg_try_advisory_lock(%s)", lock)

    def try_lock_shared(self, lock: int) -> bool | None:
        """Take ``lock`` shared: True; False while another process holds it exclusively;
        None when the database cannot tell."""
        return self._ask("SELECT pg_try_advisory_lock_shared(%s)", lock)

    def unlock(self, lock: int) -> None:
        self._release("SELECT pg_advisory_unlock(%s)", lock)

    def unlock_shared(self, lock: int) -> None:
        self._release("SELECT pg_advisory_unlock_shared(%s)", lock)

    def _ask(self, query: str, lock: int) -> bool | None:
        import psycopg

        with self._mutex:
            try:
                row = self._connection().execute(query, (lock,)).fetchone()
                return bool(row[0])
            except psycopg.Error as exc:
                log.warning("Cannot coordinate downloads through the database: %s", exc)
                self._conn = None
                return None

    def _release(self, query: str, lock: int) -> None:
        import psycopg

        with self._mutex:
            try:
                self._connection().execute(query, (lock,))
            except psycopg.Error:
                self._conn = None  # a lost session has released its locks anyway


coordinator = Coordinator()
