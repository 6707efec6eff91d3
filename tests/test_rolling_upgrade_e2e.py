"""A rolling upgrade under load (issue #17, scale-out): an earlier release of this app,
pulpcore-content and this checkout's app on one PostgreSQL database and one Redis (the
response cache on), behind nginx, replaced one process at a time while clients keep
asking, with every answer checked.

* **The old release** is a real earlier commit of this repository (:data:`OLD_RELEASE`),
  taken out of the git history with ``git archive`` and run from the same virtualenv with
  its own ``PYTHONPATH`` (and working directory), so its code, not this checkout's, is
  imported. That it really runs is checked over HTTP: the old release answers a header
  guard's unreadable credentials with 500, this checkout with 403 (fixed since).
* **The front** is nginx with an ``upstream`` group of the three processes and
  ``proxy_next_upstream error timeout``, as a deployment (or a Kubernetes Service) spreads
  requests over replicas, plus one pinned port per process for the requests a test needs
  in flight on that very process.
* **The load**: clients asking for published files (small and large), HEAD, Range, a
  listing, on-demand files with and without Range (a fresh on-demand distribution per
  phase, so first downloads, and their saves, race between versions) and a guarded file
  with and without credentials; every answer's status and bytes are compared with the
  file's (a 403 without credentials).
* **The cache across versions**: while the old release, pulpcore-content and this
  checkout serve side by side, each caches fresh entries (a file's GET and HEAD, a
  listing, a saved on-demand download) and the other two must answer them as ``HIT``s
  with the file's bytes.
* **The switch**, per process: requests held in flight on it (a large file read slowly
  and a streamed on-demand file whose upstream is held until after the signal), SIGTERM,
  its listener closes at once, the process exits and its ``AppStatus`` rows are gone,
  its replacement starts on the same port and answers, the held requests must have ended
  whole, and the new process must take its share of the load before the next one is
  switched.

Expected: no failed request, no 5xx. The figures are printed with ``pytest -s`` and go to
reliability/report.md under ``make adversarial`` (more clients and requests per phase).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import Server, family, free_port, start, stop
from tests import adversarial
from tests.helpers import BIN, DEADLINE, ROOT, TEST_ROOT, on_demand, unique_name, wait_for
from tests.upstream import Behaviour

pytestmark = pytest.mark.adversarial

#: The earlier release: the last commit landed before the 2026-11-29 afternoon session's
#: work (outage gate, on-demand save placement, cache connection bound, guard fixes), with
#: the same settings interface as this checkout.
OLD_RELEASE = "112dcc586fa2a747b36039f9f43bc26914a51bef"
#: Concurrent clients through nginx, and the answers each process must give through the
#: group in each phase before the next switch (the CI slice; ``make adversarial`` scales).
CLIENTS = 4 if adversarial.PROFILE == "ci" else 12
#: Seconds a started process may take to answer: a replacement starts while the others
#: serve the load, and a full adversarial run on a shared 2-core machine once took more
#: than 60 s for one (a deadline for the event, not a pause).
STARTUP = 180.0
SHARE = 20 if adversarial.PROFILE == "ci" else 40 * min(adversarial.SCALE, 5)
#: A file large enough to be in flight when its server is told to stop (more than the
#: socket buffers between it and a slow client can hold).
LARGE = 16 * 1024 * 1024
#: Seconds a held request's client spends reading the large file (it must outlast the
#: server's SIGTERM).
SLOW_READ = 3.0
#: Seconds the app's response cache stays off after a Redis call failed
#: (``CONTENT_ASGI_CACHE_RETRY``, set for every process here): a cross-version read is
#: excused only by a failure logged that long before it at most.
CACHE_RETRY = 5.0


# --- the old release -------------------------------------------------------------------

def export_release(commit: str, into: str) -> str:
    """``pulp_content_asgi`` as it was at ``commit``, extracted under ``into``; the
    directory to put on ``PYTHONPATH``. Fails (not skips) without the git history: a clean
    clone has it; a shallow one needs ``git fetch --unshallow``."""
    found = subprocess.run(["git", "-C", ROOT, "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        pytest.fail(f"commit {commit} (the old release) is not in this checkout's git "
                    f"history: {found.stderr.strip()} (a shallow clone: git fetch --unshallow)")
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit, "pulp_content_asgi"],
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", into], input=archive.stdout, check=True)
    return into


# --- the processes ---------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """A kind of process in the group: which code, which server, how many workers."""

    version: str  # "old", "new" or "pulpcore-content"
    server: str  # "granian", "uvicorn" or "gunicorn"
    workers: int = 1

    def __str__(self) -> str:
        name = self.version if self.version == "pulpcore-content" else \
            f"{self.version} ({self.server})"
        return name if self.workers == 1 else f"{name} x{self.workers}"


OLD_GRANIAN = Kind("old", "granian")
OLD_UVICORN = Kind("old", "uvicorn")
NEW_GRANIAN = Kind("new", "granian")
NEW_UVICORN = Kind("new", "uvicorn")
#: uvicorn's multi-worker supervisor (it kept the listener open while draining: fixed).
NEW_UVICORN_2 = Kind("new", "uvicorn", 2)
PULPCORE = Kind("pulpcore-content", "gunicorn")


@dataclass
class Slot:
    """One place in nginx's upstream group (a port) and the process serving it."""

    port: int
    pinned: int  # nginx's port that reaches only this slot
    kind: Kind
    process: Server | None = None


