"""What a slow reader costs a worker (issue #18): about one chunk, not a queue of them.

Connections request a 16 MiB published file over a socket with a small receive buffer
and then read nothing more, as a client on a slow link does. The worker's resident memory
(``/proc``) is read once a first batch of them is connected and again once a second,
larger batch has joined: the growth over the second batch, per connection, is what one
more slow reader costs (the first batch pays what any load costs once: executor threads
and their allocator arenas). Before issue #18 a slow reader held two chunks in the worker
under uvicorn (the one the transport held and the one read ahead: 510-580 KiB) and
granian queued up to 408 KiB of its 128 KiB ``pathsend`` pieces (620-670 KiB). Now the
app reads no chunk ahead (serving/send.py) and uvicorn's transport buffers nothing past
the kernel's: about one chunk, 250-290 KiB; granian's buffer holds two pieces: 380-420
KiB (server/runners.py; bench/slowmem.py and docs/operations.md have the figures).
No timings are asserted.
"""

from __future__ import annotations

import contextlib
import os
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import rss
from tests import resources
from tests.helpers import DEADLINE, content_app, raw_get, stop_server, unique_name, wait_for

FIRST, SECOND = 100, 300  # connections in the first and the second batch
#: Bytes one more slow reader may cost: under uvicorn 1.5 chunks (CONTENT_ASGI_CHUNK_SIZE,
#: 256 KiB) and 64 KiB; under granian four of its ``pathsend`` pieces (128 KiB).
PER_READER = {"uvicorn": 256 * 1024 * 3 // 2 + 64 * 1024, "granian": 4 * 128 * 1024}
HEALTH = "/pulp/content-asgi/health/"


@pytest.fixture(scope="module")
def big_file() -> str:
    u = unique_name()
    repo = data.repository(f"slowmem-{u}", {"big.bin": os.urandom(16 << 20)})
    dist = data.distribute(f"slowmem-{u}", publication=data.publish(repo.latest_version()))
    return f"/pulp/content/{dist.base_path}/big.bin"


def _connect(base: str, target: str, count: int) -> list[socket.socket]:
    """``count`` connections that sent a GET of ``target`` and read its status line."""
    where = urlsplit(base)
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(DEADLINE)
        sock.connect((where.hostname, where.port))
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        held.append(sock)
    for sock in held:
        assert sock.recv(12).startswith(b"HTTP/1.1 200"), "no 200 for a slow reader"
    return held


def _settled(pid: int) -> int:
    """The worker's RSS once it stopped growing (by under 512 KiB over two seconds)."""
    samples = [rss(pid)]

    def steady() -> bool:
        samples.append(rss(pid))
        return len(samples) > 4 and samples[-1] - samples[-5] < 512 * 1024

    assert wait_for(steady, DEADLINE, interval=0.5), "the worker's RSS kept growing"
    return samples[-1]


@pytest.mark.parametrize("runner", ["granian", "uvicorn"])
def test_a_slow_reader_costs_the_worker_about_one_chunk(big_file, runner):
    assert resources.raise_fd_limit() >= 4 * (FIRST + SECOND)
    server = content_app(runner)
    held: list[socket.socket] = []
    try:
        pid = httpx.get(server.url(HEALTH), timeout=DEADLINE).json()["worker"]["pid"]
        assert len(httpx.get(server.url(big_file), timeout=DEADLINE).content) == 16 << 20
        held += _connect(server.base, big_file, FIRST)
        before = _settled(pid)
        held += _connect(server.base, big_file, SECOND)
        after = _settled(pid)
        per_reader = (after - before) / SECOND
        print(runner, f"{per_reader / 1024:.0f} KiB per slow reader")
        assert per_reader < PER_READER[runner], f"{per_reader / 1024:.0f} KiB per slow reader"
    finally:
        for sock in held:
            sock.close()
        stop_server(server)


def test_granian_still_reads_request_heads_of_64_kib():
    """Granian's per-connection buffer (server/runners.py GRANIAN_BUFFER_BYTES, cut for
    slow readers) also bounds the request head it reads: the 64 KiB the servers promise
    for large ``X-CLIENT-CERT`` headers (nginx's shipped snippet allows 64 KiB lines)
    still fit."""
    server = content_app("granian")
    try:
        status, _, _ = raw_get(server, "/pulp/content/", {"X-Client-Cert": "a" * (64 << 10)})
        assert status == 200
    finally:
        stop_server(server)


def _tokio_threads(pid: int) -> int:
    """The worker's tokio threads: its runtime's one and the blocking pool's (tokio names
    both ``tokio-rt-worker``)."""
    count = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), \
                open(f"/proc/{pid}/task/{task}/comm") as name:
            count += name.read().strip() == "tokio-rt-worker"
    return count


@pytest.mark.parametrize("threads", [1, 3])
def test_granian_reads_the_files_it_sends_on_the_threads_set(big_file, threads):
    """``CONTENT_ASGI_FILE_READ_THREADS`` bounds the threads a granian worker reads
    ``pathsend`` files on (its tokio blocking pool): while 16 slow readers of the 16 MiB
    file are read until the kernel's and granian's buffers are full, the worker has its
    runtime's thread plus at most that many, and at least one (the files are read on
    that pool). The count is sampled throughout, since tokio ends a blocking thread
    idle for 10 s. With granian's default pool (512) in place of the setting, the same
    readers took 4-11 threads (both cases failed, as they must); a setting applied as
    1 everywhere still passes the case of 3 (the unit tests check what reaches granian:
    tests/unit/test_conf.py)."""
    server = content_app("granian", env={"PULP_CONTENT_ASGI_FILE_READ_THREADS": str(threads)})
    held: list[socket.socket] = []
    try:
        pid = httpx.get(server.url(HEALTH), timeout=DEADLINE).json()["worker"]["pid"]
        idle = _tokio_threads(pid)
        held += _connect(server.base, big_file, 16)
        seen: list[int] = []
        samples = [rss(pid)]

        def steady() -> bool:  # as _settled, with the reading threads counted each time
            seen.append(_tokio_threads(pid) - idle)
            samples.append(rss(pid))
            return len(samples) > 20 and samples[-1] - samples[-21] < 512 * 1024

        assert wait_for(steady, DEADLINE, interval=0.1), "the worker's RSS kept growing"
        assert 1 <= max(seen) <= threads, f"{max(seen)} file-reading threads, {threads} set"
    finally:
        for sock in held:
            sock.close()
        stop_server(server)


@pytest.mark.parametrize(("value", "said"), [
    ("0", "CONTENT_ASGI_FILE_READ_THREADS must be between 1 and 4096; it is 0"),
    ("abc", "CONTENT_ASGI_FILE_READ_THREADS must be a whole number; it is 'abc'"),
])
def test_a_bad_number_of_file_reading_threads_stops_the_start_naming_the_setting(value,
                                                                                 said):
    with pytest.raises(RuntimeError) as failed:
        content_app("granian", env={"PULP_CONTENT_ASGI_FILE_READ_THREADS": value})
    assert said in str(failed.value)
    assert "Traceback" not in str(failed.value)
