"""The contenders, each started with the same number of worker processes on the same
database and files: our app (granian, uvicorn), pulpcore-content (gunicorn + aiohttp,
from the installed pulpcore, with asyncio's default loop and with uvloop) and nginx
serving the same bytes by relative path; and moto's S3 server for the object-storage
scenario.

A contender that does not start raises :class:`StartFailure` naming the reason and its
log file, so the run can record a "did not start" row and go on with the others.

Every server listens on loopback on a port of :data:`PORTS` when a range is configured
(``--ports``/``BENCH_PORTS``: a machine shared with other jobs keeps each to its own
range), else on any free ephemeral port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from pulp_content_asgi.devtools import processes

BIN = os.path.dirname(sys.executable)

#: The response cache, for the contenders that run with it (the machine's Redis).
CACHE_ENV = {"PULP_CACHE_ENABLED": "true", "PULP_REDIS_HOST": "127.0.0.1",
             "PULP_REDIS_PORT": "6379"}

#: An argument no contender accepts: ``--fail-start`` appends it to simulate a crash at start.
INVALID_ARGUMENT = "--bench-simulated-start-failure"

#: The shared library a process maps once uvloop is imported (uvloop/loop.cpython-*.so).
UVLOOP_LIBRARY = "/uvloop/loop."

#: What our app and pulpcore-content need for the object-storage scenario: the domain
#: segment in content URLs (the S3 storage is a domain's, ``bench/dataset.py``).
DOMAINS_ENV = {"PULP_DOMAIN_ENABLED": "true"}


def parse_ports(spec: str) -> range:
    """``"25500-25599"`` → the inclusive range of ports; raises ValueError on anything
    else (not two integers, reversed, outside 1024-65535)."""
    low, sep, high = spec.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ValueError(f"ports {spec!r}: expected LOW-HIGH, e.g. 25500-25599")
    first, last = int(low), int(high)
    if not 1024 <= first <= last <= 65535:
        raise ValueError(f"ports {spec!r}: need 1024 <= LOW <= HIGH <= 65535")
    return range(first, last + 1)


class Ports:
    """Loopback ports from a configured range, taken in turn (a port just released may
    still be held by a stopping server), or ephemeral ports when no range is set."""

    def __init__(self) -> None:
        self.range: range | None = None
        self._next = 0

    def configure(self, ports: range | None) -> None:
        self.range, self._next = ports, 0

    def take(self) -> int:
        """A port nothing listens on now; raises RuntimeError when the range is full."""
        if self.range is None:
            return processes.free_port()
        for step in range(len(self.range)):
            port = self.range[(self._next + step) % len(self.range)]
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            self._next = (self._next + step + 1) % len(self.range)
            return port
        raise RuntimeError(f"no free port in {self.range.start}-{self.range.stop - 1}")


PORTS = Ports()


@dataclass(frozen=True)
class Contender:
    name: str
    prefix: str  # URL prefix the data set's paths are served under
    cache: bool = False
    env: dict[str, str] = field(default_factory=dict)  # added to the server's environment

    def argv(self, workers: int, root: str, port: int) -> list[str]:
        raise NotImplementedError


@dataclass(frozen=True)
class ContentAsgi(Contender):
    server: str = "granian"

    def argv(self, workers: int, root: str, port: int) -> list[str]:
        return [os.path.join(BIN, "pulp-content-asgi"), "--bind", f"127.0.0.1:{port}",
                "--server", self.server, "--workers", str(workers), "--log-level", "warning"]


@dataclass(frozen=True)
class PulpcoreContent(Contender):
    """pulpcore's own entrypoint: gunicorn with ``aiohttp.GunicornWebWorker``, or
    ``aiohttp.GunicornUVLoopWebWorker`` when ``UVLOOP_ENABLED`` is set
    (``pulpcore/content/entrypoint.py``)."""

    def argv(self, workers: int, root: str, port: int) -> list[str]:
        return [os.path.join(BIN, "pulpcore-content"), "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers), "--log-level", "warning"]


@dataclass(frozen=True)
class Nginx(Contender):
    sendfile: bool = True
    #: Log every request to :func:`access_log` (the on-demand upstream: a run counts its
    #: fetches there); off for the contenders, whose rate it would cost.
    logged: bool = False

    def argv(self, workers: int, root: str, port: int) -> list[str]:
        conf = os.path.join(root, f"nginx-{port}.conf")
        os.makedirs(os.path.join(root, "nginx-tmp"), exist_ok=True)
        with open(conf, "w") as out:
            out.write(NGINX_CONF.format(workers=workers, port=port, state=root,
                                        sendfile="on" if self.sendfile else "off",
                                        access_log=f"{access_log(root, port)} fetches"
                                        if self.logged else "off",
                                        root=os.path.join(root, "nginx-root")))
        return [shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf]


def access_log(root: str, port: int) -> str:
    """The access log of a :class:`Nginx` with ``logged`` listening on ``port``."""
    return os.path.join(root, f"nginx-{port}-access.log")


NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {state}/nginx-{port}.pid;
error_log {state}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    # One line per request: method, status, body bytes sent, the request target as sent
    # (bench/ondemand.py's upstream_requests reads it).
    log_format fetches '$request_method $status $body_bytes_sent $request_uri';
    access_log {access_log};
    sendfile {sendfile};
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {state}/nginx-tmp;
    proxy_temp_path {state}/nginx-tmp;
    fastcgi_temp_path {state}/nginx-tmp;
    uwsgi_temp_path {state}/nginx-tmp;
    scgi_temp_path {state}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port};
        location /pulp/content/ {{ alias {root}/; }}
    }}
}}
"""

