"""An operator starts a second pulp-content-asgi on a port a running one holds: it stops
at start-up with exit status 1 and says why, whichever server holds the port and
whichever is started second; the running one keeps the port alone. Sharing the port
(SO_REUSEPORT) happens only when asked for."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import BIN, DEADLINE, ROOT, TEST_ROOT, content_app, stop_server, wait_for

# Issue #17's faults: also run by `make adversarial` (tests/adversarial.py).
pytestmark = pytest.mark.adversarial

SERVERS = ("granian", "uvicorn")


def port_of(server: object) -> int:
    port = urlsplit(server.base).port  # type: ignore[attr-defined]
    assert port is not None
    return port


def argv(server: str, port: int, *extra: str) -> list[str]:
    return [os.path.join(BIN, "pulp-content-asgi"), "--bind", f"127.0.0.1:{port}",
            "--server", server, "--log-level", "warning", *extra]


def run_second(server: str, port: int) -> subprocess.CompletedProcess[str]:
    """Start ``server`` on ``port`` and wait for it to exit; a server that does not exit
    (it shares the port) is killed and fails the test."""
    process = subprocess.Popen(argv(server, port), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"a second {server} on port {port} kept running: it shares the port")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module", params=SERVERS)
def first(request: pytest.FixtureRequest) -> Iterator[object]:
    """The server that holds the port."""
    running = content_app(request.param)
    yield running
    stop_server(running)


@pytest.mark.parametrize("second", SERVERS)
def test_a_second_server_on_a_port_in_use_exits_1_and_says_why(first, second):
    port = port_of(first)
    finished = run_second(second, port)
    assert finished.returncode == 1, finished.stderr
    lines = finished.stderr.strip().splitlines()
    assert lines[-1].startswith(f"cannot listen on 127.0.0.1:{port}: address already in use")
    assert "Traceback" not in finished.stderr
    # The first server keeps the port, and answers.
    assert first.process.poll() is None  # type: ignore[attr-defined]
    assert httpx.head(first.url("/pulp/content/")).status_code == 200  # type: ignore[attr-defined]


def test_reuse_port_shares_the_port_on_purpose():
    """``--reuse-port`` (or CONTENT_ASGI_REUSE_PORT) lets a second server join: both
    answer on the port (each new connection goes to one of them)."""
    from pulp_content_asgi.devtools import processes

    first = content_app("granian", extra=["--reuse-port"])
    port = port_of(first)
    second = processes.start(argv("uvicorn", port), TEST_ROOT, cwd=ROOT, port=port,
                             env={"PULP_CONTENT_ASGI_REUSE_PORT": "true",
                                  "PULP_CONTENT_ASGI_HEALTH_PATH": "/pulp/second-health/"})
    try:
        # Only the second serves this health path: it is reached through the shared port.
        assert wait_for(lambda: httpx.get(second.url("/pulp/second-health/"),
                                          headers={"Connection": "close"}).status_code == 200)
        assert first.process.poll() is None and second.process.poll() is None
    finally:
        stop_server(second)
        stop_server(first)
