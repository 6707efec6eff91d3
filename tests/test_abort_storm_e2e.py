"""Client-abort storm (issue #17): requests cut at random points leave nothing behind.

One worker (granian, then uvicorn) with domains and the response cache on serves
published files (filesystem), on-demand and streamed files (a loopback upstream), files
whose upstream is held by a gate (before its headers, or after 64 KiB of body) and files
proxied from object storage (S3 on moto). Clients, 32 at a time, cut their request:
while sending the request headers, right after the request, after the response headers,
mid-body, or while an on-demand request waits for its held upstream; by closing (FIN) or
resetting (RST). Some requests are read whole and checked byte for byte.

Afterwards (the gates opened, polled with a generous deadline): the worker's file
descriptors, threads, asyncio tasks (the health endpoint's ``worker`` figures), files in
its ``WORKING_DIRECTORY`` and PostgreSQL backends are back to their idle figures (pooled
connections and threads within their pools' bounds), every on-demand file has a whole,
verified artifact or none, and each on-demand file is then served whole.

``ci`` profile: 400 requests per server; ``adversarial``: 25 times as many (10,000).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import struct
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings

from pulp_content_asgi import conf
from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import rss
from tests import adversarial, resources
from tests.adversarial import examples
from tests.helpers import (
    DEADLINE,
    TEST_ROOT,
    content_app,
    distribution_in,
    on_demand,
    s3_domain,
    stop_server,
    unique_name,
    wait_for,
)
from tests.upstream import Behaviour

pytestmark = pytest.mark.adversarial

PREFIX = "/pulp/content/"
HEALTH = "/pulp/content-asgi/health/"
REQUESTS = examples(400)
CONCURRENCY = 32
#: How long the worker gets to come back to its idle figures once the gates opened.
SETTLE_SECONDS = 180.0
#: Cut points and how often each is drawn.
CUTS = {"request-headers": 3, "after-request": 3, "response-headers": 3, "mid-body": 4,
        "whole": 2}
#: Bounds of the pooled resources a worker fills on demand and keeps (docs/operations.md):
#: connections to PostgreSQL (CONTENT_ASGI_DB_CONNECTIONS pooled + the lock connection), Redis
#: (CONTENT_ASGI_CACHE_CONNECTIONS), S3 (botocore's max_pool_connections), upstream
#: keep-alive (aiohttp's connector limit), and the thread pools.
POOL_BOUNDS = {"postgresql": conf.DEFAULTS["CONTENT_ASGI_DB_CONNECTIONS"] + 1, "redis": 64,
               "s3": 10, "upstream": 100,
               **resources.THREAD_POOLS}


@dataclass(frozen=True)
class Target:
    kind: str  # published, on_demand, streamed, held, held-body, s3
    path: str
    blob: bytes
    #: Upstream path of an on-demand file (its hits show a request reached the wait).
    upstream_path: str = ""


@dataclass
class World:
    targets: list[Target]
    gates: list[threading.Event]
    on_demand_repos: list[object]
    env: dict[str, str]


@dataclass
class Tally:
    cuts: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def _sized(rng: random.Random, low: int, high: int) -> bytes:
    return os.urandom(rng.randrange(low, high))


@pytest.fixture(scope="module")
def storm_world(s3, cache_settings) -> World:
    """Published files (filesystem) and objects proxied from S3, and the server's
    environment: domains, the response cache (each server gets a WORKING_DIRECTORY of
    its own: :func:`_storm_one`)."""
    u = unique_name()
    targets: list[Target] = []
    published = {"small.txt": b"small\n", "mid.bin": os.urandom(300_000),
                 "big.bin": os.urandom(4 << 20)}
    repo = data.repository(f"st-pub-{u}", published)
    dist = data.distribute(f"st-pub-{u}", publication=data.publish(repo.latest_version()))
    targets += [Target("published", f"{PREFIX}default/{dist.base_path}/{n}", b)
                for n, b in published.items()]
    domain = s3_domain(s3, redirect=False)
    objects = {"o-small.bin": os.urandom(20_000), "o-big.bin": os.urandom(2 << 20)}
    s3_dist = distribution_in(domain, objects)
    targets += [Target("s3", f"{PREFIX}{domain.name}/{s3_dist.base_path}/{n}", b)
                for n, b in objects.items()]
    env = {"PULP_DOMAIN_ENABLED": "true", **cache_settings,
           # Idle pooled connections close after 1 s (not 60), so "back to idle" is seen
           # within the deadline.
           "PULP_CONTENT_ASGI_DB_MAX_IDLE": "1"}
    return World(targets, [], [], env)


def _on_demand(world: World, upstream, rng: random.Random) -> World:
    """``world`` plus fresh on-demand files (each downloaded and saved once, usually by a
    cut request), streamed ones (downloaded for every request) and held ones: new ones
    for every server, so each storm meets files that are not stored yet."""
    count = max(20, REQUESTS // 20)
    fresh = {f"f{i}.bin": _sized(rng, 16_000, 400_000) for i in range(count)}
    streamed = {f"s{i}.bin": _sized(rng, 300_000, 1_500_000) for i in range(3)}
    held = {f"h{i}.bin": _sized(rng, 20_000, 200_000) for i in range(3)}
    held_body = {f"b{i}.bin": _sized(rng, 1 << 20, 2 << 20) for i in range(3)}
    targets, gates, repos = list(world.targets), [], []
    for kind, files, policy in (("on_demand", fresh, "on_demand"),
                                ("streamed", streamed, "streamed"),
                                ("held", held, "on_demand"),
                                ("held-body", held_body, "on_demand")):
        od, prefix, od_repo = on_demand(upstream, files, policy=policy)
        if policy == "on_demand":
            repos.append(od_repo)
        for name, blob in files.items():
            if kind.startswith("held"):
                gate = threading.Event()
                gates.append(gate)
                upstream.behaviour[prefix + name] = Behaviour(
                    gate=gate, gate_after=65536 if kind == "held-body" else None)
            targets.append(Target(kind, f"{PREFIX}default/{od.base_path}/{name}", blob,
                                  prefix + name))
    return World(targets, gates, repos, world.env)


# --- the worker's figures ---------------------------------------------------------------

@dataclass
class Worker:
    server: object
    pid: int
    port: int
    peers: dict[int, str]
    working: str

    def look(self) -> resources.Figures:
        answer = httpx.get(self.server.url(HEALTH), timeout=DEADLINE).json()
        assert answer["worker"]["pid"] == self.pid, "another worker answered"
        roots = {"working": self.working, "media": str(settings.MEDIA_ROOT)}
        return resources.Figures(
            fds=resources.fds(self.pid, self.peers, self.port, roots),
            threads=resources.threads(answer["worker"]),
            tasks=answer["worker"]["asyncio_tasks"],
            working_files=resources.working_files(self.working),
            pg_backends=resources.pg_backends(self.pid, settings.DATABASES["default"]),
            rss=rss(self.pid))


def _above_idle(now: resources.Figures, idle: resources.Figures) -> list[str]:
    """What is not back to idle: anything but pooled connections and threads above its
    idle count, pooled ones above their pool's bound, a client connection, a file in
    WORKING_DIRECTORY, more asyncio tasks or PostgreSQL backends than when idle."""
    wrong = []
    for kind, count in now.fds.items():
        limit = POOL_BOUNDS.get(kind, idle.fds.get(kind, 0))
        if kind == "client" or count > limit:
            wrong.append(f"{count} fds of kind {kind} (idle {idle.fds.get(kind, 0)})")
    for kind, count in now.threads.items():
        if count > POOL_BOUNDS.get(kind, idle.threads.get(kind, 0)):
            wrong.append(f"{count} threads of kind {kind} (idle {idle.threads.get(kind, 0)})")
    if now.tasks > idle.tasks:
        wrong.append(f"{now.tasks} asyncio tasks (idle {idle.tasks})")
    if now.working_files:
        wrong.append(f"files left in WORKING_DIRECTORY: {now.working_files[:5]}")
    if now.pg_backends > idle.pg_backends:
        wrong.append(f"{now.pg_backends} PostgreSQL backends (idle {idle.pg_backends})")
    return wrong


def _settled(worker: Worker) -> resources.Figures:
    """The worker's idle figures: no client, no working file, the same figures twice."""
    last: list[resources.Figures] = []

    def quiet() -> bool:
        now = worker.look()
        same = bool(last) and now.summary() == last[-1].summary()
        last.append(now)
        return same and not now.working_files and not now.fds.get("client")

    # The baseline of every "back to idle" comparison: one taken while the worker was
    # still busy would let the storm leave as much behind unnoticed.
    assert wait_for(quiet, DEADLINE, interval=1.0), (
        f"the worker did not settle before the storm: {last[-1].summary()}, "
        f"{last[-1].working_files[:5]}")
    return last[-1]


