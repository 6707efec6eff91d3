"""``make bench`` / ``make bench-quick``: our app, pulpcore-content and nginx side by side.

Same machine, same database and files, same worker counts; results go to
``bench/results/<date>-<machine>.json`` with a markdown table of ratios and PNG charts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STATE = os.path.join(ROOT, ".dev", "bench")
DBNAME = "pulp_content_asgi_bench"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def setup() -> dict[str, str]:
    from pulp_content_asgi.devtools import settings as devsettings

    devsettings.ensure_database(DBNAME)
    env = {"PULP_SETTINGS": devsettings.write(STATE, DBNAME)}
    os.environ.update(env)
    from pulp_content_asgi import bootstrap

    bootstrap.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return env


class Sampler:
    """Samples server RSS and PostgreSQL connections in the background."""

    def __init__(self, pid: int) -> None:
        from pulp_content_asgi.devtools.processes import family

        self.pid, self.family = pid, family
        self.max_rss_per_process = 0
        self.max_rss_total = 0
        self.max_pg_connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from pulp_content_asgi.devtools.processes import rss

        while not self._stop.is_set():
            sizes = [rss(p) for p in self.family(self.pid)]
            self.max_rss_per_process = max(self.max_rss_per_process, max(sizes, default=0))
            self.max_rss_total = max(self.max_rss_total, sum(sizes))
            self.max_pg_connections = max(self.max_pg_connections, pg_connections())
            time.sleep(0.1)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _pg(query: str) -> int:
    import psycopg

    with psycopg.connect(host=os.environ.get("PGHOST", "127.0.0.1"),
                         port=int(os.environ.get("PGPORT", "5432")),
                         user=os.environ.get("PGUSER", "postgres"), dbname="postgres",
                         autocommit=True) as conn:
        row = conn.execute(query, (DBNAME,)).fetchone()
        return int(row[0]) if row else 0


def pg_connections() -> int:
    return _pg("SELECT count(*) FROM pg_stat_activity WHERE datname = %s")


def pg_transactions() -> int:
    return _pg("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s")


def forget_cached() -> None:
    """Drop the data set's cached responses (each cache contender starts cold)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2)
    client.delete("bench-small", "bench-medium", "bench-large")


def warm(base: str, paths: list[str]) -> None:
    import urllib.request

    for path in paths:
        with urllib.request.urlopen(base + path) as response:
            response.read()


def measure_small(server: Any, paths: list[str], connections: int, seconds: float,
                  repeats: int, cpus: str | None, threads: int) -> dict:
    from bench import load

    runs = []
    for i in range(repeats):
        before = pg_transactions()
        result = load.wrk(server.base, paths, connections, seconds, threads, cpus)
        time.sleep(1.2)  # PostgreSQL publishes statistics about once a second
        result["db_round_trips_per_request"] = (pg_transactions() - before) / max(
            result["requests"], 1)
        runs.append(result)
        say(f"    c{connections} run {i + 1}: {result['rps']:.0f} req/s, "
            f"p99 {result['p99_ms']:.1f} ms, errors {result['errors']}")
    best = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]  # the median run
    return {**best, "rps_runs": [r["rps"] for r in runs]}


