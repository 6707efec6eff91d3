"""``make bench`` / ``make bench-quick``: our app, pulpcore-content and nginx side by side.

Same machine, same database and files, same worker counts; every point is run
``--repeats`` times. Results go to ``bench/results/<UTC start>-<machine>-<kind>.json``
(rewritten after every point) with a generated markdown report and PNG charts, written
at the end and also when the run is interrupted or fails. A contender that does not
start becomes a "did not start" row and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from types import FrameType
from typing import Any

from pulp_content_asgi.devtools import databases

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STATE = os.path.join(ROOT, ".dev", "bench")
#: This checkout's benchmark database (``make clean`` drops it with the others).
DBNAME = databases.name("bench")
PREFIX = "/pulp/content/"
DEFAULT_CONTENDERS = ("asgi-granian,asgi-uvicorn,pulpcore-content,pulpcore-content-uvloop,"
                      "nginx,nginx-copy,asgi-granian-cache,pulpcore-content-cache,"
                      "pulpcore-content-uvloop-cache")
QUICK_CONTENDERS = "asgi-granian,pulpcore-content,pulpcore-content-uvloop,nginx,nginx-copy"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Plan:
    """What one run measures: seconds per wrk run, runs per point, concurrency levels,
    worker counts, slow-reader and burst clients, and how long a start may take."""

    quick: bool
    seconds: float
    repeats: int
    concurrency: tuple[int, ...]
    worker_counts: tuple[int, ...]
    slow_clients: int
    burst_clients: int
    start_timeout: float

    def duration(self, connections: int) -> float:
        """Seconds per small-file wrk run at ``connections``: at least ``seconds`` and
        ``connections / 8``. pulpcore-content answers its concurrent requests in batches
        (all of a batch finish together); at ~40-60 req/s a c256 batch takes ~5 s, so
        a 10 s window holds two batches and the count jumps by a whole batch."""
        return max(self.seconds, connections / 8)

    def meta(self) -> dict[str, Any]:
        return {"quick": self.quick, "seconds": self.seconds, "repeats": self.repeats,
                "concurrency": list(self.concurrency), "workers": list(self.worker_counts),
                "small_seconds": {str(c): self.duration(c) for c in self.concurrency},
                "slow_clients": self.slow_clients, "burst_clients": self.burst_clients,
                "start_timeout": self.start_timeout,
                "pinning": "1 worker: server on CPU 0, wrk on CPU 1; 2 workers: unpinned"}


def pool_size() -> int:
    """Our app's PostgreSQL pool per worker (CONTENT_ASGI_DB_CONNECTIONS, docs/settings.md)."""
    from pulp_content_asgi import conf

    return int(conf.load().db_connections)


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


def close_our_connections() -> None:
    """Our own database connections must not count as the servers'."""
    from django.db import connections

    for conn in connections.all():
        conn.close()
        if getattr(conn, "pool", None) is not None:
            conn.close_pool()


def forget_cached() -> None:
    """Drop the data set's cached responses (each cache contender starts cold)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2)
    client.delete("bench-small", "bench-medium", "bench-large")


def warm(base: str, paths: list[str]) -> None:
    for path in paths:
        with urllib.request.urlopen(base + path, timeout=60) as response:
            response.read()


def small_run(server: Any, paths: list[str], connections: int, seconds: float,
              cpus: str | None, threads: int) -> dict:
    """One wrk run over the small files, with DB transactions per request and the
    server's RSS and PostgreSQL connections sampled meanwhile."""
    from bench import load, sampling

    before = sampling.pg_transactions(DBNAME)
    with sampling.Sampler(server.pid, DBNAME) as sampler:
        result = load.wrk(server.base, paths, connections, seconds, threads, cpus)
    time.sleep(1.2)  # PostgreSQL publishes statistics about once a second
    result["db_round_trips_per_request"] = (sampling.pg_transactions(DBNAME) - before) / max(
        result["requests"], 1)
    result.update(sampler.figures())
    say(f"    c{connections}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, "
        f"socket errors {result['errors'] - result['status_errors']}, "
        f"HTTP>=400 {result['status_errors']}, PG {result['max_pg_connections']}")
    return result


