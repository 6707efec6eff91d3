"""Load generators: wrk for throughput and latency, asyncio clients for slow readers and
for a burst of arriving clients."""

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
        cpus: str | None = None, status: int | None = None) -> dict:
    """One wrk run over random ``paths``; the summary wrk's Lua ``done()`` printed.

    With ``status`` (e.g. 302), wrk also counts the responses with that status
    (``status_matched``, and ``status_per_s`` per second) and the others
    (``status_other``)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(paths))
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
            "--timeout", "30s", "-s", os.path.join(HERE, "wrk", "paths.lua"), base]
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120,
                              env={**os.environ, "PATHS": listing.name,
                                   **({"COUNT_STATUS": str(status)} if status else {})})
    finally:
        os.unlink(listing.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk exited {done.returncode} without a summary: "
                           f"{(done.stderr or done.stdout).strip()[-300:]}")
    result = json.loads(line[len("WRK_JSON "):])
    duration = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / duration
    result["bytes_per_s"] = result["bytes"] / duration
    if status:
        result["status_per_s"] = result["status_matched"] / duration
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


@dataclass
class BurstOutcome:
    """What ``clients`` one-request clients saw: ``completed`` got a whole 2xx body;
    ``statuses`` counts every status line received; ``errors`` counts the connections
    that failed before a whole response, by exception name."""

    clients: int
    completed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # from the first arrival to the last answer

    def summary(self) -> dict:
        return {"clients": self.clients, "completed": self.completed,
                "failed": self.clients - self.completed, "statuses": self.statuses,
                "errors": self.errors, "seconds": self.seconds}


async def _one_request(host: str, port: int, path: str, timeout: float) -> tuple[int, bool]:
    """(status, whole body received) for one GET on a new connection."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        body = await asyncio.wait_for(reader.read(), timeout)
        return status, length is None or len(body) == length
    finally:
        writer.close()


async def _burst(base: str, paths: Sequence[str], clients: int, window: float,
                 timeout: float) -> BurstOutcome:
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    outcome = BurstOutcome(clients)
    started = time.perf_counter()

    async def client(i: int) -> None:
        await asyncio.sleep(window * i / clients)  # evenly spread arrivals
        try:
            status, whole = await _one_request(host, port, paths[i % len(paths)], timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError,
                IndexError) as error:
            name = type(error).__name__
            outcome.errors[name] = outcome.errors.get(name, 0) + 1
            return
        outcome.statuses[str(status)] = outcome.statuses.get(str(status), 0) + 1
        if 200 <= status < 300 and whole:
            outcome.completed += 1
        elif not whole:
            outcome.errors["short body"] = outcome.errors.get("short body", 0) + 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    outcome.seconds = time.perf_counter() - started
    return outcome


def _raise_file_limit(clients: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, clients * 2 + 256)), hard))


def burst(base: str, paths: Sequence[str], clients: int = 1000, window: float = 2.0,
          timeout: float = 60.0) -> BurstOutcome:
    """``clients`` clients arriving evenly within ``window`` seconds, each sending one GET
    on its own connection and waiting up to ``timeout`` seconds per step (connect, head,
    body); counts completed and failed requests and the statuses seen."""
    _raise_file_limit(clients)
    return asyncio.run(_burst(base, paths, clients, window, timeout))


def slow_readers(base: str, paths: Sequence[str], clients: int, rate: float, size: int,
                 probe_path: str) -> SlowReaderOutcome:
    """``clients`` concurrent downloads of ``size``-byte files read at ``rate`` bytes/s,
    while a probe measures how long a small request takes (the server's loop lag)."""
    _raise_file_limit(clients)
    return asyncio.run(_slow_readers(base, paths, clients, rate, size, probe_path))
