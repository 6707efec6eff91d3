"""The allowances of ``conformance/allowances.py`` against a raw loopback server: the
curl-wording one with the real curl and a body cut short (it accepts exactly the one
needle, only for curl's length-declared wording of a cut, exit 18), and the reason-phrase
one with aiohttp as pulpcore's ``get_from_url`` uses it (exactly the two assertions'
needles, at their status, in our body's reason, for those two tests on our app only).
Each use is logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import threading
import types
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
                if stop.is_set():
                    return
                conn.recv(65536)
                conn.sendall(answer[0])

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def url(data: bytes) -> str:
        answer[0] = data
        return f"http://127.0.0.1:{listener.getsockname()[1]}/f"

    yield url
    stop.set()
    # accept() does not return when another thread closes the socket: wake it.
    socket.create_connection(listener.getsockname(), timeout=10).close()
    thread.join(timeout=10)
    listener.close()


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


# --- the reason-phrase allowance (ASGI sends the standard phrase; the text is in our body)

NOT_POINTING = allowances.ALLOWANCES[(f"{allowances.PULPCORE_TESTS}.test_content_path",
                                      "test_content_directory_listing")]
GUARDS = allowances.ALLOWANCES[(f"{allowances.PULPCORE_TESTS}.test_contentguard",
                                "test_composite_contentguard_permissions")]
POINTING_TEXT = ("Distribution is not pointing to a publication, repository, repository "
                 "version, or remote.")
RCG = "/pulp/api/v3/contentguards/core/content_redirect/0193a1b2-0000-7000-8000-0000000000aa/"
HCG = "/pulp/api/v3/contentguards/core/header/0193a1b2-0000-7000-8000-0000000000bb/"


def _answer(status: str, body: str) -> bytes:
    data = body.encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data


def _reason(url: str, allowance: allowances.Allowance) -> str:
    """``get_from_url``'s response reason as the allowance hands it to the test."""
    response = asyncio.run(allowances._get("t::test", allowance, url))
    return response.reason or ""


