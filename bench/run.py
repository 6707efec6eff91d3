"""``make bench`` / ``make bench-quick``: our app, pulpcore-content and nginx side by side.

Same machine, same database and files, same worker counts; every point is run
``--repeats`` times. Results go to ``bench/results/<UTC start>-<machine>-<kind>.json``
(rewritten after every point) with a generated markdown report and PNG charts, written
at the end and also when the run is interrupted or fails. A contender that does not
start becomes a "did not start" row and the run goes on.

Phases: each contender at each worker count (published files, 1 GiB file, slow readers,
burst), then object storage (:func:`measure_objects`), on-demand and the in-process
counts, as far as the plan's scenarios ask (``bench/plan.py``). With profiles on, each
scenario's measured runs of a contender are followed by one more with py-spy and perf
attached (``bench/profiles.py``, ``bench/native.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import Any

from bench import profiles
from bench.otherload import OtherLoad
from bench.plan import Plan, arguments, contenders, make_plan
from bench.points import (
    DBNAME,
    burst_run,
    cache_hits,
    idle,
    large_run,
    say,
    slow_run,
    small_run,
    warm,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STATE = os.path.join(ROOT, ".dev", "bench")
PREFIX = "/pulp/content/"


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


@dataclass(frozen=True)
class Suite:
    """Everything a contender's measurements need besides the contender."""

    plan: Plan
    small: list[str]
    medium: list[str]
    large: str
    fail_start: frozenset[str]
    profiler: profiles.Profiler


def _client(workers: int) -> tuple[str | None, str | None, int]:
    """(server CPUs, wrk CPUs, wrk threads): pinned apart with 1 worker, unpinned with 2."""
    return ("0", "1", 1) if workers == 1 else (None, None, 2)


#: The scenarios measured on a contender's ordinary start, and those of 1 worker only.
MAIN = ("published", "large", "slow", "burst")
ONE_WORKER = ("slow", "burst")


def _started(recorder: Any, suite: Suite, contender: Any, workers: int,
             server_cpus: str | None, entry: dict[str, Any], probe: str,
             extra_env: dict[str, str] | None = None) -> Any:
    """``contender`` started for a run's ``entry``; None when it did not start (recorded
    in the entry: status, reason, log; saved), so the suite goes on without it."""
    from bench import servers

    try:
        return servers.start(contender, workers, STATE, server_cpus, probe=probe,
                             timeout=suite.plan.start_timeout,
                             fail=contender.name in suite.fail_start, extra_env=extra_env)
    except servers.StartFailure as failure:
        entry.update(status="did not start", error=failure.reason, log=failure.log_path)
        say(f"  did not start: {failure}")
        recorder.save()
        return None


def _points(suite: Suite, server: Any, paths: list[str], wanted: set[str],
            cpus: str | None, threads: int) -> list[tuple[str, str, Callable[[], dict]]]:
    """(scenario, concurrency level or "", one run) of each point of ``wanted``, in the
    order they are measured."""
    plan = suite.plan
    # Every status of the published runs is read (status=200), so a non-200 answer of any
    # kind, 3xx included, is counted: wrk itself counts only status > 399.
    found: list[tuple[str, str, Callable[[], dict]]] = [
        ("published", str(c), partial(small_run, server, paths, c, plan.duration(c), cpus,
                                      threads, status=200))
        for c in plan.concurrency if "published" in wanted]
    if "large" in wanted:
        found.append(("large", "", partial(large_run, server, PREFIX + suite.large,
                                           plan.seconds, cpus, threads)))
    if "slow" in wanted:
        found.append(("slow", "", partial(slow_run, server, suite.medium, plan.slow_clients,
                                          suite.small[0])))
    if "burst" in wanted:
        found.append(("burst", "", partial(burst_run, server, paths, plan.burst_clients)))
    return found