def start_process(kind: Kind, port: int, env: dict[str, str], old_tree: str) -> Server:
    """Start ``kind`` on ``port`` and wait until ``HEAD /pulp/content/`` answers."""
    if kind.version == "pulpcore-content":
        argv = [os.path.join(BIN, "pulpcore-content"), "--bind", "127.0.0.1:{port}",
                "--workers", "1", "--no-control-socket"]
        cwd = ROOT
    else:
        argv = [os.path.join(BIN, "pulp-content-asgi"), "--bind", "127.0.0.1:{port}",
                "--server", kind.server, "--workers", str(kind.workers),
                "--log-level", "warning"]
        cwd = ROOT
        if kind.version == "old":
            # The old tree first on sys.path, and a working directory without this
            # checkout's package in it: `python -c` and `-m` (a spawned worker's start)
            # put the working directory before PYTHONPATH.
            env = {**env, "PYTHONPATH": old_tree}
            cwd = old_tree
    return start(argv, os.path.join(TEST_ROOT, "rolling"), env, port=port, cwd=cwd,
                 timeout=STARTUP)


def start_all(kinds: list[Kind], ports: list[int], env: dict[str, str], old_tree: str
              ) -> list[Server]:
    """Start every kind at once (each on its port); stop them all if one fails."""
    with ThreadPoolExecutor(len(kinds)) as pool:
        futures = [pool.submit(start_process, k, p, env, old_tree)
                   for k, p in zip(kinds, ports, strict=True)]
    started = [f.result() for f in futures if f.exception() is None]
    if len(started) < len(kinds):
        for server in started:
            stop(server)
        raise next(f.exception() for f in futures if f.exception() is not None)  # type: ignore[misc]
    return started


def signal_stop(server: Server, group: bool) -> None:
    """SIGTERM the server: its whole process group (systemd's default KillMode) or its
    main process alone (Kubernetes signals the container's first process)."""
    if group:
        os.killpg(server.process.pid, signal.SIGTERM)
    else:
        server.process.send_signal(signal.SIGTERM)


def status_rows(pids: list[int]) -> set[str]:
    """The ``AppStatus`` rows (content apps) that processes ``pids`` registered; each
    worker is named ``{pid}@{hostname}`` (``WORKER_NAME_TEMPLATE``'s default)."""
    from pulpcore.app.models import AppStatus

    host = socket.gethostname()
    return set(AppStatus.objects.filter(app_type="content", name__in=[
        f"{pid}@{host}" for pid in pids]).values_list("name", flat=True))


