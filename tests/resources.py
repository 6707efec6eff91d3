"""What a worker process holds, read from outside: file descriptors by kind; threads by
pool and asyncio tasks (the health endpoint's ``worker`` figures), files in its
``WORKING_DIRECTORY`` and its PostgreSQL backends. The abort storm and the slow-client
tests compare these before and after (issue #17: "back to their idle figures").

Linux only (``/proc``). Only the standard library is imported at module level.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pulp_content_asgi import conf


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards ``wanted`` (capped by the hard
    limit); servers started afterwards inherit it. The soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)


def _sockets(pid: int) -> dict[str, tuple[int, int, str]]:
    """Socket inode -> (local port, remote port, TCP state hex) of every TCP socket in
    ``pid``'s network namespace (not only its own)."""
    found: dict[str, tuple[int, int, str]] = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as lines:
            next(lines)
            for line in lines:
                parts = line.split()
                local, remote, state, inode = parts[1], parts[2], parts[3], parts[9]
                found[inode] = (int(local.rsplit(":", 1)[1], 16),
                                int(remote.rsplit(":", 1)[1], 16), state)
    return found


@dataclass
class Figures:
    """One look at a worker. ``fds`` and ``threads`` are counted by kind."""

    fds: Counter = field(default_factory=Counter)
    threads: Counter = field(default_factory=Counter)
    tasks: int = 0
    working_files: list[str] = field(default_factory=list)
    pg_backends: int = 0
    rss: int = 0

    def summary(self) -> dict[str, int]:
        return {"fds": sum(self.fds.values()), "threads": sum(self.threads.values()),
                "tasks": self.tasks, "working_files": len(self.working_files),
                "pg_backends": self.pg_backends}


def _targets(pid: int) -> list[str]:
    """What ``pid``'s file descriptors point at (``socket:[inode]``, paths, ...)."""
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):  # closed meanwhile
                found.append(os.readlink(f"/proc/{pid}/fd/{name}"))
    return found


def own_sockets(pid: int) -> list[tuple[int, int, str]]:
    """(local port, remote port, TCP state hex) of each TCP socket ``pid`` holds."""
    sockets = _sockets(pid)
    return [sockets[t[8:-1]] for t in _targets(pid)
            if t.startswith("socket:[") and t[8:-1] in sockets]


def fds(pid: int, ports: dict[int, str], server_port: int, roots: dict[str, str]
        ) -> Counter:
    """``pid``'s open file descriptors by kind: ``client`` (a connection to
    ``server_port``), ``listen``, a name from ``ports`` (a connection to that remote port:
    ``postgresql``, ``redis``…), ``socket`` (any other), ``file:<root>`` (under one of
    ``roots``), ``file``, ``pipe``, ``anon`` (eventfd, epoll, …)."""
    sockets = _sockets(pid)
    kinds: Counter = Counter()
    for target in _targets(pid):
        if target.startswith("socket:["):
            local, remote, state = sockets.get(target[8:-1], (0, 0, ""))
            if state == "0A":
                kinds["listen"] += 1
            elif local == server_port:
                kinds["client"] += 1
            else:
                kinds[ports.get(remote, "socket")] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:") or target.startswith("/dev/"):
            kinds["anon"] += 1
        else:
            root = next((n for n, r in roots.items() if target.startswith(r + os.sep)), "")
            kinds[f"file:{root}" if root else "file"] += 1
    return kinds


#: Python thread pools a worker fills on demand and keeps (thread names without their
#: number, as the health endpoint groups them) and their bounds: the ORM threads
#: (CONTENT_ASGI_DB_CONNECTIONS), the event loop's default executor (``asyncio_N``, or
#: ``uvloop_N`` under uvloop: min(32, cpus + 4)) and pulpcore's downloader pool
#: (``pulpcore.download.base.THREADPOOL``, an unnamed ``ThreadPoolExecutor-N_M``, the same
#: default bound); the on-demand digests' threads (``ondemand/digests.py``: one per digest
#: of ALLOWED_CONTENT_CHECKSUMS, four by default) and the spool's writeback thread
#: (``ondemand/spool.py``: one).
THREAD_POOLS = {"content-db": conf.DEFAULTS["CONTENT_ASGI_DB_CONNECTIONS"],
                "asyncio": min(32, (os.cpu_count() or 1) + 4),
                "uvloop": min(32, (os.cpu_count() or 1) + 4),
                "ThreadPoolExecutor": min(32, (os.cpu_count() or 1) + 4),
                "ondemand-digest": 4,
                "ondemand-writeback": 1}


def threads(worker: dict[str, Any]) -> Counter:
    """A worker's threads from its health figures (entry/health.py ``worker``): each pool
    of :data:`THREAD_POOLS` and ``other`` (the server's own threads, psycopg-pool's,
    everything else)."""
    pooled: Counter = Counter()
    for name, count in worker["python_threads"].items():
        pool = name.split("-")[0] if name.startswith("ThreadPoolExecutor-") else name
        if pool in THREAD_POOLS:
            pooled[pool] += count
    return Counter({**pooled, "other": worker["threads"] - sum(pooled.values())})


def working_files(directory: str) -> list[str]:
    """Files under ``directory`` (spool files, sidecars, downloads in progress), but the
    spool-area id that stays for the directory's life."""
    found = []
    for top, _, names in os.walk(directory):
        found += [os.path.join(top, n) for n in names if n != ".ondemand-spool-area"]
    return sorted(found)


def pg_backends(pid: int, database: dict[str, Any]) -> int:
    """PostgreSQL backends connected from ``pid``'s sockets (its pool, its lock connection,
    anything else), matched by client port in ``pg_stat_activity``."""
    import psycopg

    pg_port = int(database.get("PORT") or 5432)
    ports = [local for local, remote, state in own_sockets(pid)
             if remote == pg_port and state == "01"]
    if not ports:
        return 0
    with psycopg.connect(host=database["HOST"], port=pg_port, user=database["USER"],
                         password=database.get("PASSWORD") or None, dbname="postgres",
                         autocommit=True) as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE client_port = "
                            "ANY(%s) AND pid <> pg_backend_pid()", (ports,)).fetchone()
    return int(row[0]) if row else 0
