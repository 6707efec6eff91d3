"""What one slow reader costs a worker, in resident memory (issue #18's goal row).

    .venv/bin/python -m bench.slowmem                  # the three contenders, 200 and 1000
    .venv/bin/python -m bench.slowmem --contenders asgi-uvicorn --clients 1000 --tracemalloc
    .venv/bin/python -m bench.slowmem --env PULP_CONTENT_ASGI_CHUNK_SIZE=65536

For each contender and each count N: the contender starts with one worker (its own
database, settings and files under ``.dev/slowmem``, a 16 MiB published file); the file is
downloaded once whole (lazy imports, pools and caches warm); the worker's RSS is read
from ``/proc`` (*idle*; also the process family's RSS and PSS, which counts the pages a
forked worker shares with its parent once); N connections each GET the file with a
4 KiB receive buffer and then read 1 KiB a second; once all have their response
headers, the worker's RSS is read every 0.5 s until it grew by less than 256 KiB over
3 s (*loaded*, at most 60 s). The cost of a slow connection is (loaded - idle) / N. The
connections are then closed and the RSS read again 3 s later (*after*: what the worker
kept).

The worker is the server's process with the largest RSS apart from the one started
(granian's and gunicorn's workers; uvicorn with one worker is that process).
``--tracemalloc`` runs the servers with ``PYTHONTRACEMALLOC`` and
``bench/memprobe/sitecustomize.py``, and prints the Python allocations of the worker
that grew between idle and loaded, by source line (tracemalloc slows the server: the
RSS figures of such a run are not the plain ones).

Results are printed and appended as one JSON line per point to
``.dev/slowmem/results.jsonl``. Nothing is asserted: the test that holds the mechanism
is ``tests/test_slow_reader_memory_e2e.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from pulp_content_asgi.devtools import databases

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STATE = os.path.join(ROOT, ".dev", "slowmem")
DBNAME = databases.name("slowmem")
BASE_PATH = "slowmem"
MIB = 1 << 20
#: The slow reader: its receive buffer (the kernel doubles it) and its pace.
RCVBUF = 4096
READ_BYTES, READ_EVERY = 1024, 1.0


def setup(size: int) -> tuple[dict[str, str], str]:
    """Settings, a migrated database and a published file of ``size`` bytes; the
    servers' environment and the file's URL path."""
    from pulp_content_asgi.devtools import settings as devsettings

    env = {"PULP_SETTINGS": devsettings.write(STATE, DBNAME)}
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pulpcore.app.settings")
    from pulp_content_asgi import bootstrap

    bootstrap.setup()
    from django.conf import settings

    from pulp_content_asgi.devtools import migrated

    if DBNAME not in databases.owned():
        migrated.fresh()  # a copy of the checkout's migrated template (made once)
    os.makedirs(settings.WORKING_DIRECTORY, exist_ok=True)
    return env, f"/pulp/content/{_publish(size)}/big.bin"


def _publish(size: int) -> str:
    from django.db import connections
    from pulp_file.app.models import FileDistribution

    from pulp_content_asgi.devtools import data

    base_path = f"{BASE_PATH}-{size}"
    if not FileDistribution.objects.filter(base_path=base_path).exists():
        blob = (os.urandom(MIB) * (size // MIB + 1))[:size]
        repository = data.repository(f"{base_path}-{os.getpid()}", {"big.bin": blob})
        data.distribute(base_path, publication=data.publish(repository.latest_version()))
    connections.close_all()
    return base_path


def rss(pid: int) -> int:
    from pulp_content_asgi.devtools.processes import rss as read

    return read(pid)


def pss(pid: int) -> int:
    from pulp_content_asgi.devtools.processes import pss as read

    return read(pid)


def worker_of(pid: int) -> int:
    """The process of ``pid``'s family with the largest RSS, ``pid`` itself excepted
    unless it is alone."""
    from pulp_content_asgi.devtools.processes import family

    others = [p for p in family(pid) if p != pid] or [pid]
    return max(others, key=rss)


async def _slow_reader(port: int, path: str, headed: list[int], closed: list[int],
                       stop: asyncio.Event) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await loop.sock_recv(sock, 1)  # headers only: the body stays queued
        if not chunk:
            raise ConnectionError("closed before the response headers")
        head += chunk
    headed.append(int(head.split(b" ", 2)[1]))
    try:
        while not stop.is_set():
            if not await loop.sock_recv(sock, READ_BYTES):
                closed.append(1)  # the server ended the body early: not a held connection
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), READ_EVERY)
    finally:
        sock.close()


async def _crowd(port: int, path: str, clients: int, worker: int, probe: str | None
                 ) -> dict[str, Any]:
    """N slow readers; the worker's RSS once it settled (and its Python allocations)."""
    stop, headed, closed = asyncio.Event(), [], []  # type: ignore[var-annotated]
    tasks = []
    for _ in range(clients):
        tasks.append(asyncio.create_task(_slow_reader(port, path, headed, closed, stop)))
        await asyncio.sleep(0.002)  # arrivals over ~2 s per 1,000
    started = time.monotonic()
    while len(headed) < clients and time.monotonic() - started < 120:
        if any(t.done() and t.exception() for t in tasks):
            break
        await asyncio.sleep(0.2)
    samples: list[tuple[float, int]] = []
    began = time.monotonic()
    while time.monotonic() - began < 60:
        now = time.monotonic()
        samples.append((now, rss(worker)))
        past = [s for t, s in samples if now - t >= 3.0]
        if past and samples[-1][1] - past[-1] < 256 * 1024:
            break
        await asyncio.sleep(0.5)
    held = len(headed) - len(closed)  # open, body unfinished, when the RSS settled
    loaded = max(s for _, s in samples)
    failures = [repr(t.exception()) for t in tasks if t.done() and t.exception()]
    _take(probe, f"loaded-{clients}")
    python = await asyncio.to_thread(_probe_report, probe, worker, f"loaded-{clients}")
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"headed": len(headed), "held": held, "statuses": sorted(set(headed)),
            "loaded": loaded,
            "settle_s": round(time.monotonic() - began, 1), "failures": failures[:3],
            "python": python}