def refuses(port: int) -> bool:
    """Whether a new connection to ``port`` is refused (nothing listens there)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


# --- nginx in front -----------------------------------------------------------------------

def nginx_conf(state: str, port: int, slots: list[Slot]) -> str:
    """The front: an upstream group of every slot (connection errors and timeouts go to
    the next server, a failed server is left alone for 1 s), and one pinned server per
    slot. ``X-Upstream`` names the address that answered."""
    servers = "".join(f"    server 127.0.0.1:{s.port} max_fails=1 fail_timeout=1s;\n"
                      for s in slots)
    proxy = ("    proxy_http_version 1.1;\n"
             '    proxy_set_header Connection "";\n'
             "    proxy_set_header Host $http_host;\n"
             "    proxy_buffering off;\n"
             "    proxy_read_timeout 120s;\n"
             "    proxy_connect_timeout 5s;\n"
             "    proxy_next_upstream error timeout;\n"
             "    add_header X-Upstream $upstream_addr always;\n")
    pinned = "".join(
        f"upstream slot-{s.port} {{ server 127.0.0.1:{s.port}; keepalive 8; }}\n"
        f"server {{ listen 127.0.0.1:{s.pinned};\n"
        f"  location / {{ proxy_pass http://slot-{s.port};\n{proxy}  }} }}\n"
        for s in slots)
    return (f"daemon off; pid {state}/pid; error_log {state}/error.log info;\n"
            "events { worker_connections 4096; }\n"
            f"http {{ client_body_temp_path {state}/tmp; proxy_temp_path {state}/tmp;\n"
            "  log_format rolling '$status $upstream_addr $upstream_status "
            "$body_bytes_sent $request_method $request_uri';\n"
            f"  access_log {state}/access.log rolling;\n"
            f"upstream group {{\n{servers}    keepalive 32;\n}}\n"
            f"server {{ listen 127.0.0.1:{port};\n"
            f"  location / {{ proxy_pass http://group;\n{proxy}  }} }}\n"
            f"{pinned}}}\n")


# --- what is served ------------------------------------------------------------------------

#: The header and value of the guarded distribution's guard (a header guard, Base64).
SECRET = ("X-Rolling-Secret", base64.b64encode(b"open-sesame").decode())


@dataclass
class World:
    """The content the clients ask for (the on-demand distribution changes per phase)."""

    base: str
    files: dict[str, bytes]
    #: A distribution behind a header guard, and its one file.
    guarded: tuple[str, bytes]
    ondemand: tuple[str, dict[str, bytes]] = ("", {})


def _piece(blob: bytes, n: int) -> tuple[int, int]:
    first = (n * 7919) % max(len(blob) - 4096, 1)
    return first, min(first + 1 + (n % 4096), len(blob) - 1)


REQUESTS = ("file", "large", "head", "range", "listing", "ondemand", "ondemand-range",
            "guarded", "denied")


@dataclass
class Tally:
    """Everything the clients saw."""

    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *keys: str) -> None:
        with self.lock:
            self.counts.update(keys)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what[:400])


def check(kind: str, response: httpx.Response, blob: bytes | None, names: list[str],
          piece: tuple[int, int]) -> str | None:
    """What is wrong with one answer (None: the status and bytes the file calls for)."""
    if kind == "listing":
        if response.status_code != 200:
            return f"listing: {response.status_code}"
        missing = [n for n in names if n not in response.text]
        return f"listing without {missing}" if missing else None
    assert blob is not None
    if kind == "head":
        if response.status_code != 200:
            return f"HEAD: {response.status_code}"
        length = response.headers.get("content-length")
        return None if length == str(len(blob)) else f"HEAD: Content-Length {length}"
    if kind == "denied":
        if response.status_code != 403:
            return f"guarded file without credentials: {response.status_code}"
        return "guarded bytes without credentials" if blob in response.content else None
    if kind == "ondemand-range" and response.status_code == 200:
        # A server may answer a Range with the whole file (RFC 9110 §14.2).
        return None if response.content == blob else "Range (whole): other bytes"
    if kind in ("range", "ondemand-range"):
        first, last = piece
        if response.status_code != 206:
            return f"Range {first}-{last}: {response.status_code}"
        expected = f"bytes {first}-{last}/{len(blob)}"
        if response.headers.get("content-range") != expected:
            return f"Range: Content-Range {response.headers.get('content-range')}, not {expected}"
        return None if response.content == blob[first:last + 1] else "Range: other bytes"
    if response.status_code != 200:
        return f"{kind}: {response.status_code} {response.content[:120]!r}"
    if response.content != blob:
        return f"{kind}: {len(response.content)} bytes that are not the file's {len(blob)}"
    return None


class Load:
    """:data:`CLIENTS` clients asking nginx in turn for every kind of request until
    stopped; every answer is checked and counted (by kind, status, the upstream that
    answered and ``X-PULP-CACHE``)."""

    def __init__(self, front: str, world: World) -> None:
        self.front = front
        self.world = world
        self.tally = Tally()
        self.served: Counter = Counter()  # answers per upstream port
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True)
                         for n in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(DEADLINE)

    def _client(self, number: int) -> None:
        rng = random.Random(number)
        world = self.world
        small = [n for n in world.files if n != "large.bin"]
        with httpx.Client(timeout=DEADLINE) as client:
            sent = number
            while not self._stop.is_set():
                sent += 1
                kind = REQUESTS[sent % len(REQUESTS)]
                method, headers, blob, piece = "GET", {}, None, (0, 0)
                if kind == "listing":
                    path = f"/pulp/content/{world.base}/"
                elif kind.startswith("ondemand"):
                    base, files = world.ondemand
                    name = rng.choice(sorted(files))
                    path, blob = f"/pulp/content/{base}/{name}", files[name]
                    if kind == "ondemand-range":
                        piece = _piece(blob, sent)
                        headers["Range"] = f"bytes={piece[0]}-{piece[1]}"
                elif kind in ("guarded", "denied"):
                    path, blob = f"/pulp/content/{world.guarded[0]}/s.bin", world.guarded[1]
                    if kind == "guarded":
                        headers[SECRET[0]] = SECRET[1]
                else:
                    name = "large.bin" if kind == "large" else rng.choice(small)
                    path, blob = f"/pulp/content/{world.base}/{name}", world.files[name]
                    if kind == "head":
                        method = "HEAD"
                    elif kind == "range":
                        piece = _piece(blob, sent)
                        headers["Range"] = f"bytes={piece[0]}-{piece[1]}"
                try:
                    response = client.request(method, self.front + path, headers=headers)
                except httpx.HTTPError as exc:
                    self.tally.add("requests", "no answer")
                    self.tally.fail(f"{method} {path} {headers}: no answer: {exc!r}")
                    continue
                upstream = response.headers.get("x-upstream", "")
                wrong = check(kind, response, blob, sorted(world.files), piece)
                self.tally.add("requests", f"{kind}", f"status {response.status_code}",
                               f"cache {response.headers.get('x-pulp-cache', '-')}")
                if ", " in upstream:
                    self.tally.add("retried by nginx")
                port = upstream.rsplit(":", 1)[-1]
                with self.tally.lock:
                    self.served[port] += 1
                if response.status_code >= 500:
                    self.tally.add("5xx")
                if wrong:
                    self.tally.fail(f"{method} {path} {headers} via {upstream}: {wrong}")
                elif response.status_code == 206:
                    self.tally.add("checked_206")
                elif response.status_code == 200 and kind != "head":
                    self.tally.add("checked_200")


# --- requests held in flight across a switch ------------------------------------------------

class Held:
    """A download through ``url`` that must end whole although its server is stopped
    under it: read slowly (``slow``) or held upstream (``gate``) until after the signal."""

    def __init__(self, url: str, blob: bytes, slow: bool) -> None:
        self.url = url
        self.blob = blob
        self.slow = slow
        self.started = threading.Event()
        self.status: int | None = None
        self.received = 0
        self.digest = ""
        self.error = ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        got = hashlib.sha256()
        pause = SLOW_READ / (len(self.blob) / 65536) if self.slow else 0.0
        try:
            with httpx.stream("GET", self.url, timeout=DEADLINE) as response:
                self.status = response.status_code
                for chunk in response.iter_raw(65536):
                    got.update(chunk)
                    self.received += len(chunk)
                    self.started.set()
                    if pause:
                        # Pacing a slow client (the download must still be in flight
                        # when its server is stopped), not a wait for something to happen.
                        time.sleep(pause)
        except httpx.HTTPError as exc:
            self.error = repr(exc)
        finally:
            self.started.set()
            self.digest = got.hexdigest()

    def problem(self) -> str | None:
        """None when the whole file arrived with a 200."""
        self.thread.join(DEADLINE * 2)
        if self.thread.is_alive():
            return f"{self.url}: still reading after {DEADLINE * 2} s"
        if self.error or self.status != 200 \
                or self.digest != hashlib.sha256(self.blob).hexdigest():
            return (f"{self.url}: {self.status}, {self.received} of {len(self.blob)} bytes "
                    f"{self.error}")
        return None


# --- the tests -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def old_tree() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="old-release-")
    yield export_release(OLD_RELEASE, directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def quiet_clients() -> Iterator[None]:
    """httpx logs every request at INFO under pulpcore's logging set-up: thousands here."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def identity_guarded() -> str:
    """A distribution behind a jq header guard: the old release answers unreadable
    credentials 500 (pulpcore's guard raises ValueError), this checkout 403."""
    from pulpcore.app.models import HeaderContentGuard

    u = unique_name()
    guard = HeaderContentGuard.objects.create(name=f"rolling-jq-{u}", header_name="x-identity",
                                              header_value="acme", jq_filter=".identity.org")
    repo = data.repository(f"rolling-jq-{u}", {"g.txt": os.urandom(100)})
    data.distribute(f"rolling-jq-{u}", publication=data.publish(repo.latest_version()),
                    content_guard=guard)
    return f"/pulp/content/rolling-jq-{u}/g.txt"


