"""What a server uses while it is measured: its process family's RSS and the bench
database's PostgreSQL connections (sampled in a thread), and the database's transaction
count."""

from __future__ import annotations

import os
import threading
from typing import Any


class Sampler:
    """Samples the server family's RSS and the bench database's PostgreSQL connections
    (``pg_stat_activity``) every 0.2 s in a thread, over one monitoring connection to
    the ``postgres`` database (not counted)."""

    def __init__(self, pid: int, dbname: str) -> None:
        self.pid, self.dbname = pid, dbname
        self.max_rss_per_process = 0
        self.max_rss_total = 0
        self.max_pg_connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from pulp_content_asgi.devtools.processes import family, rss

        with pg_connect() as conn:
            while not self._stop.is_set():
                sizes = [rss(p) for p in family(self.pid)]
                self.max_rss_per_process = max(self.max_rss_per_process, max(sizes, default=0))
                self.max_rss_total = max(self.max_rss_total, sum(sizes))
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                   (self.dbname,)).fetchone()
                self.max_pg_connections = max(self.max_pg_connections, int(row[0]) if row else 0)
                self._stop.wait(0.2)

    def figures(self) -> dict[str, float]:
        return {"max_rss_mib_per_process": self.max_rss_per_process / 2**20,
                "max_rss_mib_total": self.max_rss_total / 2**20,
                "max_pg_connections": self.max_pg_connections}

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def rss_now(pid: int) -> dict[str, float]:
    """The RSS of ``pid``'s family now, MiB: its largest process and the sum."""
    from pulp_content_asgi.devtools.processes import family, rss

    sizes = [rss(p) for p in family(pid)]
    return {"rss_mib_per_process": max(sizes, default=0) / 2**20,
            "rss_mib_total": sum(sizes) / 2**20, "processes": len(sizes)}


def pg_connect() -> Any:
    """A monitoring connection to the ``postgres`` database (not the bench database, so
    it is not counted among the server's connections)."""
    import psycopg

    return psycopg.connect(host=os.environ.get("PGHOST", "127.0.0.1"),
                           port=int(os.environ.get("PGPORT", "5432")),
                           user=os.environ.get("PGUSER", "postgres"), dbname="postgres",
                           autocommit=True)


def pg_transactions(dbname: str) -> int:
    """Committed plus rolled-back transactions of ``dbname`` so far (pg_stat_database,
    which PostgreSQL publishes about once a second)."""
    with pg_connect() as conn:
        row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                           "WHERE datname = %s", (dbname,)).fetchone()
        return int(row[0]) if row else 0