def _logged(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_the_reason_phrase_assertion_reads_our_body(serve: Serve, log: Path) -> None:
    reason = _reason(serve(_answer("404 Not Found", f"404: {POINTING_TEXT}")), NOT_POINTING)
    assert reason == "Not Found"  # what is on the wire, for a failing assertion's message
    assert "Distribution is not pointing to" in reason
    assert [(u["needle"], u["status"], u["body_reason"]) for u in _logged(log)] == [
        ("Distribution is not pointing to", 404, POINTING_TEXT)]


@pytest.mark.parametrize("needle", [
    "Distribution is not pointing",  # another message: a shorter one
    "Distribution is not pointing to a publication",  # a longer one
    "a publication, repository",  # another part of the body
    "Not Found, Distribution is not pointing to",
])
def test_another_message_is_not_allowed(serve: Serve, log: Path, needle: str) -> None:
    reason = _reason(serve(_answer("404 Not Found", f"404: {POINTING_TEXT}")), NOT_POINTING)
    assert needle not in reason
    assert _logged(log) == []


def test_the_needle_must_be_in_our_body(serve: Serve, log: Path) -> None:
    reason = _reason(serve(_answer("404 Not Found", "404: Not Found")), NOT_POINTING)
    assert "Distribution is not pointing to" not in reason
    assert _logged(log) == []


@pytest.mark.parametrize(("status", "allowance"), [
    ("403 Forbidden", NOT_POINTING),  # the listing test's needle on a 403
    ("500 Internal Server Error", NOT_POINTING),
    ("404 Not Found", GUARDS),  # the guard test's needles on a 404
])
def test_another_status_is_not_allowed(serve: Serve, log: Path, status: str,
                                       allowance: allowances.Allowance) -> None:
    code = status.split()[0]
    body = f"{code}: {POINTING_TEXT} {RCG} {HCG}"
    reason = _reason(serve(_answer(status, body)), allowance)
    assert not isinstance(reason, allowances.ReasonPhrase)
    assert "Distribution is not pointing to" not in reason and RCG not in reason
    assert _logged(log) == []


def test_a_custom_phrase_on_the_wire_needs_no_allowance(serve: Serve, log: Path) -> None:
    """pulpcore-content's answer: the text is the reason phrase itself."""
    reason = _reason(serve(_answer(f"404 {POINTING_TEXT}", "404: Not Found")), NOT_POINTING)
    assert not isinstance(reason, allowances.ReasonPhrase)
    assert "Distribution is not pointing to" in reason
    assert _logged(log) == []


def test_the_guard_assertion_accepts_each_guard_href_in_our_body(serve: Serve,
                                                                 log: Path) -> None:
    body = f"403: Access denied: {RCG} forbids it; {HCG}: header missing"
    reason = _reason(serve(_answer("403 Forbidden", body)), GUARDS)
    assert RCG in reason and HCG in reason
    assert [u["needle"] for u in _logged(log)] == [RCG, HCG]


@pytest.mark.parametrize("needle", [
    "/pulp/api/v3/distributions/file/file/0193a1b2-0000-7000-8000-0000000000cc/",
    RCG[:-1],  # not the whole href
    "contentguards/core/header/",
    "Access denied",
])
def test_the_guard_assertion_accepts_nothing_else(serve: Serve, log: Path,
                                                  needle: str) -> None:
    body = (f"403: Access denied: {RCG} "
            "/pulp/api/v3/distributions/file/file/0193a1b2-0000-7000-8000-0000000000cc/")
    reason = _reason(serve(_answer("403 Forbidden", body)), GUARDS)
    assert needle not in reason
    assert _logged(log) == []


def _run_hook(module: types.ModuleType, name: str) -> tuple[object, object]:
    """``get_from_url`` of ``module`` while the hook wraps test ``name``, and after."""
    item = types.SimpleNamespace(module=module, originalname=name, name=name,
                                 nodeid=f"{module.__name__}::{name}")
    hook = allowances.pytest_runtest_call(item)  # type: ignore[arg-type]
    next(hook)
    during = module.get_from_url
    with contextlib.suppress(StopIteration):
        hook.send(None)
    return during, module.get_from_url


def _module(name: str) -> types.ModuleType:
    module = types.ModuleType(f"{allowances.PULPCORE_TESTS}.{name}")
    module.get_from_url = print  # type: ignore[attr-defined]
    return module


@pytest.mark.usefixtures("log")
def test_only_the_allowed_tests_get_the_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFORMANCE_SIDE", "asgi")
    during, after = _run_hook(_module("test_content_path"), "test_content_directory_listing")
    assert during is not print and after is print
    for module, name in [("test_content_path", "test_content_path_without_listing"),
                         ("test_contentguard", "test_content_directory_listing"),
                         ("test_checkpoint", "test_composite_contentguard_permissions")]:
        assert _run_hook(_module(module), name) == (print, print)


@pytest.mark.usefixtures("log")
def test_pulpcore_contents_run_gets_no_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFORMANCE_SIDE", "legacy")
    module = _module("test_content_path")
    assert _run_hook(module, "test_content_directory_listing") == (print, print)


# --- the curl allowance applies behind Pulp's stock layout only

CURL_TEST = ("test_content_delivery", "test_remote_content_changed_with_on_demand")


def _run_curl_hook(proxy: str, side: str, monkeypatch: pytest.MonkeyPatch,
                   test: tuple[str, str] = CURL_TEST) -> tuple[object, object]:
    """The ``subprocess`` the test module sees while the hook wraps ``test``, and after."""
    monkeypatch.setenv("CONFORMANCE_SIDE", side)
    monkeypatch.setenv("CONFORMANCE_PROXY", proxy)
    module = types.ModuleType(f"{allowances.PULPCORE_TESTS}.{test[0]}")
    module.subprocess = subprocess  # type: ignore[attr-defined]
    item = types.SimpleNamespace(module=module, originalname=test[1], name=test[1],
                                 nodeid=f"{module.__name__}::{test[1]}")
    hook = allowances.pytest_runtest_call(item)  # type: ignore[arg-type]
    next(hook)
    during = module.subprocess  # type: ignore[attr-defined]
    with contextlib.suppress(StopIteration):
        hook.send(None)
    return during, module.subprocess  # type: ignore[attr-defined]


@pytest.mark.usefixtures("log")
def test_the_curl_allowance_applies_behind_the_stock_layout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    during, after = _run_curl_hook("stock", "asgi", monkeypatch)
    assert during is not subprocess and after is subprocess
    assert during.run.__wrapped__ is subprocess.run  # type: ignore[attr-defined]


@pytest.mark.usefixtures("log")
@pytest.mark.parametrize(("proxy", "side", "test"), [
    ("snippet", "asgi", CURL_TEST),  # our shipped layout: chunked, curl's own wording
    ("", "asgi", CURL_TEST),
    ("stock", "legacy", CURL_TEST),  # pulpcore-content's run
    ("stock", "asgi", ("test_content_delivery", "test_remote_artifact_url_update")),
])
def test_the_curl_allowance_applies_nowhere_else(monkeypatch: pytest.MonkeyPatch, proxy: str,
                                                 side: str, test: tuple[str, str]) -> None:
    assert _run_curl_hook(proxy, side, monkeypatch, test) == (subprocess, subprocess)