def guarded_distribution() -> tuple[str, bytes]:
    """A distribution behind a header guard (:data:`SECRET`): base path, its file's bytes."""
    from pulpcore.app.models import HeaderContentGuard

    u = unique_name()
    guard = HeaderContentGuard.objects.create(name=f"rolling-secret-{u}",
                                              header_name=SECRET[0], header_value="open-sesame")
    blob = os.urandom(30_000)
    repo = data.repository(f"rolling-secret-{u}", {"s.bin": blob})
    data.distribute(f"rolling-secret-{u}", publication=data.publish(repo.latest_version()),
                    content_guard=guard)
    return f"rolling-secret-{u}", blob


def which_code(port: int, guarded: str) -> str:
    """"old" or "new" by what the process at ``port`` answers a header it cannot read
    (pulpcore-content answers as the old release does)."""
    answer = httpx.get(f"http://127.0.0.1:{port}{guarded}", timeout=DEADLINE,
                       headers={"X-Identity": base64.b64encode(b'"a string"').decode()})
    return {500: "old", 403: "new"}.get(answer.status_code, str(answer.status_code))


def fresh_ondemand(upstream: Any, count: int) -> tuple[str, dict[str, bytes]]:
    files = {f"od-{i}.bin": os.urandom(50_000 + i * 997) for i in range(count)}
    distribution, _, _ = on_demand(upstream, files)
    return distribution.base_path, files