class Sampler:
    """Peaks of the worker's figures while the storm runs (a thread, twice a second)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.peak: Counter = Counter()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(0.5):
            try:
                now = self.worker.look()
            except (httpx.HTTPError, OSError):
                continue  # the health request itself can be slow under the storm
            for name, value in {**now.summary(), "rss": now.rss}.items():
                self.peak[name] = max(self.peak[name], value)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


# --- the storm ----------------------------------------------------------------------------

def _request(target: Target, host: str, ranged: tuple[int, int] | None) -> bytes:
    lines = [f"GET {target.path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    if ranged is not None:
        lines.append(f"Range: bytes={ranged[0]}-{ranged[1]}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _cut(writer: asyncio.StreamWriter, reset: bool) -> None:
    if reset:  # RST instead of FIN: SO_LINGER with a zero timeout
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()


def _cuts_for(target: Target) -> list[str]:
    if target.kind == "held":  # no answer until the gate opens
        return ["request-headers", "after-request", "upstream-wait", "upstream-wait"]
    if target.kind == "held-body":  # headers, then 64 KiB at most (the rest is held)
        return ["request-headers", "after-request", "response-headers", "mid-body",
                "upstream-wait"]
    return [c for c, weight in CUTS.items() for _ in range(weight)]


async def _one(target: Target, cut: str, rng: random.Random, base: str, upstream,
               tally: Tally) -> None:
    where = urlsplit(base)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(where.hostname, where.port), adversarial.HANG_SECONDS)
    size = len(target.blob)
    ranged = None
    if rng.random() < 0.2 and size > 2 and target.kind != "held-body":
        first = rng.randrange(size - 1)
        ranged = (first, rng.randrange(first, size))
    raw = _request(target, where.netloc, ranged)
    reset = rng.random() < 0.5
    tally.cuts[(cut, target.kind)] += 1
    try:
        if cut == "request-headers":
            writer.write(raw[:rng.randrange(1, len(raw) - 1)])
            await writer.drain()
            return
        writer.write(raw)
        await writer.drain()
        if cut == "after-request":
            return
        if cut == "upstream-wait":
            # Cut once the upstream was asked (a request is waiting for it), or a moment
            # after sending (followers of the held download).
            if upstream.hits[target.upstream_path] == 0 and rng.random() < 0.5:
                await asyncio.wait_for(_asked(upstream, target.upstream_path),
                                       adversarial.HANG_SECONDS)
            else:
                await asyncio.sleep(rng.uniform(0, 0.05))
            return
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), adversarial.HANG_SECONDS)
        status = int(head.split(b" ", 2)[1])
        tally.statuses[status] += 1
        wanted = 206 if ranged else 200
        if status != wanted:
            tally.failures.append(f"{target.kind} {target.path} {ranged}: {status} "
                                  f"{head[:300]!r}")
            return
        if cut == "response-headers":
            return
        expected = target.blob if ranged is None else target.blob[ranged[0]:ranged[1] + 1]
        if cut == "mid-body":
            limit = 65536 if target.kind == "held-body" else len(expected)
            keep = rng.randrange(0, max(1, min(limit, len(expected)) - 1))
            got = b""
            while len(got) < keep:
                chunk = await asyncio.wait_for(reader.read(keep - len(got)),
                                               adversarial.HANG_SECONDS)
                if not chunk:
                    break
                got += chunk
            return
        body = await asyncio.wait_for(reader.read(), adversarial.HANG_SECONDS)
        body = _dechunked(head, body)
        if body != expected:
            tally.failures.append(f"{target.kind} {target.path} {ranged}: {len(body)} bytes "
                                  f"that are not the file's {len(expected)}")
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        tally.failures.append(f"{target.kind} {target.path} {cut}: connection failed: {exc!r}")
    except TimeoutError:
        tally.failures.append(f"{target.kind} {target.path} {cut}: no answer in "
                              f"{adversarial.HANG_SECONDS:.0f} s")
    finally:
        _cut(writer, reset)


async def _asked(upstream, path: str) -> None:
    while upstream.hits[path] == 0:
        await asyncio.sleep(0.01)


def _dechunked(head: bytes, body: bytes) -> bytes:
    if b"transfer-encoding: chunked" not in head.lower():
        return body
    data, _ = adversarial._dechunk(body)
    return data


async def _storm(world: World, base: str, upstream, rng: random.Random, count: int,
                 tally: Tally) -> None:
    semaphore = asyncio.Semaphore(CONCURRENCY)
    plan = []
    for _ in range(count):
        target = rng.choice(world.targets)
        plan.append((target, rng.choice(_cuts_for(target)), random.Random(rng.random())))

    async def limited(target: Target, cut: str, own: random.Random) -> None:
        async with semaphore:
            await _one(target, cut, own, base, upstream, tally)

    await asyncio.gather(*(limited(*p) for p in plan))


# --- after the storm -----------------------------------------------------------------------

def _on_demand_state(world: World) -> list[str]:
    """Every on-demand file: a verified artifact whose file is whole, or no artifact and
    no file; no half-written copy in MEDIA_ROOT."""
    from pulpcore.app.models import Artifact, ContentArtifact

    wrong = []
    for repo in world.on_demand_repos:
        for ca in ContentArtifact.objects.select_related("artifact").filter(
                content__in=repo.latest_version().content):
            digest = ca.content.cast().digest
            rows = Artifact.objects.filter(sha256=digest)
            path = os.path.join(str(settings.MEDIA_ROOT), "artifact", digest[:2], digest[2:])
            if ca.artifact is None:
                if rows.exists() or os.path.exists(path):
                    wrong.append(f"{ca.relative_path}: an artifact or file but no link")
                continue
            with open(ca.artifact.file.path, "rb") as stored:
                if hashlib.sha256(stored.read()).hexdigest() != digest:
                    wrong.append(f"{ca.relative_path}: stored file is not its bytes")
    partial = [os.path.join(top, n) for top, _, names in
               os.walk(os.path.join(str(settings.MEDIA_ROOT), "artifact"))
               for n in names if n.startswith(".partial-")]
    return wrong + [f"half-written copy {p}" for p in partial]


def _seed(request: pytest.FixtureRequest) -> int:
    seed = request.config.getoption("hypothesis_seed", None)
    return int(seed) if seed is not None else 17


#: The servers stormed, at the same time (each its own worker, world and
#: WORKING_DIRECTORY): on a shared 2-core machine two storms side by side take about the
#: time of one after the other's CPU, not the sum of their waits.
RUNNERS = ("granian", "uvicorn")


@dataclass
class Outcome:
    """One server's storm, for the assertions made once both have ended."""

    runner: str
    failures: list[str]
    settled: bool
    above_idle: list[str]
    state: list[str]
    served_after: Counter