def measure(recorder: Any, suite: Suite, contender: Any, workers: int) -> None:
    """Start ``contender`` with ``workers`` workers and run every point of the plan's
    scenarios ``repeats`` times, saving the JSON after each, then (profiles on) once more
    with py-spy and perf attached (published: at :func:`profiles.level` only); a start failure or
    a failing point is recorded in the run's entry (status, reason, log) and the suite
    goes on."""
    from bench import load, servers
    from pulp_content_asgi.devtools import processes

    plan = suite.plan
    wanted = {s for s in MAIN if s in plan.scenarios and (workers == 1 or s not in ONE_WORKER)}
    if not wanted:
        return
    server_cpus, client_cpus, threads = _client(workers)
    entry = recorder.add_run({"contender": contender.name, "workers": workers,
                              "status": "starting", "small": {}, "large": [], "slow": [],
                              "burst": []})
    if contender.cache:
        forget_cached()  # every cache contender starts cold
    server = _started(recorder, suite, contender, workers, server_cpus, entry,
                      probe=suite.small[0])
    if server is None:
        return
    entry.update(status="running", log=server.log_path)
    try:
        paths = suite.small
        if contender.cache:
            # A hot set the cache holds: 500 files, each requested once first.
            paths = suite.small[:500]
            warm(server.base, paths)
            # Warm means served from the cache: checked before and after the points
            # (a hot set evicted meanwhile would measure the database path).
            entry["warm"] = cache_hits(server.base, paths)
        load.wrk(server.base, paths, 16, plan.warmup(), threads, client_cpus)  # warm-up
        # A slow server still works on the requests wrk dropped at the end of the
        # warm-up; one more request waits (roughly) for that before measuring.
        warm(server.base, paths[:1])
        mapped, family = servers.uvloop_workers(server.pid)
        entry["uvloop_processes"] = {"mapped": mapped, "processes": family}
        entry["idle"] = idle(server.pid)
        profiled = str(profiles.level(plan.concurrency))
        for scenario, level, run in _points(suite, server, paths, wanted, client_cpus,
                                            threads):
            runs = entry["small"].setdefault(level, []) if level else entry[scenario]
            for _ in range(plan.repeats):
                runs.append(beside(run))
                recorder.save()
            if level in ("", profiled):
                suite.profiler.take(scenario, contender, workers, server.pid, client_cpus,
                                    run, **({"connections": int(level)} if level else {}))
        if contender.cache:
            entry["warm_after"] = cache_hits(server.base, paths)
        entry["status"] = "ran"
    except Exception as error:  # recorded in the results; the other contenders still run
        entry.update(status="failed", error=f"{type(error).__name__}: {error}"[:500])
        say(f"  failed: {entry['error']} (log: {server.log_path})")
    finally:
        processes.stop(server)
        recorder.save()


def beside(run: Callable[[], dict], dbname: str = DBNAME) -> dict:
    """``run()``'s figures, with ``other_cores``: what processes other than the bench's
    (and ``dbname``'s PostgreSQL backends and the cache's Redis server) used meanwhile
    (``bench/otherload.py``), so a point measured beside other work shows it."""
    from bench.servers import CACHE_ENV

    with OtherLoad(dbname, ports=[int(CACHE_ENV["PULP_REDIS_PORT"])]) as other:
        found = run()
    return {**found, **other.figures()}


def _apps(chosen: list) -> list:
    """The contenders that serve from the database with the cache off (our app,
    pulpcore-content): on-demand and object storage run these."""
    from bench import servers

    return [c for c in chosen if not c.cache
            and isinstance(c, servers.ContentAsgi | servers.PulpcoreContent)]


def measure_objects(recorder: Any, suite: Suite, chosen: list) -> None:
    """The object-storage scenario: moto's S3 server on loopback, the object set uploaded
    (``dataset.objects``), then for each worker count and app (ours on granian, the
    pulpcore-content variants, a baseline): start it with domains on,
    check GET and HEAD (``bench/objects.py``), count 302/s at the plan's concurrency
    levels. Recorded under ``objects``; a contender that does not start or fails the
    check is a row saying so."""
    from bench import dataset, servers
    from pulp_content_asgi.devtools import processes

    say("object storage: 302s to an S3 server on loopback")
    out: dict[str, Any] = {"status": "starting", "count": dataset.S3_COUNT, "runs": []}
    recorder.results["objects"] = out
    try:
        s3 = servers.start(servers.S3Server("s3", "/"), 1, STATE, None, probe="/",
                           timeout=suite.plan.start_timeout)
    except servers.StartFailure as failure:
        out.update(status="did not start", error=failure.reason, log=failure.log_path)
        say(f"  S3 server did not start: {failure}")
        recorder.save()
        return
    try:
        found = dataset.objects(s3.base)
        close_our_connections()
        out.update(status="running", endpoint=s3.base, bucket=found.bucket,
                   domain=found.domain, log=s3.log_path)
        # Our app on its default server (granian): uvicorn would run the same code for
        # ~7 more minutes of a full run.
        measured = [c for c in _apps(chosen)
                    if not isinstance(c, servers.ContentAsgi) or c.server == "granian"]
        for workers in suite.plan.worker_counts:
            for contender in measured:
                say(f"{contender.name}, {workers} worker(s), object storage")
                entry: dict[str, Any] = {"contender": contender.name, "workers": workers,
                                         "status": "starting", "redirect": {}}
                out["runs"].append(entry)
                redirects(recorder, suite, contender, workers, found, s3.base, entry)
        out["status"] = "ran"
    except Exception as error:  # recorded; the rest of the suite still runs
        out.update(status="failed", error=f"{type(error).__name__}: {error}"[:500])
        say(f"  object storage failed: {out['error']}")
    finally:
        processes.stop(s3)
        recorder.save()


