"""How busy the machine was with *other* work while a point was measured.

The load average cannot tell: the bench itself (server, wrk, upstream, PostgreSQL serving
the server) keeps two cores busy. :class:`OtherLoad` sums the CPU time, over a point's
wall time, of every process that is not the bench's: not this process or its
descendants (servers, wrk, nginx, the upstream), not a PostgreSQL backend connected to
the bench's database, not the Redis server the cache contenders use (a system service
here, not the bench's child: found by the port it listens on), not a kernel thread
(loopback traffic's softirq work is the bench's own). The figure is ``other_cores``:
CPU-seconds per second of wall time, so 0.5 means other processes took half a core on
average (2 cores here).

Counting, from ``/proc/<pid>/stat``: utime + stime + cutime + cstime of each counted
process at the start and the end, summed, end minus start. A counted process that exits
during the point is reaped by a counted parent whose cutime/cstime then holds its whole
life, and its start figure drops out of the end sum, so the difference is the time spent
inside the window. Two exceptions, both undercounting: PostgreSQL's postmaster reaps the
bench's own backends too, so only its own utime/stime count (another client's backend
that exits during the point loses its CPU), and a process whose parent is outside the
counted set (a reparented orphan) is lost when it exits. Good enough to say "this point
ran beside something else"; not a measure of that something.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

#: A point ran beside other work when other processes used at least this many cores on
#: average over it (a quarter of one of the 2 cores the bench pins server and client to).
LOADED_CORES = 0.25

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, list[str]] | None:
    """(comm, ppid, fields after comm) of ``pid``, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    return head.partition("(")[2], int(fields[1]), fields


def _processes() -> dict[int, tuple[str, int, list[str]]]:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            found[int(name)] = stat
    return found


def _descendants(root: int, table: dict[int, tuple[str, int, list[str]]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _kernel_thread(pid: int, ppid: int) -> bool:
    return pid == 2 or ppid == 2


def _postmaster(comm: str, ppid: int, table: dict[int, tuple[str, int, list[str]]]) -> bool:
    """PostgreSQL's postmaster: a ``postgres`` process whose parent is not one."""
    parent = table.get(ppid)
    return comm == "postgres" and (parent is None or parent[0] != "postgres")


def ticks(excluded: Iterable[int], root: int | None = None) -> dict[int, int]:
    """Clock ticks (user + system, + reaped children's but for the postmaster) of every
    process but ``root``'s family (default: this process), ``excluded`` and kernel
    threads."""
    table = _processes()
    skip = _descendants(os.getpid() if root is None else root, table) | set(excluded)
    found = {}
    for pid, (comm, ppid, fields) in table.items():
        if pid in skip or _kernel_thread(pid, ppid):
            continue
        # fields: [0] state, [1] ppid ... [11] utime, [12] stime, [13] cutime, [14] cstime
        own = int(fields[11]) + int(fields[12])
        found[pid] = own if _postmaster(comm, ppid, table) else \
            own + int(fields[13]) + int(fields[14])
    return found


def bench_backends(dbname: str | None) -> set[int]:
    """The PIDs of PostgreSQL backends connected to ``dbname`` (the bench's database);
    empty on failure."""
    if not dbname:
        return set()
    from bench.sampling import pg_connect

    try:
        with pg_connect() as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                (dbname,)).fetchall()
    except Exception:  # the figure is advisory: a failing query must not end a point
        return set()
    return {int(row[0]) for row in rows}


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes of TCP sockets listening on ``port`` (``/proc/net/tcp``, ``tcp6``;
    state 0A is LISTEN)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines, None)
                for line in lines:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def listeners(port: int | None) -> set[int]:
    """The PIDs of processes holding a socket that listens on TCP ``port`` (e.g. the
    Redis server the cache contenders use); empty when none or unreadable. Reading another
    user's ``/proc/<pid>/fd`` takes root (as the bench runs here and in CI): run as
    another user, a server of another user is not found and counts as other work again,
    which only overstates it."""
    if not port:
        return set()
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found = set()
    for name in os.listdir("/proc") if wanted else ():
        if not name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{name}/fd/{fd}") in wanted:
                    found.add(int(name))
                    break
            except OSError:
                continue
    return found


class OtherLoad:
    """Context manager: ``other_cores`` of the work done while it was open (see the
    module's docstring); ``dbname`` is the bench's database, whose backends are the
    bench's own; ``ports`` are TCP ports of servers the bench uses but did not start
    (Redis), whose listening processes are the bench's own too."""

    def __init__(self, dbname: str | None = None, ports: Iterable[int] = ()) -> None:
        self.dbname = dbname
        self.ports = tuple(ports)
        self.other_cores: float | None = None
        self.wall = 0.0

    def __enter__(self) -> OtherLoad:
        self._excluded = bench_backends(self.dbname) | self._servers()
        self._start = ticks(self._excluded)
        self._began = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = wall = time.monotonic() - self._began
        excluded = self._excluded | bench_backends(self.dbname) | self._servers()
        end = ticks(excluded)
        spent = sum(end.values()) - sum(v for pid, v in self._start.items()
                                        if pid not in excluded)
        self.other_cores = max(0.0, spent / _TICK / wall) if wall > 0 else None

    def _servers(self) -> set[int]:
        return set().union(*(listeners(port) for port in self.ports))

    def figures(self) -> dict[str, Any]:
        return {"other_cores": None if self.other_cores is None
                else round(self.other_cores, 3)}


def loaded(other_cores: float | None) -> bool:
    return other_cores is not None and other_cores >= LOADED_CORES