def large_run(server: Any, path: str, seconds: float, cpus: str | None, threads: int) -> dict:
    from bench import load

    result = load.wrk(server.base, [path], 8, seconds, threads, cpus)
    say(f"    1 GiB x8: {result['bytes_per_s'] / 1e9:.2f} GB/s, errors {result['errors']}")
    return result


def slow_run(server: Any, paths: list[str], clients: int, probe: str) -> dict:
    from bench import load, sampling

    with sampling.Sampler(server.pid, DBNAME) as sampler:
        outcome = load.slow_readers(server.base, paths, clients, rate=256 * 1024,
                                    size=1 << 20, probe_path=probe)
    result = {**outcome.summary(), **sampler.figures()}
    say(f"    {clients} slow readers: {result['completed']} completed, "
        f"{result['failed']} failed, RSS {result['max_rss_mib_per_process']:.0f} MiB, "
        f"PG {result['max_pg_connections']}, probe p99 {result['probe_p99_ms']:.0f} ms")
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


@dataclass(frozen=True)
class Suite:
    """Everything a contender's measurements need besides the contender."""

    plan: Plan
    small: list[str]
    medium: list[str]
    large: str
    fail_start: frozenset[str]


def measure(recorder: Any, suite: Suite, contender: Any, workers: int) -> None:
    """Start ``contender`` with ``workers`` workers and run every point ``repeats`` times,
    saving the JSON after each; a start failure or a failing point is recorded in the
    run's entry (status, reason, log) and the suite goes on."""
    from bench import load, servers
    from pulp_content_asgi.devtools import processes

    plan = suite.plan
    server_cpus, client_cpus, threads = ("0", "1", 1) if workers == 1 else (None, None, 2)
    entry = recorder.add_run({"contender": contender.name, "workers": workers,
                              "status": "starting", "small": {}, "large": [], "slow": [],
                              "burst": []})
    if contender.cache:
        forget_cached()  # every cache contender starts cold
    try:
        server = servers.start(contender, workers, STATE, server_cpus, probe=suite.small[0],
                               timeout=plan.start_timeout,
                               fail=contender.name in suite.fail_start)
    except servers.StartFailure as failure:
        entry.update(status="did not start", error=failure.reason, log=failure.log_path)
        say(f"  did not start: {failure}")
        recorder.save()
        return
    entry.update(status="running", log=server.log_path)
    try:
        paths = suite.small
        if contender.cache:
            # A hot set the cache holds: 500 files, each requested once first.
            paths = suite.small[:500]
            warm(server.base, paths)
        load.wrk(server.base, paths, 16, 5, threads, client_cpus)  # warm-up
        # A slow server still works on the requests wrk dropped at the end of the
        # warm-up; one more request waits (roughly) for that before measuring.
        warm(server.base, paths[:1])
        mapped, family = servers.uvloop_workers(server.pid)
        entry["uvloop_processes"] = {"mapped": mapped, "processes": family}
        for c in plan.concurrency:
            runs = entry["small"].setdefault(str(c), [])
            for _ in range(plan.repeats):
                runs.append(small_run(server, paths, c, plan.duration(c), client_cpus,
                                      threads))
                recorder.save()
        for _ in range(plan.repeats):
            entry["large"].append(large_run(server, PREFIX + suite.large, plan.seconds,
                                            client_cpus, threads))
            recorder.save()
        if workers == 1:
            for _ in range(plan.repeats):
                entry["slow"].append(slow_run(server, suite.medium, plan.slow_clients,
                                              suite.small[0]))
                recorder.save()
            for _ in range(plan.repeats):
                entry["burst"].append(burst_run(server, paths, plan.burst_clients))
                recorder.save()
        entry["status"] = "ran"
    except Exception as error:  # recorded in the results; the other contenders still run
        entry.update(status="failed", error=f"{type(error).__name__}: {error}"[:500])
        say(f"  failed: {entry['error']} (log: {server.log_path})")
    finally:
        processes.stop(server)
        recorder.save()