def redirects(recorder: Any, suite: Suite, contender: Any, workers: int, found: Any,
              endpoint: str, entry: dict[str, Any]) -> None:
    """One contender's object-storage points, recorded in ``entry``."""
    from bench import dataset, load, objects, servers
    from pulp_content_asgi.devtools import processes

    plan = suite.plan
    server_cpus, client_cpus, threads = _client(workers)
    server = _started(recorder, suite, contender, workers, server_cpus, entry,
                      probe=f"{PREFIX}{found.domain}/", extra_env=servers.DOMAINS_ENV)
    if server is None:
        return
    entry.update(status="checking", log=server.log_path)
    try:
        urls = {p: f"{endpoint}/{found.bucket}/{found.keys[p]}" for p in found.paths}
        entry["check"] = objects.check(server.base, PREFIX, found.paths, found.blobs, urls,
                                       dataset.S3_CREDENTIALS)
        if not entry["check"]["ok"]:
            entry["status"] = "failed the check"
            say(f"  failed the check: {'; '.join(entry['check']['problems'])[:400]}")
            return
        say(f"  check: GET and HEAD of {objects.CHECKED} files correct")
        paths = [PREFIX + p for p in found.paths]
        load.wrk(server.base, paths, 16, plan.warmup(), threads, client_cpus, 302)
        for c in plan.concurrency:
            runs = entry["redirect"].setdefault(str(c), [])
            for _ in range(plan.repeats):
                runs.append(beside(partial(small_run, server, paths, c, plan.duration(c),
                                           client_cpus, threads, status=302)))
                recorder.save()
        c = profiles.level(plan.concurrency)
        suite.profiler.take("objects", contender, workers, server.pid, client_cpus,
                            partial(small_run, server, paths, c, plan.duration(c),
                                    client_cpus, threads, status=302), connections=c)
        entry["status"] = "ran"
    except Exception as error:  # recorded; the other contenders still run
        entry.update(status="failed", error=f"{type(error).__name__}: {error}"[:500])
        say(f"  failed: {entry['error']} (log: {server.log_path})")
    finally:
        processes.stop(server)
        recorder.save()


#: The contenders whose held slow connections are measured (1 worker): ours and both
#: pulpcore-content variants (the goal row compares idle RSS with the smaller).
HELD = ("asgi-granian", "asgi-uvicorn", "pulpcore-content", "pulpcore-content-uvloop")


def measure_held(recorder: Any, suite: Suite, chosen: list, env: dict[str, str]) -> None:
    """What a held slow connection costs (issue #18's memory row): ``bench/slowmem.py``'s
    measure, ``slow_clients`` connections each holding a GET of the 1 GiB file open with
    a 4 KiB receive buffer and reading 1 KiB a second, on 1 worker, ``repeats`` times per
    contender of :data:`HELD`; recorded under ``held``. The ``slow`` scenario's readers
    finish in seconds and the kernel's socket buffers hold much of their 1 MiB files, so
    its RSS peak does not show what the server keeps per connection."""
    from bench import servers, slowmem

    clients = suite.plan.slow_clients
    out: dict[str, Any] = {"clients": clients, "path": PREFIX + suite.large}
    recorder.results["held"] = out
    for contender in [c for c in chosen if c.name in HELD]:
        say(f"held connections: {contender.name}, {clients} clients, 1 worker")
        runs: list[dict[str, Any]] = []
        out[contender.name] = {"status": "ran", "runs": runs}
        for _ in range(suite.plan.repeats):
            try:
                found = beside(partial(slowmem.measure, contender, clients,
                                       PREFIX + suite.large, env, None, None, root=STATE,
                                       timeout=suite.plan.start_timeout), slowmem.DBNAME)
            except servers.StartFailure as failure:
                out[contender.name] = {"status": "did not start", "error": failure.reason,
                                       "log": failure.log_path, "runs": runs}
                say(f"  did not start: {failure}")
                break
            except Exception as error:  # recorded; the other contenders and phases still run
                out[contender.name] = {"status": "failed", "runs": runs,
                                       "error": f"{type(error).__name__}: {error}"[:500]}
                say(f"  failed: {out[contender.name]['error']}")
                break
            runs.append({k: v for k, v in found.items() if k not in ("env", "commit")})
            say(f"    {found['per_connection_kib']:.1f} KiB per connection (idle "
                f"{found['idle_mib']:.0f} MiB, loaded {found['loaded_mib']:.0f}; headers "
                f"{found['headed']}/{clients}, statuses {found['statuses']})")
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
        upstream = servers.start(servers.Nginx("upstream", PREFIX, sendfile=False, logged=True),
                                 1, STATE,
                                 None, probe=suite.small[0], timeout=suite.plan.start_timeout)
    except servers.StartFailure as failure:
        out["upstream"] = {"status": "did not start", "error": failure.reason,
                           "log": failure.log_path}
        return
    try:
        paths = ondemand.build(upstream.base, data.medium_paths, data.large_path)
        out["upstream"] = {"status": "ran", "runs": [
            beside(partial(ondemand.direct, upstream.base, paths))
            for _ in range(suite.plan.repeats)]}
        recorder.save()
        # Each run counts the upstream's fetches of the 1 GiB file in its access log: a
        # run served from a saved artifact is not a cold one (goals.on_demand).
        fetched = servers.access_log(STATE, urllib.parse.urlsplit(upstream.base).port or 0)
        for contender in _apps(chosen):
            out[contender.name] = ondemand_contender(suite, contender, paths, large_file,
                                                     out["hashing"]["runs"], fetched)
            recorder.save()
    finally:
        processes.stop(upstream)


