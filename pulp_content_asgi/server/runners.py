"""Start granian or uvicorn over ``pulp_content_asgi.asgi:application``.

Both are configured for this workload: large request headers accepted (post-quantum
client certificates in ``X-CLIENT-CERT`` exceed 8 KiB), bounded backpressure, graceful
shutdown bounded by ``--timeout``, and the server's own access log off (the app writes
one in a server-independent format).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

APP = "pulp_content_asgi.asgi:application"
SERVERS = ("granian", "uvicorn")
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


def parse_bind(value: str) -> Address:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT``/``PORT`` (all interfaces)."""
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"bind address {value!r} has no port")
    host = host.strip("[]") or "0.0.0.0"
    return Address(host, int(port))


def _socket(address: Address) -> socket.socket:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if address.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((address.host, address.port))
    sock.set_inheritable(True)
    return sock


def run_uvicorn(addresses: list[Address], workers: int, timeout: int, log_level: str,
                reload: bool) -> None:
    import uvicorn
    from uvicorn.supervisors import ChangeReload, Multiprocess

    config = uvicorn.Config(
        APP, loop="uvloop", http="httptools", lifespan="on", workers=workers,
        access_log=False, log_level=log_level, timeout_graceful_shutdown=timeout,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES, reload=reload,
        host=addresses[0].host, port=addresses[0].port, server_header=False,
    )
    sockets = [_socket(a) for a in addresses]
    server = uvicorn.Server(config)
    if reload:
        ChangeReload(config, target=server.run, sockets=sockets).run()
    elif workers > 1:
        Multiprocess(config, sockets=sockets).run()
    else:
        server.run(sockets=sockets)


def run_granian(addresses: list[Address], workers: int, timeout: int, log_level: str,
                reload: bool) -> None:
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    if len(addresses) != 1:
        raise SystemExit("granian listens on one address; pass one --bind or use "
                         "--server uvicorn")
    address = addresses[0]
    Server(
        APP, address=address.host, port=address.port, interface=Interfaces.ASGI,
        workers=workers, loop=Loops.uvloop, log_access=False, log_level=LogLevels(log_level),
        reload=reload, workers_kill_timeout=timeout,
    ).serve()


def run(server: str, addresses: list[Address], *, workers: int, timeout: int,
        log_level: str, reload: bool) -> None:
    runner = {"granian": run_granian, "uvicorn": run_uvicorn}[server]
    runner(addresses, workers, timeout, log_level, reload)
