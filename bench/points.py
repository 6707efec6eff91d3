"""One measurement each, against a started server: a wrk run over small files (or the
object set's redirects), the 1 GiB file, slow readers with the idle RSS before them, a
burst of arriving clients. ``bench/run.py`` strings them into a run."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

from pulp_content_asgi.devtools import databases

#: This checkout's benchmark database (``make clean`` drops it with the others).
DBNAME = databases.name("bench")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def warm(base: str, paths: list[str]) -> None:
    for path in paths:
        with urllib.request.urlopen(base + path, timeout=60) as response:
            response.read()


def cache_hits(base: str, paths: list[str]) -> dict[str, int]:
    """GET each of ``paths`` once more and count the answers a response cache served
    (``X-PULP-CACHE: HIT``, as pulpcore-content and our app both say): a cache
    contender's hot set is warm when every one is a hit."""
    hits = 0
    for path in paths:
        with urllib.request.urlopen(base + path, timeout=60) as response:
            response.read()
            hits += response.headers.get("X-PULP-CACHE", "").upper() == "HIT"
    return {"hits": hits, "of": len(paths)}


def small_run(server: Any, paths: list[str], connections: int, seconds: float,
              cpus: str | None, threads: int, status: int | None = None) -> dict:
    """One wrk run over the small files (or, with ``status``, the object-storage set,
    counting the responses with that status), with DB transactions per request and the
    server's RSS and PostgreSQL connections sampled meanwhile."""
    from bench import load, sampling

    before = sampling.pg_transactions(DBNAME)
    with sampling.Sampler(server.pid, DBNAME) as sampler:
        result = load.wrk(server.base, paths, connections, seconds, threads, cpus, status)
    time.sleep(1.2)  # PostgreSQL publishes statistics about once a second
    result["db_round_trips_per_request"] = (sampling.pg_transactions(DBNAME) - before) / max(
        result["requests"], 1)
    result.update(sampler.figures())
    rate = (f"{result['status_per_s']:.0f} {status}/s, other statuses "
            f"{result['status_other']}" if status else f"{result['rps']:.0f} req/s")
    say(f"    c{connections}: {rate}, p99 {result['p99_ms']:.1f} ms, "
        f"socket errors {result['errors'] - result['status_errors']}, "
        f"HTTP>=400 {result['status_errors']}, PG {result['max_pg_connections']}")
    return result


def large_run(server: Any, path: str, seconds: float, cpus: str | None, threads: int) -> dict:
    from bench import load

    result = load.wrk(server.base, [path], 8, seconds, threads, cpus)
    say(f"    1 GiB x8: {result['bytes_per_s'] / 1e9:.2f} GB/s, errors {result['errors']}")
    return result


def idle(pid: int) -> dict[str, float]:
    """The server's RSS with no client, after a second's pause: the largest process (the
    worker, with 1 worker) and the family (supervisor or arbiter and workers), MiB."""
    from bench import sampling

    time.sleep(1.0)
    return sampling.rss_now(pid)


def slow_run(server: Any, paths: list[str], clients: int, probe: str) -> dict:
    """``clients`` slow readers, with the server's idle RSS just before (what the
    connections add is the peak less that)."""
    from bench import load, sampling

    before = idle(server.pid)
    with sampling.Sampler(server.pid, DBNAME) as sampler:
        outcome = load.slow_readers(server.base, paths, clients, rate=256 * 1024,
                                    size=1 << 20, probe_path=probe)
    result = {**outcome.summary(), **sampler.figures(),
              "idle_rss_mib_per_process": before["rss_mib_per_process"],
              "idle_rss_mib_total": before["rss_mib_total"]}
    added = (result["max_rss_mib_per_process"] - before["rss_mib_per_process"]) * 1024
    say(f"    {clients} slow readers: {result['completed']} completed, "
        f"{result['failed']} failed, RSS {result['max_rss_mib_per_process']:.0f} MiB "
        f"(idle {before['rss_mib_per_process']:.0f}: {added / clients:.1f} KiB per "
        f"connection), PG {result['max_pg_connections']}, probe p99 "
        f"{result['probe_p99_ms']:.0f} ms")
    return result


def burst_run(server: Any, paths: list[str], clients: int) -> dict:
    from bench import load, sampling

    with sampling.Sampler(server.pid, DBNAME) as sampler:
        outcome = load.burst(server.base, paths, clients, window=2.0)
    result = {**outcome.summary(), **sampler.figures()}
    say(f"    burst of {clients}: {result['completed']} completed, {result['failed']} failed,"
        f" statuses {result['statuses']}, errors {result['errors']}, "
        f"{result['seconds']:.1f} s")
    return result