@dataclass(frozen=True)
class S3Server(Contender):
    """moto's S3 server (``moto_server``, from the ``moto[server]`` package the tests use):
    an S3-protocol server on loopback that checks SigV4 request signatures' form and keeps
    objects in memory (they are gone when it stops)."""

    def argv(self, workers: int, root: str, port: int) -> list[str]:
        return [os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)]


UVLOOP_ENV = {"PULP_UVLOOP_ENABLED": "true"}
METRICS_ENV = {"PULP_CONTENT_ASGI_PROMETHEUS_ENABLED": "true"}

CONTENDERS = [
    ContentAsgi("asgi-granian", "/pulp/content/", server="granian"),
    ContentAsgi("asgi-uvicorn", "/pulp/content/", server="uvicorn"),
    PulpcoreContent("pulpcore-content", "/pulp/content/"),
    PulpcoreContent("pulpcore-content-uvloop", "/pulp/content/", env=UVLOOP_ENV),
    ContentAsgi("asgi-granian-cache", "/pulp/content/", cache=True, server="granian"),
    # What the Prometheus recorder costs per request.
    ContentAsgi("asgi-granian-metrics", "/pulp/content/", server="granian", env=METRICS_ENV),
    # The pool's former default (8 connections per worker) against today's 4.
    ContentAsgi("asgi-granian-pool8", "/pulp/content/", server="granian",
                env={"PULP_CONTENT_ASGI_DB_CONNECTIONS": "8"}),
    PulpcoreContent("pulpcore-content-cache", "/pulp/content/", cache=True),
    PulpcoreContent("pulpcore-content-uvloop-cache", "/pulp/content/", cache=True,
                    env=UVLOOP_ENV),
    Nginx("nginx", "/pulp/content/"),
    # On loopback, copying can beat sendfile (django-asgi-notes §6): the ceiling is the
    # better of the two.
    Nginx("nginx-copy", "/pulp/content/", sendfile=False),
]


def baseline(source: str) -> ContentAsgi:
    """``asgi-granian`` running the package found in the source tree ``source`` (another
    commit's checkout): ``PYTHONPATH`` comes before the editable install on the server's
    ``sys.path``."""
    if not os.path.isfile(os.path.join(source, "pulp_content_asgi", "__init__.py")):
        raise SystemExit(f"--baseline {source}: no pulp_content_asgi package there")
    return ContentAsgi("asgi-granian-baseline", "/pulp/content/", server="granian",
                       env={"PYTHONPATH": source})


class StartFailure(Exception):
    """A contender that crashed or did not answer in time; ``log_path`` holds its output."""

    def __init__(self, reason: str, log_path: str) -> None:
        super().__init__(f"{reason} (log: {log_path})")
        self.reason, self.log_path = reason, log_path


def start(contender: Contender, workers: int, root: str, cpus: str | None, *, probe: str,
          timeout: float, fail: bool = False, port: int | None = None,
          extra_env: dict[str, str] | None = None) -> processes.Server:
    """Start ``contender`` (pinned to ``cpus`` with taskset when given) on ``port`` (one of
    :data:`PORTS` when None) and wait up to ``timeout`` seconds until GET ``probe``
    answers; ``fail`` adds :data:`INVALID_ARGUMENT`; ``extra_env`` is added to the
    contender's environment.

    Raises :class:`StartFailure` when the process exits or does not answer in time.
    """
    port = port or PORTS.take()
    argv = contender.argv(workers, root, port) + ([INVALID_ARGUMENT] if fail else [])
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    env = {**(CACHE_ENV if contender.cache else {"PULP_CACHE_ENABLED": "false"}),
           **contender.env, **(extra_env or {})}
    logs = os.path.join(root, "logs")
    os.makedirs(logs, exist_ok=True)
    log_path = os.path.join(logs, f"{contender.name}-w{workers}-{port}.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **env}, start_new_session=True)
    server = processes.Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_ready(server, probe, timeout)
    except BaseException:  # a failure or an interruption: leave no server behind
        processes.stop(server)
        raise
    return server


def wait_ready(server: processes.Server, probe: str, timeout: float) -> None:
    """Return once GET ``probe`` answers with a status below 500; raise
    :class:`StartFailure` if the process exits or ``timeout`` seconds pass.

    One request at a time, each allowed the rest of the deadline: a server slowed by a
    busy machine must not be buried under abandoned probes (pulpcore-content keeps
    working on a request whose client gave up, so short per-probe timeouts can keep it
    from ever answering in time).
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while (left := deadline - time.monotonic()) > 0:
        if server.process.poll() is not None:
            raise StartFailure(f"exited with status {server.process.returncode}",
                               server.log_path)
        try:
            with urllib.request.urlopen(server.url(probe), timeout=max(left, 1)) as answer:
                answer.read()
                return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return
            last = f"status {error.code}"
        except OSError as error:  # not listening yet, reset, or timed out
            last = f"{type(error).__name__}: {error}"
        time.sleep(0.5)
    raise StartFailure(f"did not answer GET {probe} within {timeout:g} s (last: {last})",
                       server.log_path)


def uvloop_workers(pid: int) -> tuple[int, int]:
    """(processes that map uvloop's extension, processes) in ``pid``'s family, the
    arbiter or supervisor included: which event loop the workers really run."""
    family = processes.family(pid)
    mapped = 0
    for member in family:
        try:
            with open(f"/proc/{member}/maps") as maps:
                mapped += any(UVLOOP_LIBRARY in line for line in maps)
        except OSError:
            continue
    return mapped, len(family)