def measure_ondemand(recorder: Any, suite: Suite, chosen: list, data: Any) -> None:
    """Cold on-demand requests through each app (cache off) versus the upstream itself,
    ``repeats`` times each; recorded under ``ondemand``, with the hashing limit
    (``ondemand.hashing_limit``) measured before every run of an app, so its spread
    covers the machine's load over the same minutes."""
    from bench import ondemand, servers
    from pulp_content_asgi.devtools import processes

    say("on-demand: through the apps versus straight from the upstream")
    out: dict[str, Any] = {"hashing": {"status": "ran", "runs": []}}
    recorder.results["ondemand"] = out
    large_file = os.path.join(data.nginx_root, data.large_path)
    try:
        upstream = servers.start(servers.Nginx("upstream", PREFIX, sendfile=False), 1, STATE,
                                 None, probe=suite.small[0], timeout=suite.plan.start_timeout)
    except servers.StartFailure as failure:
        out["upstream"] = {"status": "did not start", "error": failure.reason,
                           "log": failure.log_path}
        return
    try:
        paths = ondemand.build(upstream.base, data.medium_paths, data.large_path)
        out["upstream"] = {"status": "ran", "runs": [
            ondemand.direct(upstream.base, paths) for _ in range(suite.plan.repeats)]}
        recorder.save()
        for contender in chosen:
            if contender.cache or not isinstance(
                    contender, servers.ContentAsgi | servers.PulpcoreContent):
                continue
            out[contender.name] = ondemand_contender(suite, contender, paths, large_file,
                                                     out["hashing"]["runs"])
            recorder.save()
    finally:
        processes.stop(upstream)


def ondemand_contender(suite: Suite, contender: Any, paths: list[str], large_file: str,
                       hashing: list[dict]) -> dict:
    """``repeats`` cold runs through ``contender``, each after a measure of the hashing
    limit of ``large_file`` (appended to ``hashing``)."""
    from bench import ondemand, servers
    from pulp_content_asgi.devtools import processes

    try:
        server = servers.start(contender, 1, STATE, None, probe=suite.small[0],
                               timeout=suite.plan.start_timeout,
                               fail=contender.name in suite.fail_start)
    except servers.StartFailure as failure:
        say(f"  {contender.name} did not start: {failure}")
        return {"status": "did not start", "error": failure.reason, "log": failure.log_path}
    try:
        runs = []
        for _ in range(suite.plan.repeats):
            hashing.append(ondemand.hashing_limit(large_file))
            runs.append(ondemand.measure(server.base, paths, server.process.pid,
                                         suite.small[0]))
        ttfb = ", ".join(f"{r['ttfb_ms_median']:.1f}" for r in runs)
        gbps = ", ".join(f"{r['large_gbps']:.2f}" for r in runs)
        limit = ", ".join(f"{r['gbps']:.2f}" for r in hashing[-len(runs):])
        cpu = ", ".join(f"{r['large_server_cpu_s']:.1f}" for r in runs)
        probes = ", ".join(f"{r.get('probe_ms_median', 0):.0f}/{r.get('probe_ms_max', 0):.0f}"
                           for r in runs)
        hashing_cpu = ", ".join(f"{r['cpu_seconds']:.1f}" for r in hashing[-len(runs):])
        say(f"  {contender.name}: TTFB medians {ttfb} ms, 1 GiB at {gbps} GB/s, server CPU "
            f"{cpu} s, probe median/max {probes} ms (hashing limit before each: {limit} "
            f"GB/s, {hashing_cpu} CPU s)")
        return {"status": "ran", "runs": runs}
    except Exception as error:  # recorded; the other contenders still run
        say(f"  {contender.name} failed: {error}")
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"[:500],
                "log": server.log_path}
    finally:
        processes.stop(server)