@dataclass
class Crossed:
    """What the cross-version cache reads found."""

    answers: int = 0
    problems: list[str] = field(default_factory=list)
    #: Reads served without the cache while the reader's Redis calls failed (logged), each
    #: read again until the cache was asked: then a HIT.
    bypassed: list[str] = field(default_factory=list)


def read_cached(reader: Slot, ask: Any, right: Any) -> tuple[str | None, str | None]:
    """One read of another version's cache entry, judged by
    :func:`tests.adversarial.read_cached` (its verdicts are unit-tested in
    tests/unit/test_cross_version_cache_check.py) with the reader's own log."""
    log = None if reader.process is None or reader.kind.version == "pulpcore-content" \
        else reader.process.log
    return adversarial.read_cached(ask, right, log, CACHE_RETRY, DEADLINE)


def cross_read(slots: list[Slot], upstream: Any, redis: Any) -> Crossed:
    """Each process in turn caches a file's GET and HEAD, a listing and a saved on-demand
    download (fresh paths); each other process must answer them from that entry (``HIT``)
    with the file's bytes, for GET, HEAD and Range alike (:func:`read_cached`), and no
    reader may have rewritten the entry."""
    import redis as redis_client

    crossed = Crossed()
    entries = redis_client.Redis(host="127.0.0.1", port=redis.port)
    for writer in slots:
        _write_then_read(writer, slots, upstream, entries, crossed)
    return crossed


