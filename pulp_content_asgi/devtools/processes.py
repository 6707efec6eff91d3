"""Start and stop servers on loopback ports for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process (in its own process group) answering on a loopback port."""

    process: subprocess.Popen[bytes]
    base: str
    log_path: str

    def url(self, path: str) -> str:
        return self.base + path

    def log(self) -> str:
        with open(self.log_path, errors="replace") as log:
            return log.read()

    @property
    def pid(self) -> int:
        return self.process.pid


def _answers(url: str) -> bool:
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as error:
        return error.code < 500 or error.code == 501  # up, but no HEAD (an emulator)
    except OSError:
        return False


def wait_ready(server: Server, probe: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited ({server.process.returncode}):\n{server.log()}")
        if _answers(server.url(probe)):
            return
        time.sleep(0.2)
    raise RuntimeError(f"server did not answer in {timeout}s:\n{server.log()}")


def start(argv: list[str], log_dir: str, env: dict[str, str] | None = None,
          probe: str = "/pulp/content/", port: int | None = None, cwd: str | None = None,
          timeout: float = 30) -> Server:
    """Run ``argv`` (``{port}`` is replaced) and wait until ``probe`` answers."""
    port = port or free_port()
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, f"server-{uuid.uuid4().hex[:8]}.log")
    command = [a.replace("{port}", str(port)) for a in argv]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, cwd=cwd,
                                   start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_ready(server, probe, timeout)
    except Exception:
        stop(server)
        raise
    return server


def stop(server: Server, timeout: float = 20) -> int:
    """SIGTERM the process group, SIGKILL after ``timeout``; returns the exit status."""
    if server.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()
    return server.process.returncode


def _proc_kib(path: str, field: str) -> int:
    """The ``field:`` line (in kB) of a ``/proc`` file, in bytes (0 if it is gone)."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 if it is gone)."""
    return _proc_kib(f"/proc/{pid}/status", "VmRSS")


def pss(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes: pages shared with a forked parent
    counted once between them (0 if it is gone)."""
    return _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss")


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (server workers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    queue += [int(c) for c in children.read().split()]
    return found
