"""What keeps the parity comparison independent (conformance/parity.py): each app of the
pair on its own Redis database, emptied first; the corpus asked in both orders; a probe
that must match another of our answers checked against it; a HEAD answer read as one;
the headers compared; and the exit status following the unexplained count. No Pulp
stack: the pure pieces, a fake Redis client and a loopback socket."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conformance import parity
from conformance import stack as stacks
from conformance.parity import Answer, Difference, Probe

pytestmark = pytest.mark.fast

STACK = stacks.layout(False)


# --- each app on its own Redis database, emptied first

def test_each_app_of_the_pair_has_its_own_redis_database() -> None:
    plan = parity.pair_plan(STACK)
    dbs = {side: env["PULP_REDIS_DB"] for side, (_, _, _, env) in plan.items()}
    assert set(dbs) == {"asgi", "legacy"}
    assert dbs["asgi"] != dbs["legacy"]
    assert "0" not in dbs.values()  # the stack's own apps use database 0
    assert [int(dbs[side]) for side in ("asgi", "legacy")] == list(parity.REDIS_DBS)
    assert all(db == int(env["PULP_REDIS_DB"]) for _, db, _, env in plan.values())


def test_the_pair_runs_the_two_apps_on_their_own_ports() -> None:
    plan = parity.pair_plan(STACK)
    assert plan["asgi"][2][0].endswith("pulp-content-asgi")
    assert plan["legacy"][2][0].endswith("pulpcore-content")
    ports = [port for port, _, _, _ in plan.values()]
    assert len(set(ports)) == 2 and not {STACK.nginx, STACK.asgi, STACK.legacy} & set(ports)
    for port, _, argv, _ in plan.values():
        assert argv[argv.index("--bind") + 1] == f"127.0.0.1:{port}"


def test_the_pairs_redis_databases_are_emptied() -> None:
    calls: list[tuple[str, int, int]] = []

    class Client:
        def __init__(self, host: str, port: int, db: int) -> None:
            self.where = (port, db)

        def flushdb(self) -> None:
            calls.append(("flushdb", *self.where))

    parity.empty_caches(STACK, [1, 2], connect=Client)
    assert calls == [("flushdb", STACK.redis, 1), ("flushdb", STACK.redis, 2)]


class Emptied(Exception):
    pass


def test_the_pair_is_started_only_after_its_databases_are_emptied(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``start_pair`` empties the databases ``pair_plan`` gives the apps before it spawns
    either (the stand-in stops it there)."""
    def empty(stack: stacks.Layout, dbs: list[int]) -> None:
        raise Emptied(dbs)

    monkeypatch.setattr(parity, "empty_caches", empty)
    monkeypatch.setattr(parity.subprocess, "Popen", None)  # spawning would fail loudly
    with pytest.raises(Emptied) as emptied:
        parity.start_pair(STACK)
    assert emptied.value.args == ([db for _, db, _, _ in parity.pair_plan(STACK).values()],)


# --- both orders, and ``same_as``

PAIR: dict[str, Any] = {"asgi": (1001, None), "legacy": (1002, None)}


def _recording(answers: Callable[[int, Probe], Answer]
               ) -> tuple[list[tuple[int, str]], Callable[[int, str, Probe], Answer]]:
    asked: list[tuple[int, str]] = []

    def send(port: int, host: str, probe: Probe) -> Answer:
        asked.append((port, probe.path))
        return answers(port, probe)

    return asked, send


def test_the_second_pass_asks_pulpcore_content_first() -> None:
    asked, send = _recording(lambda port, probe: Answer(200, {}, b"x"))
    rows = parity.probe_all([Probe("a", "/a"), Probe("b", "/b")], PAIR, "h", send)
    assert asked == [(1001, "/a"), (1002, "/a"), (1001, "/b"), (1002, "/b"),
                     (1002, "/a"), (1001, "/a"), (1002, "/b"), (1001, "/b")]
    assert [(name, probe.path) for name, probe, *_ in rows] == [
        ("ours first", "/a"), ("ours first", "/b"), ("theirs first", "/a"),
        ("theirs first", "/b")]


