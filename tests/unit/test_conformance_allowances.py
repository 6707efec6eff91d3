"""The curl-wording allowance of ``conformance/allowances.py``, with the real curl against
a raw loopback server that cuts its body: it accepts exactly the one needle, only for
curl's length-declared wording of a cut (exit 18), and logs each use."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conformance import allowances

pytestmark = pytest.mark.fast

LENGTH_CUT = b"HTTP/1.1 200 OK\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n" + b"x" * 1024
CHUNKED_CUT = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"400\r\n" + b"x" * 1024 + b"\r\n")
Serve = Callable[[bytes], str]
WHOLE = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nxxxx"


@pytest.fixture
def serve() -> Iterator[Callable[[bytes], str]]:
    """``serve(answer)`` -> a URL whose every request gets ``answer`` and a hang-up."""
    listener = socket.create_server(("127.0.0.1", 0))
    answer: list[bytes] = [b""]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(answer[0])

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def url(data: bytes) -> str:
        answer[0] = data
        return f"http://127.0.0.1:{listener.getsockname()[1]}/f"

    yield url
    stop.set()
    listener.close()
    thread.join(timeout=10)


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "allowances.jsonl"
    monkeypatch.setenv("CONFORMANCE_ALLOWANCES_LOG", str(path))
    return path


def _curl(url: str, out: Path) -> subprocess.CompletedProcess[bytes]:
    run = allowances._curl_run("t::test", subprocess.run)
    result: subprocess.CompletedProcess[bytes] = run(
        ["curl", "-v", url, "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return result


def test_a_length_declared_cut_satisfies_the_chunked_wording(serve: Serve, log: Path,
                                                             tmp_path: Path) -> None:
    result = _curl(serve(LENGTH_CUT), tmp_path / "out")
    assert result.returncode == 18
    assert b"transfer closed with 1024 bytes remaining to read" in result.stderr
    assert allowances.CURL_CHUNKED_CUT in result.stderr
    used = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(u["needle"], u["found"]) for u in used] == [(
        allowances.CURL_CHUNKED_CUT.decode(),
        "curl: (18) transfer closed with 1024 bytes remaining to read")]


def test_only_that_needle_is_accepted(serve: Serve, log: Path, tmp_path: Path) -> None:
    result = _curl(serve(LENGTH_CUT), tmp_path / "out")
    assert b"curl: (18) transfer closed with outstanding read data" + b"!" not in result.stderr
    assert b"curl: (56) Failure when receiving data from the peer" not in result.stderr
    assert not log.exists()


def test_a_chunked_cut_needs_no_allowance(serve: Serve, log: Path, tmp_path: Path) -> None:
    result = _curl(serve(CHUNKED_CUT), tmp_path / "out")
    assert result.returncode == 18
    assert allowances.CURL_CHUNKED_CUT in result.stderr
    assert not isinstance(result.stderr, allowances.CurlStderr)
    assert not log.exists()


def test_a_whole_body_is_never_a_cut(serve: Serve, log: Path, tmp_path: Path) -> None:
    result = _curl(serve(WHOLE), tmp_path / "out")
    assert result.returncode == 0
    assert allowances.CURL_CHUNKED_CUT not in result.stderr
    assert not log.exists()


def test_a_refused_connection_is_never_a_cut(log: Path, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    result = _curl(f"http://127.0.0.1:{port}/f", tmp_path / "out")
    assert result.returncode == 7
    assert allowances.CURL_CHUNKED_CUT not in result.stderr
    assert not log.exists()
