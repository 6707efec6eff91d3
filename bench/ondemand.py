"""On-demand content through the app versus straight from its upstream (issue #5).

The upstream is nginx serving the data set's bytes; an on-demand repository
(``bench-ondemand``) points its remote artifacts there. Before each measurement the
content artifacts lose their artifacts again ("reclaimed"), so every request is a miss
that streams from upstream: time to first byte over the 1 MiB files, and throughput of
the 1 GiB file, through the app and directly.

The hashing limit (issue #18) is measured in the same run: the time to compute the digests
a download of the 1 GiB file must record (``ALLOWED_CONTENT_CHECKSUMS``, as pulpcore's
downloader computes them) with every core, the file already in memory: no app can serve a
cold on-demand download faster than it can digest it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import statistics
import threading
import time
import urllib.request

from bench.points import DBNAME
from bench.sampling import Sampler

BASE_PATH = "bench-ondemand"


def build(upstream: str, medium: list[str], large: str) -> list[str]:
    """The on-demand repository, pointed at this run's upstream; returns the URL paths."""
    from pulp_file.app.models import FileContent, FileDistribution, FileRemote, FileRepository
    from pulpcore.app.models import ContentArtifact, RemoteArtifact

    from pulp_content_asgi.devtools import data

    wanted = [*medium[:50], large]
    remote, _ = FileRemote.objects.update_or_create(
        name=BASE_PATH, defaults={"url": upstream + "/", "policy": "on_demand"})
    # Remote artifacts of earlier runs point at upstreams that are gone.
    RemoteArtifact.objects.filter(content_artifact__relative_path__startswith="od/").exclude(
        remote=remote).delete()
    units = []
    for path in wanted:
        base, relative = path.split("/", 1)
        publication = FileDistribution.objects.get(base_path=base).publication
        source = publication.published_artifact.select_related(
            "content_artifact__artifact").get(relative_path=relative).content_artifact.artifact
        unit, _ = FileContent.objects.get_or_create(relative_path=f"od/{path}",
                                                    digest=source.sha256)
        ca, _ = ContentArtifact.objects.get_or_create(content=unit, relative_path=f"od/{path}")
        RemoteArtifact.objects.update_or_create(
            content_artifact=ca, remote=remote,
            defaults={"url": f"{upstream}/pulp/content/{path}", "size": source.size,
                      "sha256": source.sha256})
        units.append(unit.pk)
    if not FileDistribution.objects.filter(base_path=BASE_PATH).exists():
        repo = FileRepository.objects.create(name=f"{BASE_PATH}-repo-{os.getpid()}")
        with repo.new_version() as version:
            version.add_content(FileContent.objects.filter(pk__in=units))
        data.distribute(BASE_PATH, publication=data.publish(version))
    return [f"/pulp/content/{BASE_PATH}/od/{p}" for p in wanted]


#: Seconds a run waits for the app to save the 1 GiB file's artifact after the client has
#: it (a save still running when the next run's :func:`reclaim` resets the rows would
#: leave that run a saved file to serve: not cold).
SAVE_DEADLINE = 120.0


def wait_for_save(path: str, deadline: float = SAVE_DEADLINE) -> bool:
    """Wait until the content of the on-demand URL ``path`` has its artifact saved (the
    row is polled, an event, not a fixed sleep); False if ``deadline`` seconds pass."""
    from pulpcore.app.models import ContentArtifact

    relative = "od/" + path.split(f"/{BASE_PATH}/od/", 1)[1]
    ends = time.monotonic() + deadline
    while not ContentArtifact.objects.filter(relative_path=relative,
                                             artifact__isnull=False).exists():
        if time.monotonic() > ends:
            return False
        time.sleep(0.05)
    return True


def reclaim() -> None:
    """Forget the downloaded artifacts so the next requests stream from upstream again."""
    from pulpcore.app.models import ContentArtifact

    ContentArtifact.objects.filter(relative_path__startswith="od/").update(artifact=None)


def _get(url: str) -> tuple[float, float, int]:
    """(time to first byte, total time, bytes) for one GET. The client only counts the
    bytes: a digest here (there was an unused sha256) would take CPU from the same cores
    the server hashes on."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as response:
        first = response.read(1)
        ttfb = time.perf_counter() - started
        size = len(first)
        while chunk := response.read(1 << 20):
            size += len(chunk)
    return ttfb, time.perf_counter() - started, size


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) used so far by ``pid`` and its
    descendants (the server's workers), from ``/proc/<pid>/stat``."""
    from pulp_content_asgi.devtools import processes

    ticks = 0
    for member in processes.family(pid):
        try:
            with open(f"/proc/{member}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")


class Probe:
    """GETs of a small published file, one every :data:`PROBE_EVERY` seconds on a thread
    of its own, while something else runs: how long the same worker takes to answer them
    (event-loop lag as a client sees it) in milliseconds."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(PROBE_EVERY):
            started = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=300) as answer:
                answer.read()
            self.latencies.append((time.perf_counter() - started) * 1000)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


#: Seconds between two probes during the 1 GiB download.
PROBE_EVERY = 0.1


def upstream_requests(log: str, path: str) -> list[tuple[int, int]]:
    """(status, body bytes sent) of each GET of ``path`` (an on-demand URL path; the
    upstream serves it without ``/<BASE_PATH>/od``) in the upstream's access log (the
    ``fetches`` format of bench/servers.py: method, status, bytes, request target),
    oldest first; empty when there is no log yet."""
    wanted = upstream_path(path)
    found = []
    try:
        with open(log, errors="replace") as lines:
            for line in lines:
                method, status, sent, target = (line.rstrip("\n").split(" ", 3) + [""] * 4)[:4]
                # (a line being written may be cut: skipped, it can only undercount)
                if method == "GET" and target == wanted and status.isdigit() \
                        and sent.isdigit():
                    found.append((int(status), int(sent)))
    except FileNotFoundError:
        pass
    return found


def upstream_fetches(log: str, path: str, size: int, since: int = 0) -> int:
    """How many whole fetches of ``path`` (status 200, ``size`` body bytes) the upstream's
    access log holds after its first ``since`` GETs of it (:func:`upstream_requests`)."""
    return sum(entry == (200, size) for entry in upstream_requests(log, path)[since:])


def upstream_path(path: str) -> str:
    """The upstream's URL path of an on-demand URL path."""
    return path.replace(f"/{BASE_PATH}/od/", "/")


