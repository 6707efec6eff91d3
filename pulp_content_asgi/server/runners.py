"""Start granian or uvicorn over ``pulp_content_asgi.asgi:application``.

Both are configured for this workload: large request headers accepted (post-quantum
client certificates in ``X-CLIENT-CERT`` exceed 8 KiB), bounded backpressure, graceful
shutdown bounded by ``--timeout``, and the server's own access log off (the app writes
one in a server-independent format). Each holds little of a response for a client that
reads slowly (issue #18, docs/operations.md "Slow clients and slowloris"): uvicorn's
transport buffers nothing past the kernel's (server/uvicorn_http.py), and granian's
per-connection buffer (hyper's ``max_buf_size``, :data:`GRANIAN_BUFFER_BYTES`) is cut
from 408 KiB to two of its ``pathsend`` pieces. Granian closes a connection whose
request headers are not complete ``CONTENT_ASGI_HEADER_TIMEOUT`` seconds after they
began (slowloris); uvicorn has no such limit. Granian serves at most
``CONTENT_ASGI_MAX_CONNECTIONS`` connections per worker (its own default, 1024 / workers,
let that many slow readers or slowloris connections stall a worker for everyone);
uvicorn has no limit (docs/operations.md, "Slow clients and slowloris").

An address another server already listens on is refused at start-up (exit status 1,
``cannot listen on HOST:PORT: address already in use``), as gunicorn (pulpcore-content)
refuses it, whichever server holds it; sharing a port between servers
(``SO_REUSEPORT``) happens only when asked for (``--reuse-port``). Granian's workers
each open their own ``SO_REUSEPORT`` socket, which would silently join another
server's, so the address is tried with an exclusive socket first.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from typing import Any

APP = "pulp_content_asgi.asgi:application"
SERVERS = ("granian", "uvicorn")
#: Bytes of a request's line and header fields uvicorn reads before answering 431
#: (server/uvicorn_http.py); granian's bound is its buffer (GRANIAN_BUFFER_BYTES).
MAX_HEADER_BYTES = 64 * 1024
#: Granian's HTTP/1 ``max_buffer_size`` (hyper's ``max_buf_size``; its default is
#: 8 KiB + 400 KiB): the response bytes hyper queues for a connection before it stops
#: taking more from the response, and the largest request head it reads (431 past it;
#: measured: 180 KiB heads pass with this, 420 KiB with the default). ``pathsend`` reads
#: a file in 128 KiB pieces, so this queues two of them: the one being written and the
#: next, read meanwhile. Measured with slow readers of a 16 MiB file (bench/slowmem.py):
#: 620-670 KiB per connection with the default, 380-420 KiB with this, 290 KiB with
#: 72 KiB, which cost fast downloads 10-25 % more CPU per byte (each piece read only
#: once the last was written).
GRANIAN_BUFFER_BYTES = 128 * 1024 + 8 * 1024


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_bind(value: str) -> Address:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT``/``PORT`` (all interfaces)."""
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"bind address {value!r} has no port")
    host = host.strip("[]") or "0.0.0.0"
    return Address(host, int(port))


class CannotListen(SystemExit):
    """The address cannot be listened on; exits with status 1 and one line saying why."""

    def __init__(self, address: Address, error: OSError) -> None:
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        hint = ""
        if error.errno == errno.EADDRINUSE:
            hint = (" (another server listens there: stop it, choose another --bind, or "
                    "pass --reuse-port to share the port on purpose)")
        super().__init__(f"cannot listen on {address}: {reason}{hint}")