def ondemand_contender(suite: Suite, contender: Any, paths: list[str], large_file: str,
                       hashing: list[dict], upstream_log: str | None = None) -> dict:
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
    runs: list[dict] = []
    try:
        for _ in range(suite.plan.repeats):
            hashing.append(beside(partial(ondemand.hashing_limit, large_file)))
            runs.append(beside(partial(ondemand.measure, server.base, paths,
                                       server.process.pid, suite.small[0], upstream_log)))
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
        suite.profiler.take("ondemand", contender, 1, server.pid, None,
                            partial(ondemand.measure, server.base, paths, server.pid,
                                    suite.small[0]))
        return {"status": "ran", "runs": runs}
    except Exception as error:  # recorded; the other contenders still run
        say(f"  {contender.name} failed: {error}")
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"[:500],
                "log": server.log_path, "runs": runs}  # the runs measured are kept
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


def suite_run(recorder: Any, args: Any, plan: Plan) -> None:
    from bench import dataset, record, servers

    servers.PORTS.configure(servers.parse_ports(args.ports) if args.ports else None)
    say("preparing database and data set (the first run builds 1.2 GiB of files)")
    env = setup()
    data = dataset.build(STATE, plan.scenarios)
    close_our_connections()
    names = contenders(args, plan)
    chosen = [c for c in servers.CONTENDERS if c.name in names.split(",")]
    if args.baseline:
        source = os.path.abspath(args.baseline)
        chosen.insert(0, servers.baseline(source))
        recorder.results["meta"]["baseline"] = {"source": source,
                                                "commit": record.commit(source)}
    suite = Suite(plan, [PREFIX + p for p in data.small_paths],
                  [PREFIX + p for p in data.medium_paths], data.large_path,
                  frozenset(filter(None, args.fail_start.split(","))),
                  profiles.Profiler(plan.profiles, recorder.stem,
                                    recorder.results["profiles"], recorder.save))
    recorder.results["meta"].update(contenders=[c.name for c in chosen],
                                    pool_per_worker=pool_size(), ports=args.ports)
    for workers in plan.worker_counts:
        for contender in chosen:
            if {"published", "large", "slow", "burst"} & plan.scenarios:
                say(f"{contender.name}, {workers} worker(s)")
            measure(recorder, suite, contender, workers)
    if "held" in plan.scenarios and suite.large:
        measure_held(recorder, suite, chosen, env)
    if "objects" in plan.scenarios:
        measure_objects(recorder, suite, chosen)
    if "ondemand" in plan.scenarios:
        measure_ondemand(recorder, suite, chosen, data)
    if "counts" in plan.scenarios and suite.small:
        say("counting thread hops per request in-process")
        recorder.results["hops"] = {"asgi": hops(env, "ours", suite.small[0]),
                                    "pulpcore-content": hops(env, "pulpcore", suite.small[0])}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that writes the report


def main() -> None:
    args = arguments()
    plan = make_plan(args)
    from bench import goals, record

    folder = os.path.join(HERE, "results", *(["tmp"] if plan.smoke else []))
    recorder = record.Recorder(folder, {**plan.meta(), "only_ondemand": args.only_ondemand})
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
    full = record.kind_of(recorder.results["meta"]) == "full"
    # A baseline only adds a contender (today's code, for the p99 clause): its run still
    # has every default contender, so it may regenerate the README's goal table.
    if status == "complete" and full and not (args.fail_start or args.contenders):
        say("updated " + goals.update_readme(recorder.results, os.path.basename(written[0])))
    with open(written[1]) as table:
        print(table.read())


if __name__ == "__main__":
    main()