def _write_then_read(writer: Slot, slots: list[Slot], upstream: Any, entries: Any,
                     crossed: Crossed) -> None:
    """``writer`` caches fresh entries; every other slot reads them (:func:`cross_read`)."""
    base = f"http://127.0.0.1:{writer.port}"
    u = unique_name()
    blob, saved = os.urandom(70_000), os.urandom(90_000)
    repo = data.repository(f"matrix-{u}", {"a.txt": blob})
    data.distribute(f"matrix-{u}", publication=data.publish(repo.latest_version()))
    od, _, _ = on_demand(upstream, {"o.bin": saved})
    file, listing = f"/pulp/content/matrix-{u}/a.txt", f"/pulp/content/matrix-{u}/"
    ondemand = f"/pulp/content/{od.base_path}/o.bin"
    wrote = [httpx.request(m, base + p, timeout=DEADLINE) for m, p in
             (("GET", file), ("HEAD", file), ("GET", listing), ("GET", ondemand))]
    if [w.status_code for w in wrote] != [200] * 4 or \
            [w.headers.get("x-pulp-cache") for w in wrote[:3]] != ["MISS"] * 3:
        seen_by_writer = [(w.status_code, w.headers.get("x-pulp-cache")) for w in wrote]
        crossed.problems.append(f"{writer.kind} writing: {seen_by_writer}")
        return
    # The entries as the writer stored them (pulpcore-content stores a download's entry
    # after the response has ended).
    fields = [(f"matrix-{u}", f"{file}:GET"), (f"matrix-{u}", f"{file}:HEAD"),
              (f"matrix-{u}", f"{listing}:GET"), (od.base_path, f"{ondemand}:GET")]
    if not wait_for(lambda: all(entries.hexists(k, f) for k, f in fields)):
        crossed.problems.append(f"{writer.kind} stored no entry for "
                                f"{[f for k, f in fields if not entries.hexists(k, f)]}")
    stored = {(k, f): entries.hget(k, f) for k, f in fields}
    reads = {
        "GET": ("GET", file, {}, lambda a: a.status_code == 200 and a.content == blob),
        "Range": ("GET", file, {"Range": "bytes=100-4195"},
                  lambda a: a.status_code == 206 and a.content == blob[100:4196]),
        "HEAD": ("HEAD", file, {}, lambda a: a.status_code == 200
                 and a.headers.get("content-length") == str(len(blob))),
        "listing": ("GET", listing, {}, lambda a: a.status_code == 200 and "a.txt" in a.text),
        "on-demand": ("GET", ondemand, {}, lambda a: a.status_code == 200 and a.content == saved),
    }
    for reader in slots:
        if reader is writer:
            continue
        other = f"http://127.0.0.1:{reader.port}"
        for what, (method, path, headers, right) in reads.items():
            crossed.answers += 1
            problem, note = read_cached(
                reader, lambda extra, m=method, url=other + path, h=headers: httpx.request(
                    m, url, headers={**h, **extra}, timeout=DEADLINE), right)
            if problem is not None:
                crossed.problems.append(f"{reader.kind} reading {writer.kind}'s {what}: "
                                        f"{problem}")
            if note is not None:
                crossed.bypassed.append(f"{reader.kind} reading {writer.kind}'s {what}: {note}")
    rewritten = [f for (k, f), value in stored.items() if entries.hget(k, f) != value]
    if rewritten:
        crossed.problems.append(f"{writer.kind}'s entries rewritten by a reader: {rewritten}")