def _socket(address: Address, reuse_port: bool) -> socket.socket:
    """A socket bound to ``address`` (SO_REUSEADDR, as every server sets: a restart need
    not wait for TIME_WAIT); raises :class:`CannotListen` when it cannot be bound."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if address.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        raise CannotListen(address, exc) from exc
    sock.set_inheritable(True)
    return sock


def ensure_free(addresses: list[Address]) -> None:
    """Raise :class:`CannotListen` unless every address can be bound without sharing.

    Binding without ``SO_REUSEPORT`` fails while any socket listens on the address,
    including the ``SO_REUSEPORT`` ones of a running granian, which a second granian's
    workers would otherwise silently join. (Two servers started in the same instant can
    both pass this; the check is against a server already running.)
    """
    for address in addresses:
        _socket(address, reuse_port=False).close()


def _supervisor(config: Any, sockets: list[socket.socket]) -> Any:
    """uvicorn's multi-worker supervisor, closing its own copy of the listening sockets
    when it stops.

    Each worker closes its copy as soon as it is told to stop, but the supervisor kept
    its own open until every worker had drained (up to ``--timeout``): the kernel went on
    accepting connections that no worker would ever answer, and reset them when the
    supervisor exited. A proxy waited for those (nginx only retried them on another
    server after the reset) and a client without a proxy saw them hang, then fail. With
    the supervisor's copy closed once the workers are signalled, the listener is gone
    when the last worker closes its copy: new connections are refused at once
    (tests/test_lifecycle_e2e.py::test_a_stopping_server_refuses_new_connections_while_it_drains).
    """
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def terminate_all(self) -> None:
            # Called once, when the supervisor stops (SIGTERM, SIGINT); workers it starts
            # again later (a dead worker's replacement) are never started after this.
            super().terminate_all()
            for sock in self.sockets:
                sock.close()

    return Supervisor(config, sockets=sockets)


def run_uvicorn(addresses: list[Address], workers: int, timeout: int, log_level: str,
                reload: bool, reuse_port: bool = False, header_timeout: float = 30.0,
                max_connections: int = 65536, file_read_threads: int = 512) -> None:
    import uvicorn
    from uvicorn.supervisors import ChangeReload

    from pulp_content_asgi.server.uvicorn_http import ContentHttpToolsProtocol

    config = uvicorn.Config(
        APP, loop="uvloop", http=ContentHttpToolsProtocol, ws="none", lifespan="on",
        workers=workers,
        access_log=False, log_level=log_level, timeout_graceful_shutdown=timeout,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES, reload=reload,
        host=addresses[0].host, port=addresses[0].port, server_header=False,
    )
    sockets = [_socket(a, reuse_port) for a in addresses]
    server = uvicorn.Server(config)
    if reload:
        ChangeReload(config, target=server.run, sockets=sockets).run()
    elif workers > 1:
        _supervisor(config, sockets).run()
    else:
        server.run(sockets=sockets)


def run_granian(addresses: list[Address], workers: int, timeout: int, log_level: str,
                reload: bool, reuse_port: bool = False, header_timeout: float = 30.0,
                max_connections: int = 65536, file_read_threads: int = 512) -> None:
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    if len(addresses) != 1:
        raise SystemExit("granian listens on one address; pass one --bind or use "
                         "--server uvicorn")
    if not reuse_port:
        ensure_free(addresses)
    address = addresses[0]
    Server(
        APP, address=address.host, port=address.port, interface=Interfaces.ASGI,
        workers=workers, loop=Loops.uvloop, log_access=False, log_level=LogLevels(log_level),
        reload=reload, workers_kill_timeout=timeout,
        # HTTP/1.1 only, as pulpcore-content and every proxy in front of it: granian's
        # default also takes HTTP/2 with prior knowledge, whose connections the header
        # timeout does not cover (one that sent only the preface stayed open).
        http=HTTPModes.http1,
        # Milliseconds from a request's first byte to the end of its headers.
        http1_settings=HTTP1Settings(header_read_timeout=max(1, round(header_timeout * 1000)),
                                     max_buffer_size=GRANIAN_BUFFER_BYTES),
        # Connections per worker (granian's default, backlog // workers, is 1024 / workers).
        backpressure=max(1, max_connections),
        # The threads that may read the files granian sends itself (pathsend reads
        # through tokio::fs, one blocking-pool task per 128 KiB piece; the pool grows
        # with concurrent reads up to this). CONTENT_ASGI_FILE_READ_THREADS, whose default
        # is granian's own 512: 1 switched context 38 % less at equal GB/s, but throughput
        # did not measurably differ and one slow read then stalls every pathsend download
        # of the worker (bench/results/file-threads-ab/).
        runtime_blocking_threads=file_read_threads,
    ).serve()


def run(server: str, addresses: list[Address], *, workers: int, timeout: int,
        log_level: str, reload: bool, reuse_port: bool = False,
        header_timeout: float = 30.0, max_connections: int = 65536,
        file_read_threads: int = 512) -> None:
    """Serve until stopped; :class:`CannotListen` (exit status 1) when an address is in
    use and ``reuse_port`` is off. ``header_timeout``: seconds a connection gets to send
    its request headers; ``max_connections``: connections a worker serves at once;
    ``file_read_threads``: threads per worker reading the files the server sends itself
    (all three granian only)."""
    runner = {"granian": run_granian, "uvicorn": run_uvicorn}[server]
    runner(addresses, workers, timeout, log_level, reload, reuse_port, header_timeout,
           max_connections, file_read_threads)