def test_a_probe_that_must_match_another_of_ours_is_checked_against_it() -> None:
    def answers(port: int, probe: Probe) -> Answer:
        return Answer(404 if probe.path == "/a" else 200, {}, b"x")

    asked, send = _recording(answers)
    probe = Probe("double slash", "//a", same_as="/a")
    rows = parity.probe_all([probe], PAIR, "h", send)
    assert (1001, "/a") in asked
    for *_, diffs, found in rows:  # both apps agree; our answer at /a does not
        assert diffs == [Difference("ours vs ours at /a", "200", "404")]
        assert found == ["UNEXPLAINED"]


def test_a_probe_that_matches_its_reference_is_identical() -> None:
    _, send = _recording(lambda port, probe: Answer(200, {}, b"x"))
    rows = parity.probe_all([Probe("double slash", "//a", same_as="/a")], PAIR, "h", send)
    assert [row[4] for row in rows] == [[], []]


# --- ``ask`` reads a HEAD answer as one, and keeps a cut body

@pytest.fixture
def answer_once() -> Iterator[Callable[[bytes], tuple[int, list[bytes]]]]:
    """``answer_once(data)`` -> (port, requests): the next connection gets ``data``, then
    a hang-up; the request's bytes are appended to ``requests``."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def start(data: bytes) -> tuple[int, list[bytes]]:
        requests: list[bytes] = []

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                received = b""
                while b"\r\n\r\n" not in received:
                    received += conn.recv(65536)
                requests.append(received)
                conn.sendall(data)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return listener.getsockname()[1], requests

    yield start
    for thread in threads:
        thread.join(timeout=10)
    listener.close()


HEAD_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 600\r\n"
               b"Connection: close\r\n\r\n")


def test_a_head_answer_has_no_body_to_wait_for(answer_once: Callable[..., Any]) -> None:
    port, requests = answer_once(HEAD_ANSWER)
    got = parity.ask(port, "example:1", Probe("head", "/a/../b%00", "HEAD"))
    assert requests[0].startswith(b"HEAD /a/../b%00 HTTP/1.1\r\nHost: example:1\r\n")
    assert (got.status, got.body) == (200, b"")
    assert got.headers == {"content-type": "text/plain", "content-length": "600",
                           "connection": "close"}  # no ``transport``: nothing was cut


def test_a_get_body_cut_short_is_kept_and_said(answer_once: Callable[..., Any]) -> None:
    port, _ = answer_once(HEAD_ANSWER + b"x" * 100)
    got = parity.ask(port, "h", Probe("get", "/a"))
    assert got.body == b"x" * 100
    assert got.headers["transport"] == "cut short after 100 body bytes, 500 more expected"


# --- the headers compared

#: Issue #12's list: what a client or a proxy acts on.
ISSUE_HEADERS = ("Content-Type", "Content-Length", "Content-Range", "ETag", "Last-Modified",
                 "Cache-Control", "Content-Encoding", "Vary", "Allow", "Retry-After",
                 "Location", "X-PULP-ARTIFACT-SIZE", "X-PULP-CACHE")


@pytest.mark.parametrize("name", ISSUE_HEADERS)
def test_the_header_is_compared(name: str) -> None:
    assert name.lower() in parity.COMPARED
    ours, theirs = Answer(200, {name.lower(): "1"}, b""), Answer(200, {}, b"")
    assert parity.differences(ours, theirs) == [Difference(name.lower(), "1", "<absent>")]


# --- the exit status follows the unexplained count

def _main(rows: list[parity.Row], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr(parity, "collect", lambda domains: rows)
    report = tmp_path / "parity.md"
    monkeypatch.setattr(sys, "argv", ["conformance.parity", "--report", str(report)])
    with pytest.raises(SystemExit) as exited:
        parity.main()
    assert report.exists()
    return exited.value.code


def _row(verdict: str) -> parity.Row:
    ours, theirs = Answer(200, {}, b""), Answer(404, {}, b"")
    return ("ours first", Probe("p", "/p"), ours, theirs,
            [Difference("status", "200", "404")], [verdict])


def test_parity_exits_1_with_an_unexplained_difference(tmp_path: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [_row("deliberate: a rule"), _row("UNEXPLAINED")]
    assert _main(rows, tmp_path, monkeypatch) == 1


def test_parity_exits_0_when_every_difference_is_explained(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _main([_row("deliberate: a rule")], tmp_path, monkeypatch) == 0