def measure_large(server: Any, path: str, seconds: float, repeats: int, cpus: str | None,
                  threads: int) -> dict:
    from bench import load

    runs = [load.wrk(server.base, [path], 8, seconds, threads, cpus) for _ in range(repeats)]
    best = sorted(runs, key=lambda r: r["bytes_per_s"])[len(runs) // 2]
    say(f"    1 GiB x8: {best['bytes_per_s'] / 1e9:.2f} GB/s")
    return {**best, "gbps_runs": [r["bytes_per_s"] / 1e9 for r in runs]}


def measure_slow(server: Any, paths: list[str], clients: int, probe: str) -> dict:
    from bench import load

    with Sampler(server.pid) as sampler:
        outcome = load.slow_readers(server.base, paths, clients, rate=256 * 1024,
                                    size=1 << 20, probe_path=probe)
    result = {**outcome.summary(), "max_rss_mib_per_process": sampler.max_rss_per_process / 2**20,
              "max_rss_mib_total": sampler.max_rss_total / 2**20,
              "max_pg_connections": sampler.max_pg_connections}
    say(f"    {clients} slow readers: {result['completed']} completed, "
        f"{result['failed']} failed, RSS {result['max_rss_mib_per_process']:.0f} MiB, "
        f"PG {result['max_pg_connections']}, probe p99 {result['probe_p99_ms']:.0f} ms "
        f"(ramp-up {result['ramp_probe_p99_ms']:.0f} ms)")
    return result


def measure_ondemand(chosen: list, data: Any) -> dict:
    """Cold on-demand requests through each app versus the upstream itself."""
    from bench import ondemand, servers

    say("on-demand: through the apps versus straight from the upstream")
    upstream = servers.start(servers.Nginx("upstream", "/pulp/content/", sendfile=False), 1,
                             STATE, None)
    try:
        paths = ondemand.build(upstream.base, data.medium_paths, data.large_path)
        out = {"upstream": ondemand.direct(upstream.base, paths)}
        for contender in chosen:
            if not isinstance(contender, (servers.ContentAsgi, servers.PulpcoreContent)):
                continue
            server = servers.start(contender, 1, STATE, None)
            try:
                out[contender.name] = ondemand.measure(server.base, paths)
            finally:
                servers.processes.stop(server)
            say(f"  {contender.name}: TTFB median {out[contender.name]['ttfb_ms_median']:.1f}"
                f" ms, 1 GiB at {out[contender.name]['large_gbps']:.2f} GB/s "
                f"(upstream: {out['upstream']['ttfb_ms_median']:.1f} ms, "
                f"{out['upstream']['large_gbps']:.2f} GB/s)")
        return out
    finally:
        servers.processes.stop(upstream)


def hops(env: dict[str, str], which: str, path: str) -> dict | None:
    """Thread hops and SQL queries per request, counted in-process (bench/hops.py)."""
    out = subprocess.run([sys.executable, "-m", "bench.hops", which, path], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    try:
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        say(f"  in-process count for {which} failed: {out.stderr[-500:]}")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a ~1 minute subset")
    parser.add_argument("--only-ondemand", action="store_true",
                        help="just the on-demand comparison")
    parser.add_argument("--contenders",
                        default="asgi-granian,asgi-uvicorn,pulpcore-content,nginx,nginx-copy,"
                                "asgi-granian-cache,pulpcore-content-cache")
    args = parser.parse_args()
    quick = args.quick
    seconds, repeats = (4, 1) if quick else (10, 3)
    concurrency = [64] if quick else [16, 64, 256]
    worker_counts = [1] if quick else [1, 2]
    slow_clients = 200 if quick else 1000

    say("preparing database and data set (the first run builds 1.2 GiB of files)")
    env = setup()
    from bench import dataset, servers

    data = dataset.build(STATE)
    from django.db import connections

    for conn in connections.all():  # our own connections must not count as the servers'
        conn.close()
        if getattr(conn, "pool", None) is not None:
            conn.close_pool()
    prefix = "/pulp/content/"
    small = [prefix + p for p in data.small_paths]
    medium = [prefix + p for p in data.medium_paths]
    chosen = [c for c in servers.CONTENDERS if c.name in args.contenders.split(",")]
    results: dict[str, Any] = {
        "meta": {"date": datetime.datetime.now(datetime.UTC).isoformat(),
                 "machine": socket.gethostname(), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "quick": quick,
                 "seconds": seconds, "repeats": repeats,
                 "pinning": "1 worker: server on CPU 0, wrk on CPU 1; 2 workers: unpinned"},
        "runs": [],
    }
    for workers in ([] if args.only_ondemand else worker_counts):
        server_cpus, client_cpus, threads = ("0", "1", 1) if workers == 1 else (None, None, 2)
        for contender in chosen:
            say(f"{contender.name}, {workers} worker(s)")
            if contender.cache:
                forget_cached()  # every cache contender starts cold
            server = servers.start(contender, workers, STATE, server_cpus)
            try:
                from bench import load

                paths = small
                if contender.cache:
                    # A hot set the cache holds: 500 files, each requested once first.
                    paths = small[:500]
                    warm(server.base, paths)
                load.wrk(server.base, paths, 16, 2, threads, client_cpus)  # warm-up
                run: dict[str, Any] = {"contender": contender.name, "workers": workers,
                                       "small": {}, "large": None, "slow": None}
                for c in concurrency:
                    run["small"][str(c)] = measure_small(server, paths, c, seconds, repeats,
                                                         client_cpus, threads)
                run["large"] = measure_large(server, prefix + data.large_path, seconds,
                                             repeats, client_cpus, threads)
                if workers == 1:
                    run["slow"] = measure_slow(server, medium, slow_clients, small[0])
                results["runs"].append(run)
            finally:
                servers.processes.stop(server)
    if not quick or args.only_ondemand:
        results["ondemand"] = measure_ondemand(chosen, data)
    say("counting thread hops per request in-process")
    results["hops"] = {"asgi": hops(env, "ours", small[0]),
                       "pulpcore-content": hops(env, "pulpcore", small[0])}
    from bench import report

    paths = report.write(results, os.path.join(HERE, "results"))
    say("wrote " + ", ".join(paths))
    with open(paths[1]) as table:
        print(table.read())


if __name__ == "__main__":
    main()