#: The switches, in order: which slot, what replaces it, and whether the whole process
#: group is signalled (systemd's KillMode=control-group) or the main process alone
#: (Kubernetes). The CI slice switches one old process (the old release, pulpcore-content
#: and this checkout then serve side by side); ``make adversarial`` switches all three (the
#: uvicorn one to two workers) and then rolls that one back to the old release.
STEPS: list[tuple[int, Kind, bool]] = [(0, NEW_GRANIAN, True)]
if adversarial.PROFILE != "ci":
    STEPS = [(0, NEW_GRANIAN, True), (1, NEW_GRANIAN, False), (2, NEW_UVICORN_2, False),
             (2, OLD_GRANIAN, False)]


def test_rolling_upgrade_under_load_fails_no_request(cache_settings, redis_server, upstream,
                                                     old_tree, quiet_clients, tmp_path):
    u = unique_name()
    files = {f"f{i}.txt": os.urandom(1000 + 4093 * i) for i in range(6)}
    files["large.bin"] = os.urandom(LARGE)
    repo = data.repository(f"rolling-{u}", files)
    data.distribute(f"rolling-{u}", publication=data.publish(repo.latest_version()))
    world = World(f"rolling-{u}", files, guarded_distribution(),
                  fresh_ondemand(upstream, 8))
    guarded = identity_guarded()
    # JSON logs (with the time and each request's correlation id) tell a cache read served
    # without the cache because Redis failed from one that found no usable entry.
    env = {**cache_settings, "PULP_CONTENT_ASGI_LOG_FORMAT": "json",
           "PULP_CONTENT_ASGI_CACHE_RETRY": str(CACHE_RETRY)}

    slots = [Slot(free_port(), free_port(), kind)
             for kind in (OLD_GRANIAN, PULPCORE, OLD_UVICORN)]
    for slot, process in zip(slots, start_all([s.kind for s in slots],
                                               [s.port for s in slots], env, old_tree),
                             strict=True):
        slot.process = process
    state = str(tmp_path / "nginx")
    os.makedirs(os.path.join(state, "tmp"))
    front_port = free_port()
    conf = os.path.join(state, "nginx.conf")
    with open(conf, "w") as out:
        out.write(nginx_conf(state, front_port, slots))
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    switch_problems: list[str] = []
    held_count = 0
    crossed = Crossed()
    report: list[str] = []
    began = time.monotonic()
    nginx = None
    try:
        # The old release is what runs: it answers unreadable credentials 500 (fixed since).
        assert [which_code(s.port, guarded) for s in slots] == ["old", "old", "old"]
        nginx = start([binary, "-c", conf], state, port=front_port, probe="/pulp/content/")
        with Load(nginx.base, world) as load:
            def share_taken(port: int, since: int) -> bool:
                with load.tally.lock:
                    return load.served[str(port)] - since >= SHARE

            for slot in slots:
                assert wait_for(lambda s=slot: share_taken(s.port, 0), DEADLINE * 2), \
                    (slot.kind, load.served, load.tally.failures[:5])
            report.append(f"each process took its share after {time.monotonic() - began:.0f} s")
            for number, (index, replacement, group) in enumerate(STEPS):
                slot = slots[index]
                assert slot.process is not None
                # Requests in flight on this very process when it is told to stop: a
                # large file read slowly, and a streamed file held upstream until after
                # the signal.
                hold = threading.Event()
                held_name = f"held-{number}.bin"
                held_blob = os.urandom(3 * 1024 * 1024)
                streamed, prefix, _ = on_demand(upstream, {held_name: held_blob},
                                                policy="streamed")
                upstream.behaviour[prefix + held_name] = Behaviour(gate=hold, gate_after=65536)
                pinned = f"http://127.0.0.1:{slot.pinned}/pulp/content"
                held = [Held(f"{pinned}/{world.base}/large.bin", files["large.bin"], True),
                        Held(f"{pinned}/{streamed.base_path}/{held_name}", held_blob, False)]
                for one in held:
                    assert one.started.wait(DEADLINE), one.url
                # Its workers are listed by the status API until they stop.
                pids = family(slot.process.pid)
                assert wait_for(lambda p=pids: status_rows(p)), (slot.kind, pids)
                stopping = time.monotonic()
                signal_stop(slot.process, group)
                # Each server closes its listener at once and finishes what it has begun.
                closed = wait_for(lambda s=slot: refuses(s.port))
                if not closed:
                    switch_problems.append(f"{slot.kind}: still accepting connections "
                                           f"{DEADLINE} s after SIGTERM")
                hold.set()
                status = slot.process.process.wait(DEADLINE * 2)
                stopped = time.monotonic()
                if not wait_for(lambda p=pids: not status_rows(p)):
                    switch_problems.append(f"{slot.kind}: its AppStatus rows outlived it: "
                                         f"{status_rows(pids)}")
                for one in held:
                    held_count += 1
                    if (problem := one.problem()) is not None:
                        switch_problems.append(f"{slot.kind}: {problem}")
                world.ondemand = fresh_ondemand(upstream, 8)
                was = slot.kind
                slot.kind = replacement
                slot.process = start_process(replacement, slot.port, env, old_tree)
                ready = time.monotonic()
                assert which_code(slot.port, guarded) == replacement.version
                with load.tally.lock:
                    since = load.served[str(slot.port)]
                assert wait_for(lambda s=slot, n=since: share_taken(s.port, n), DEADLINE * 2), \
                    (slot.kind, load.served, load.tally.failures[:5])
                shared = time.monotonic()
                if number == 0:
                    # Three versions side by side: each reads what the others cached.
                    crossed = cross_read(slots, upstream, redis_server)
                    report.append(f"cache entries read across versions in "
                                  f"{time.monotonic() - shared:.0f} s")
                report.append(f"{was} -> {replacement} ({'group' if group else 'main'} "
                              f"SIGTERM): exit status {status}, listener closed: {closed}, "
                              f"exited {stopped - stopping:.1f} s after the signal, "
                              f"replacement answering {ready - stopped:.1f} s later, "
                              f"its share taken {shared - ready:.1f} s after")
    finally:
        for slot in slots:
            if slot.process is not None:
                stop(slot.process)
        if nginx is not None:
            stop(nginx)
    seconds = time.monotonic() - began
    tally = load.tally
    with open(os.path.join(state, "error.log"), errors="replace") as log:
        errors = log.read()
    nginx_saw: Counter = Counter()
    for line in errors.splitlines():
        for what in ("Connection refused", "prematurely closed", "reset by peer",
                     "timed out", "no live upstreams"):
            if what in line:
                nginx_saw[what] += 1
    section = adversarial.TALLIES["rolling"]
    for key, name in (("requests", "requests"), ("5xx", "5xx"), ("checked_200", "checked_200"),
                      ("checked_206", "checked_206"), ("no answer", "no_answer")):
        section.counts[name] += tally.counts[key]
    section.counts["held"] += held_count
    section.counts["cache_bypassed"] += len(crossed.bypassed)
    for failure in tally.failures + switch_problems + crossed.problems:
        section.fail(failure)
    print(f"\nrolling upgrade: {tally.counts['requests']} requests in {seconds:.0f} s by "
          f"{CLIENTS} clients, {len(tally.failures)} failed, {tally.counts['5xx']} 5xx; "
          f"held in flight across a SIGTERM: {held_count}, {len(switch_problems)} failed")
    print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.counts.items())))
    print("  nginx error log: " + (", ".join(f"{k}: {v}" for k, v in nginx_saw.items())
                                   or "nothing"))
    print(f"  cache entries read across versions: {crossed.answers} answers, "
          f"{len(crossed.problems)} wrong, {len(crossed.bypassed)} served without the cache "
          "during a logged Redis failure (then read again)")
    for note in crossed.bypassed:
        print("  " + note)
    for line in report:
        print("  " + line)
    assert crossed.answers > 0 and crossed.problems == [], crossed.problems
    assert tally.failures == [], tally.failures[:20]
    assert switch_problems == []
    assert tally.counts["5xx"] == 0
    assert all(tally.counts[kind] > 0 for kind in REQUESTS), tally.counts