def _take(probe: str | None, label: str) -> None:
    if probe:
        open(os.path.join(probe, f"take-{label}"), "w").close()


def _probe_report(probe: str | None, worker: int, label: str) -> str:
    if not probe:
        return ""
    path = os.path.join(probe, f"{worker}-{label}.txt")
    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.2)
    with open(path) as report:
        return report.read()


def measure(contender: Any, clients: int, path: str, env: dict[str, str], port: int | None,
            probe: str | None, root: str = os.path.join(STATE, "servers"),
            timeout: float = 120) -> dict[str, Any]:
    """One point: ``contender`` on 1 worker, ``clients`` connections holding a GET of
    ``path`` (at least a few MiB, so the kernel's socket buffers cannot take it whole)
    open; the figures described in the module docstring. ``port`` None: one of
    ``bench.servers.PORTS``. Raises ``bench.servers.StartFailure``."""
    from bench import servers
    from pulp_content_asgi.devtools import processes

    extra = dict(env)
    if probe:
        extra.update({"PYTHONTRACEMALLOC": "1", "SLOWMEM_PROBE_DIR": probe,
                      "PYTHONPATH": os.pathsep.join(
                          [os.path.join(HERE, "memprobe"), os.environ.get("PYTHONPATH", "")])})
    server = servers.start(contender, 1, root, None, probe="/pulp/content/", timeout=timeout,
                           port=port, extra_env=extra)
    try:
        size = 0
        with urllib.request.urlopen(server.base + path, timeout=120) as response:
            while chunk := response.read(MIB):  # in pieces: the file may be 1 GiB
                size += len(chunk)
        time.sleep(1.0)
        worker = worker_of(server.pid)
        idle = rss(worker)
        family_idle = sum(rss(p) for p in processes.family(server.pid))
        family_idle_pss = sum(pss(p) for p in processes.family(server.pid))
        _take(probe, f"idle-{clients}")
        _probe_report(probe, worker, f"idle-{clients}")
        listening = urlsplit(server.base).port  # the one servers.start took when port is None
        assert listening is not None
        crowd = asyncio.run(_crowd(listening, path, clients, worker, probe))
        time.sleep(3.0)
        after = rss(worker)
    finally:
        processes.stop(server)
    result = {"contender": contender.name, "clients": clients, "file_bytes": size,
              "idle_mib": idle / MIB, "family_idle_mib": family_idle / MIB,
              "family_idle_pss_mib": family_idle_pss / MIB,
              "loaded_mib": crowd["loaded"] / MIB, "after_mib": after / MIB,
              "per_connection_kib": (crowd["loaded"] - idle) / clients / 1024,
              **{k: v for k, v in crowd.items() if k not in ("loaded", "python")},
              "env": env, "tracemalloc": bool(probe), "commit": _commit()}
    if crowd["python"]:
        result["python_growth"] = crowd["python"]
    return result


def _commit() -> str:
    found = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                           capture_output=True, text=True, check=False)
    return found.stdout.strip()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contenders", default="asgi-granian,asgi-uvicorn,pulpcore-content")
    parser.add_argument("--clients", default="200,1000")
    parser.add_argument("--size", type=int, default=16 * MIB, help="file size in bytes")
    parser.add_argument("--port", type=int, default=25400, help="the servers' port")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE added to the servers' environment")
    parser.add_argument("--tracemalloc", action="store_true")
    return parser.parse_args()


def main() -> None:
    from bench import servers

    args = arguments()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env, path = setup(args.size)
    env.update(dict(item.split("=", 1) for item in args.env))
    chosen = [c for c in servers.CONTENDERS if c.name in args.contenders.split(",")]
    out = os.path.join(STATE, "results.jsonl")
    for contender in chosen:
        for clients in (int(c) for c in args.clients.split(",")):
            probe = tempfile.mkdtemp(prefix="slowmem-") if args.tracemalloc else None
            try:
                result = measure(contender, clients, path, env, args.port, probe)
            finally:
                if probe:
                    shutil.rmtree(probe, ignore_errors=True)
            with open(out, "a") as results:
                results.write(json.dumps(result) + "\n")
            failures = f" {result['failures']}" if result["failures"] else ""
            print(f"{contender.name:18} N={clients:5}: idle {result['idle_mib']:.1f} MiB "
                  f"(family {result['family_idle_mib']:.1f}, PSS "
                  f"{result['family_idle_pss_mib']:.1f}), loaded "
                  f"{result['loaded_mib']:.1f}, after {result['after_mib']:.1f}; "
                  f"{result['per_connection_kib']:.1f} KiB per connection "
                  f"(headers {result['headed']}/{clients}, settled in "
                  f"{result['settle_s']} s){failures}", flush=True)
            if "python_growth" in result:
                print(result["python_growth"], flush=True)


if __name__ == "__main__":
    main()
