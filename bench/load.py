"""Load generators: wrk for throughput and latency, an asyncio client for slow readers."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))


def wrk(base: str, paths: Sequence[str], connections: int, seconds: float, threads: int = 1,
        cpus: str | None = None) -> dict:
    """One wrk run over random ``paths``; the summary wrk's Lua ``done()`` printed."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(paths))
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
            "--timeout", "30s", "-s", os.path.join(HERE, "wrk", "paths.lua"), base]
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120,
                             env={**os.environ, "PATHS": listing.name}, check=True).stdout
    finally:
        os.unlink(listing.name)
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    result = json.loads(line[len("WRK_JSON "):])
    duration = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / duration
    result["bytes_per_s"] = result["bytes"] / duration
    result["errors"] = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors",
                                               "status_errors", "timeouts"))
    return result


def _percentiles(values: list[float], prefix: str) -> dict:
    ordered = sorted(values) or [0.0]
    return {f"{prefix}_p50_ms": statistics.median(ordered),
            f"{prefix}_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            f"{prefix}_max_ms": ordered[-1], f"{prefix}_count": len(values)}


@dataclass
class SlowReaderOutcome:
    """``ramp_ms``: probes while the clients connect (each new download costs a lookup);
    ``steady_ms``: probes once all are streaming (the event loop's lag under the load)."""

    clients: int
    completed: int = 0
    failed: int = 0
    ramp_ms: list[float] = field(default_factory=list)
    steady_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        return {"clients": self.clients, "completed": self.completed, "failed": self.failed,
                **_percentiles(self.ramp_ms, "ramp_probe"),
                **_percentiles(self.steady_ms, "probe")}


async def _get(host: str, port: int, path: str, rate: float | None, expected: int | None,
               rcvbuf: int = 16384) -> int:
    """GET ``path`` over a raw connection, reading at ``rate`` bytes/s; returns body size."""
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"status {status}")
    received, step = 0, 16384
    while chunk := await reader.read(step):
        received += len(chunk)
        if rate:
            await asyncio.sleep(len(chunk) / rate)
    writer.close()
    if expected is not None and received != expected:
        raise RuntimeError(f"short body: {received} of {expected}")
    return received


async def _slow_readers(base: str, paths: Sequence[str], clients: int, rate: float,
                        size: int, probe_path: str) -> SlowReaderOutcome:
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    outcome = SlowReaderOutcome(clients)
    done = asyncio.Event()
    ramp, started_all = clients * 0.002, time.perf_counter()

    async def reader(i: int) -> None:
        await asyncio.sleep(i * 0.002)  # ramp up over ~2 s, as real clients arrive
        try:
            await _get(host, port, paths[i % len(paths)], rate, size)
            outcome.completed += 1
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            outcome.failed += 1

    async def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            steady = started - started_all > ramp + 1.0
            bucket = outcome.steady_ms if steady else outcome.ramp_ms
            try:
                await _get(host, port, probe_path, None, None)
                bucket.append((time.perf_counter() - started) * 1000)
            except (OSError, RuntimeError, asyncio.IncompleteReadError):
                bucket.append(float("inf"))
            await asyncio.sleep(0.1)

    probing = asyncio.create_task(probe())
    await asyncio.gather(*(reader(i) for i in range(clients)))
    done.set()
    await probing
    return outcome


def slow_readers(base: str, paths: Sequence[str], clients: int, rate: float, size: int,
                 probe_path: str) -> SlowReaderOutcome:
    """``clients`` concurrent downloads of ``size``-byte files read at ``rate`` bytes/s,
    while a probe measures how long a small request takes (the server's loop lag)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, clients * 2 + 256)), hard))
    return asyncio.run(_slow_readers(base, paths, clients, rate, size, probe_path))