def measure(base: str, paths: list[str], pid: int | None = None,
            probe: str | None = None, upstream_log: str | None = None) -> dict:
    """One cold run; with the server's ``pid``, also the CPU seconds its processes used
    for the 1 GiB file (less sensitive to a busy machine than the wall clock); with a
    ``probe`` path, the latency of requests for it while the 1 GiB file downloads; with
    the upstream's ``upstream_log``, ``large_upstream_fetches``: how many times the
    upstream sent the 1 GiB file meanwhile (0: the run was not cold)."""
    from django.db import connections

    reclaim()
    for conn in connections.all():
        conn.close()
    with contextlib.ExitStack() as sampled:
        # The server's PostgreSQL connections, the on-demand lock connection included
        # (the published-file points never open it).
        sampler = sampled.enter_context(Sampler(pid, DBNAME)) if pid else None
        small = [_get(base + p) for p in paths[:-1]]
        before = cpu_seconds(pid) if pid else 0.0
        earlier = len(upstream_requests(upstream_log, paths[-1])) if upstream_log else 0
        with contextlib.ExitStack() as stack:
            probing = stack.enter_context(Probe(base + probe)) if probe else None
            large = _get(base + paths[-1])
    found = {"ttfb_ms_median": statistics.median(s[0] for s in small) * 1000,
             "ttfb_ms_p90": sorted(s[0] for s in small)[int(len(small) * 0.9)] * 1000,
             "large_gbps": large[2] / large[1] / 1e9, "large_bytes": large[2]}
    if pid:
        found["large_server_cpu_s"] = cpu_seconds(pid) - before
    found["large_saved"] = wait_for_save(paths[-1])
    if upstream_log:
        # nginx logs a request when it has sent the last byte, which the app received
        # before the client could: the line is there once the client has the whole file.
        # Only a whole fetch (200, every byte of the file) counts: a failed or cut one
        # does not make the run cold.
        found["large_upstream_fetches"] = upstream_fetches(upstream_log, paths[-1],
                                                           large[2], since=earlier)
    if sampler is not None:
        found["max_pg_connections"] = sampler.max_pg_connections
    if probing and probing.latencies:
        ordered = sorted(probing.latencies)
        found.update(probe_ms_median=statistics.median(ordered),
                     probe_ms_p90=ordered[int(len(ordered) * 0.9)],
                     probe_ms_max=ordered[-1], probes=len(ordered))
    return found


def direct(upstream: str, paths: list[str]) -> dict:
    """The same files fetched straight from the upstream."""
    originals = [upstream_path(p) for p in paths]
    small = [_get(upstream + p) for p in originals[:-1]]
    large = _get(upstream + originals[-1])
    return {"ttfb_ms_median": statistics.median(s[0] for s in small) * 1000,
            "ttfb_ms_p90": sorted(s[0] for s in small)[int(len(small) * 0.9)] * 1000,
            "large_gbps": large[2] / large[1] / 1e9, "large_bytes": large[2]}


#: Bytes per digest update in :func:`hashing_limit`, as pulpcore's downloaders read (1 MiB).
CHUNK = 1 << 20


def hashing_limit(path: str) -> dict:
    """GB/s at which this machine computes the configured digests of the file at ``path``
    (``Artifact.DIGEST_FIELDS``: pulpcore's order of ``ALLOWED_CONTENT_CHECKSUMS``) with all
    cores: one thread per digest over the same memory-mapped bytes (hashlib releases the
    GIL for updates above 2 KiB), the file mapped in memory first so no disk read is timed.
    With at least as many digests as cores and none slower than the others together,
    this keeps every core busy. Returns the digests, cores, bytes, ``seconds`` and
    ``gbps`` (wall clock) and ``cpu_seconds`` (the digests' CPU time, every thread)."""
    from pulpcore.app import pulp_hashlib
    from pulpcore.app.models import Artifact

    names = list(Artifact.DIGEST_FIELDS)
    # Mapped pre-faulted (MAP_POPULATE reads the file into the page cache and maps every
    # page), so neither disk reads nor page faults are timed.
    with open(path, "rb") as source, \
            mmap.mmap(source.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                      prot=mmap.PROT_READ) as mapped:
        size = len(mapped)
        view = memoryview(mapped)
        try:
            hashers = [pulp_hashlib.new(name) for name in names]

            def digest(hasher: object) -> None:
                for offset in range(0, size, CHUNK):
                    hasher.update(view[offset:offset + CHUNK])  # type: ignore[attr-defined]

            threads = [threading.Thread(target=digest, args=(h,)) for h in hashers]
            started, cpu = time.perf_counter(), time.process_time()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            view.release()
    return {"digests": names, "cores": os.cpu_count(), "bytes": size,
            "seconds": elapsed, "cpu_seconds": cpu, "gbps": size / elapsed / 1e9}