def _storm_one(runner: str, storm_world: World, upstream, s3, redis_server,
               seed: int) -> Outcome:
    """Storm ``runner``'s worker (on a thread of its own) and gather what the test
    asserts; the figures go to the report."""
    from django.db import connection

    own = dict(storm_world.env)
    own["PULP_WORKING_DIRECTORY"] = tempfile.mkdtemp(prefix=f"storm-{runner}-", dir=TEST_ROOT)
    world = _on_demand(World(storm_world.targets, [], [], own), upstream,
                       random.Random(f"{seed}-{runner}"))
    started = time.monotonic()
    server = content_app(runner, env=world.env, probe="/pulp/content/default/")
    try:
        pid = httpx.get(server.url(HEALTH), timeout=DEADLINE).json()["worker"]["pid"]
        peers = {int(urlsplit(upstream.base).port or 0): "upstream",
                 int(urlsplit(s3).port or 0): "s3", redis_server.port: "redis",
                 int(settings.DATABASES["default"].get("PORT") or 5432): "postgresql"}
        worker = Worker(server, pid, int(urlsplit(server.base).port or 0), peers,
                        world.env["PULP_WORKING_DIRECTORY"])
        # Warm up: one target of each kind, whole (pools, clients and caches exist).
        firsts = {t.kind: t for t in reversed(world.targets)}
        for target in firsts.values():
            if not target.kind.startswith("held"):
                response = httpx.get(server.url(target.path), timeout=DEADLINE)
                assert response.status_code == 200, (target.path, response.text[:200])
                assert response.content == target.blob, target.path
        idle = _settled(worker)
        rng = random.Random(f"{seed}-{runner}")
        tally = Tally()
        with Sampler(worker) as sampler:
            asyncio.run(_storm(world, server.base, upstream, rng, REQUESTS, tally))
        storm_seconds = time.monotonic() - started
        for gate in world.gates:
            gate.set()
        settle_started = time.monotonic()
        last: list[list[str]] = [[]]

        def back_to_idle() -> bool:
            last[0] = _above_idle(worker.look(), idle)
            return not last[0]

        settled = wait_for(back_to_idle, SETTLE_SECONDS, interval=1.0)
        settle_seconds = time.monotonic() - settle_started
        after = worker.look()
        state = _on_demand_state(world)
        # Every on-demand file is served whole afterwards (the service is intact).
        served_after: Counter = Counter()
        for target in world.targets:
            if target.kind in ("on_demand", "held", "held-body", "streamed"):
                response = httpx.get(server.url(target.path), timeout=DEADLINE)
                ok = response.status_code == 200 and response.content == target.blob
                served_after["ok" if ok else f"{response.status_code}/wrong"] += 1
        adversarial.record_storm(runner, {
            "requests": REQUESTS, "cuts": dict(Counter(c for c, _ in tally.cuts.elements())),
            "statuses": dict(tally.statuses), "failures": len(tally.failures),
            "idle": idle.summary(), "peak": dict(sampler.peak), "after": after.summary(),
            "settled": settled, "settle_seconds": settle_seconds,
            "storm_seconds": storm_seconds, "on_demand_problems": len(state),
            "served_after": dict(served_after), "seed": seed})
        return Outcome(runner, tally.failures, settled, last[0], state, served_after)
    finally:
        for gate in world.gates:
            gate.set()
        stop_server(server)
        connection.close()  # this thread's own


def test_abort_storm_leaves_nothing_behind(storm_world, upstream, s3, redis_server, request):
    seed = _seed(request)
    with ThreadPoolExecutor(len(RUNNERS)) as pool:
        running = [pool.submit(_storm_one, runner, storm_world, upstream, s3, redis_server,
                               seed) for runner in RUNNERS]
        outcomes = [future.result() for future in running]
    for outcome in outcomes:
        assert not outcome.failures, (outcome.runner, outcome.failures[:10])
        assert outcome.settled, (f"{outcome.runner}: not back to idle after "
                                 f"{SETTLE_SECONDS:.0f} s: {outcome.above_idle}")
        assert not outcome.state, (outcome.runner, outcome.state[:10])
        assert set(outcome.served_after) == {"ok"}, (outcome.runner, outcome.served_after)