def hops(env: dict[str, str], which: str, path: str) -> dict | None:
    """Thread hops and SQL queries per request, counted in-process (bench/hops.py)."""
    try:
        out = subprocess.run([sys.executable, "-m", "bench.hops", which, path], cwd=ROOT,
                             capture_output=True, text=True, env={**os.environ, **env},
                             timeout=600)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError, subprocess.TimeoutExpired) as error:
        say(f"  in-process count for {which} failed: {error}")
        return None


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="an indicative subset: 1 worker, c64, 8 s runs, fewer contenders")
    parser.add_argument("--only-ondemand", action="store_true",
                        help="just the on-demand comparison")
    parser.add_argument("--contenders", help=f"comma-separated; default {DEFAULT_CONTENDERS} "
                        f"(quick: {QUICK_CONTENDERS})")
    parser.add_argument("--baseline", metavar="PATH",
                        help="also run asgi-granian-baseline: our app imported from the "
                             "source tree at PATH (e.g. `git archive main | tar -x -C PATH`) "
                             "instead of this checkout, for before/after in one run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per point (>= 3)")
    parser.add_argument("--start-timeout", type=float, default=300.0,
                        help="seconds a contender may take to answer after it is started")
    parser.add_argument("--fail-start", default="",
                        help="comma-separated contenders started with an invalid argument, "
                             "to check that a start failure is reported (tooling test)")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3: a point's spread needs 3 runs")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(True, 8.0, args.repeats, (64,), (1,), 200, 1000, args.start_timeout)
    return Plan(False, 10.0, args.repeats, (16, 64, 256), (1, 2), 1000, 1000,
                args.start_timeout)


def suite_run(recorder: Any, args: argparse.Namespace, plan: Plan) -> None:
    say("preparing database and data set (the first run builds 1.2 GiB of files)")
    env = setup()
    from bench import dataset, servers

    data = dataset.build(STATE)
    close_our_connections()
    names = (args.contenders or (QUICK_CONTENDERS if plan.quick else DEFAULT_CONTENDERS))
    chosen = [c for c in servers.CONTENDERS if c.name in names.split(",")]
    if args.baseline:
        chosen.insert(0, servers.baseline(os.path.abspath(args.baseline)))
    suite = Suite(plan, [PREFIX + p for p in data.small_paths],
                  [PREFIX + p for p in data.medium_paths], data.large_path,
                  frozenset(filter(None, args.fail_start.split(","))))
    recorder.results["meta"].update(contenders=[c.name for c in chosen],
                                    pool_per_worker=pool_size())
    for workers in ([] if args.only_ondemand else plan.worker_counts):
        for contender in chosen:
            say(f"{contender.name}, {workers} worker(s)")
            measure(recorder, suite, contender, workers)
    if not plan.quick or args.only_ondemand:
        measure_ondemand(recorder, suite, chosen, data)
    say("counting thread hops per request in-process")
    recorder.results["hops"] = {"asgi": hops(env, "ours", suite.small[0]),
                                "pulpcore-content": hops(env, "pulpcore", suite.small[0])}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that writes the report


def main() -> None:
    args = arguments()
    plan = make_plan(args)
    from bench import goals, record

    recorder = record.Recorder(os.path.join(HERE, "results"),
                               {**plan.meta(), "only_ondemand": args.only_ondemand})
    signal.signal(signal.SIGTERM, _terminate)
    status = "interrupted"
    try:
        suite_run(recorder, args, plan)
        status = "complete"
    except BaseException as error:
        status = f"interrupted: {type(error).__name__}: {error}"[:300]
        raise
    finally:
        written = recorder.finish(status)
        say("wrote " + ", ".join(written))
    complete = status == "complete" and not plan.quick and not args.only_ondemand
    if complete and not args.fail_start and not args.contenders and not args.baseline:
        say("updated " + goals.update_readme(recorder.results, os.path.basename(written[0])))
    with open(written[1]) as table:
        print(table.read())


if __name__ == "__main__":
    main()
