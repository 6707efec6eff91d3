"""Worker life cycle: the AppStatus heartbeat row, and the servers the app runs under."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from pulpcore.app.models import AppStatus

from pulp_content_asgi.devtools.processes import family
from tests.helpers import BIN, DEADLINE, content_app, start_server, stop_server


def _content_rows(exclude: set[str]) -> list[AppStatus]:
    return list(AppStatus.objects.filter(app_type="content").exclude(name__in=exclude))


def _wait(predicate, timeout=DEADLINE):
    """``predicate()``'s first true value within ``timeout`` seconds (else its last)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


@pytest.mark.parametrize(("server", "workers"), [("granian", 1), ("uvicorn", 2)])
def test_heartbeat_row_per_worker_appears_beats_and_goes(server, workers):
    before = set(AppStatus.objects.filter(app_type="content").values_list("name", flat=True))
    running = content_app(server, env={"PULP_CONTENT_APP_TTL": "4"}, workers=workers)
    try:
        rows = _wait(lambda: len(_content_rows(before)) >= workers and _content_rows(before))
        assert len(rows) == workers
        names = {row.name for row in rows}
        assert all("@" in name for name in names)
        # Polled: a worker starved of CPU for longer than TTL - beat on a busy machine
        # is offline for a moment, then beats again.
        assert _wait(lambda: set(AppStatus.objects.online().filter(name__in=names)
                                 .values_list("name", flat=True)) == names)
        first_beat = {row.name: row.last_heartbeat for row in rows}
        assert _wait(lambda: all(
            row.last_heartbeat > first_beat[row.name] for row in _content_rows(before)
        ))
    finally:
        stop_server(running)
    assert _wait(lambda: not AppStatus.objects.filter(name__in=names).exists())


def test_runs_under_daphne(unique):
    """The app is plain ASGI: daphne (no lifespan support) serves it too."""
    from pulp_content_asgi.devtools import data

    repo = data.repository(f"daphne-{unique}", {"d.txt": b"daphne" * 50000})
    data.distribute(f"daphne-{unique}", publication=data.publish(repo.latest_version()))
    daphne = os.path.join(BIN, "daphne")
    running = start_server([daphne, "-b", "127.0.0.1", "-p", "{port}",
                            "pulp_content_asgi.asgi:application"])
    try:
        response = httpx.get(running.url(f"/pulp/content/daphne-{unique}/d.txt"))
        assert response.status_code == 200
        assert response.content == b"daphne" * 50000
        ranged = httpx.get(running.url(f"/pulp/content/daphne-{unique}/d.txt"),
                           headers={"Range": "bytes=6-11"})
        assert ranged.status_code == 206 and ranged.content == b"daphne"
    finally:
        stop_server(running)


def test_cli_flags_and_defaults_match_pulpcore_content():
    """Every flag we share with pulpcore-content has its spellings and its effective
    default: pulpcore-content's own click option, or gunicorn's default where pulpcore
    leaves it unset. ``--timeout`` is shared by name only: gunicorn's (30) kills a silent
    sync worker, ours (90) is the graceful-shutdown time (docs/settings.md)."""
    import gunicorn.config
    from pulpcore.content.entrypoint import main as legacy

    from pulp_content_asgi.server.cli import default_bind, main

    ours = {p.name: p for p in main.params}
    theirs = {p.opts[0]: p for p in legacy.params}
    gunicorn_defaults = gunicorn.config.Config()
    shared = {"--bind": "binds", "--workers": "workers", "--timeout": "timeout",
              "--access-logfile": "access_logfile", "--log-level": "log_level",
              "--reload": "reload", "--name-template": "name_template"}
    for flag, name in shared.items():
        assert (ours[name].opts, ours[name].secondary_opts) == (
            theirs[flag].opts, theirs[flag].secondary_opts), flag
    # Without --bind we listen where pulpcore-content does.
    # The values each command gets when no flag is given.
    ours_default = main.make_context("pulp-content-asgi", []).params
    their_default = legacy.make_context("pulpcore-content", []).params
    assert ours_default["binds"] == () and list(their_default["bind"]) == [default_bind()]
    assert ours_default["workers"] == gunicorn_defaults.workers == 1  # theirs: None
    assert ours_default["log_level"] == gunicorn_defaults.loglevel == "info"
    assert set(theirs["--log-level"].type.choices) == set(ours["log_level"].type.choices)
    assert ours_default["access_logfile"] is None and their_default["accesslog"] is None
    assert ours_default["reload"] is False and their_default["reload"] is False
    assert ours_default["name_template"] is None and their_default["name_template"] is None


def test_access_log_lines(tmp_path, unique):
    from pulp_content_asgi.devtools import data

    repo = data.repository(f"log-{unique}", {"l.txt": b"logged"})
    data.distribute(f"log-{unique}", publication=data.publish(repo.latest_version()))
    log_file = tmp_path / "access.log"
    argv = [os.path.join(BIN, "pulp-content-asgi"), "--bind", "127.0.0.1:{port}",
            "--access-logfile", str(log_file)]
    running = start_server(argv)
    try:
        httpx.get(running.url(f"/pulp/content/log-{unique}/l.txt"),
                  headers={"User-Agent": "agent/1.0", "Referer": "http://ref/"})
    finally:
        stop_server(running)
    lines = [line for line in log_file.read_text().splitlines() if f"log-{unique}" in line]
    assert len(lines) == 1
    assert f'"GET /pulp/content/log-{unique}/l.txt HTTP/1.1" 200 6 "http://ref/" "agent/1.0"' \
        in lines[0]


def test_correlation_id_is_reused_and_echoed(server):
    echoed = httpx.get(server.url("/pulp/content/"), headers={"Correlation-ID": "abc-123"})
    assert echoed.headers["correlation-id"] == "abc-123"
    fresh = httpx.get(server.url("/pulp/content/"))
    assert len(fresh.headers["correlation-id"]) >= 32
    junk = httpx.get(server.url("/pulp/content/"), headers={"Correlation-ID": "a b"})
    assert junk.headers["correlation-id"] != "a b"


def test_health_reports_the_database(server):
    response = httpx.get(server.url("/pulp/content-asgi/health/"))
    assert response.status_code == 200
    answer = response.json()
    worker = answer.pop("worker")
    assert answer == {"healthy": True, "database": "ok", "redis": "disabled"}
    # The answering worker's figures (a leak shows from outside: docs/operations.md).
    assert worker["pid"] in family(server.pid)
    assert worker["asyncio_tasks"] >= 1 and worker["threads"] >= 1 and worker["open_fds"] > 3


@pytest.mark.parametrize("server_name", ["uvicorn", "granian"])
def test_graceful_shutdown_lets_downloads_finish(server_name, unique):
    import hashlib
    import os
    import signal
    import threading

    from pulp_content_asgi.devtools import data

    blob = os.urandom(4 * 1024 * 1024)
    repo = data.repository(f"stop-{unique}", {"f.bin": blob})
    distribution = data.distribute(f"stop-{unique}",
                                   publication=data.publish(repo.latest_version()))
    before = set(AppStatus.objects.filter(app_type="content").values_list("name", flat=True))
    running = content_app(server_name, env={"PULP_CONTENT_ASGI_PATHSEND": "false"})
    names = {row.name for row in _content_rows(before)}
    assert names  # the worker registered before it answered
    received = hashlib.sha256()
    statuses: list[int] = []
    started = threading.Event()

    def download() -> None:
        with httpx.stream("GET", running.url(f"/pulp/content/{distribution.base_path}/f.bin"),
                          timeout=60) as response:
            statuses.append(response.status_code)
            for i, chunk in enumerate(response.iter_raw(65536)):
                received.update(chunk)
                if i == 0:
                    started.set()
                time.sleep(0.02)  # about 1.3 s for the whole file

    client = threading.Thread(target=download)
    client.start()
    assert started.wait(DEADLINE)
    os.killpg(running.process.pid, signal.SIGTERM)
    client.join(60)
    running.process.wait(60)
    assert statuses == [200]
    assert received.hexdigest() == hashlib.sha256(blob).hexdigest()
    assert not AppStatus.objects.filter(name__in=names).exists()


def _refuses(port: int) -> bool:
    """Whether a new connection to ``port`` is refused (nothing listens there)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


@pytest.mark.parametrize(("server_name", "workers"),
                         [("granian", 1), ("granian", 2), ("uvicorn", 1), ("uvicorn", 2)])
def test_a_stopping_server_refuses_new_connections_while_it_drains(server_name, workers,
                                                                   upstream):
    """After SIGTERM the listening socket is closed at once, while a download begun before
    goes on to its end: a new connection is refused, so a proxy retries it on another
    server (``proxy_next_upstream error``) instead of waiting for an answer that never
    comes. uvicorn's multi-worker supervisor kept its copy of the socket open until its
    workers had drained (up to ``--timeout``): the kernel accepted new connections that no
    one answered, and reset them when the supervisor exited (found by the rolling-upgrade
    test's exploration, docs/operations.md#rolling-upgrades)."""
    import hashlib
    import signal
    import threading

    from tests.helpers import on_demand, wait_for
    from tests.upstream import Behaviour

    blob = os.urandom(1_000_000)
    distribution, prefix, _ = on_demand(upstream, {"held.bin": blob}, policy="streamed")
    hold = threading.Event()
    upstream.behaviour[prefix + "held.bin"] = Behaviour(gate=hold, gate_after=65536)
    running = content_app(server_name, workers=workers)
    port = int(running.base.rsplit(":", 1)[1])
    received: list[object] = []

    def download() -> None:
        try:
            answer = httpx.get(running.url(f"/pulp/content/{distribution.base_path}/held.bin"),
                               timeout=DEADLINE)
            received.append((answer.status_code, hashlib.sha256(answer.content).hexdigest()))
        except httpx.HTTPError as exc:
            received.append(repr(exc))

    client = threading.Thread(target=download)
    client.start()
    try:
        assert wait_for(lambda: upstream.hits[prefix + "held.bin"] == 1)
        running.process.send_signal(signal.SIGTERM)  # the main process, as Kubernetes does
        refused = wait_for(lambda: _refuses(port))
    finally:
        hold.set()
        client.join(DEADLINE)
        stop_server(running)
    assert refused
    assert received == [(200, hashlib.sha256(blob).hexdigest())]


def test_json_logs(tmp_path, unique):
    import json

    log_file = tmp_path / "access.json"
    argv = [os.path.join(BIN, "pulp-content-asgi"), "--bind", "127.0.0.1:{port}",
            "--access-logfile", str(log_file)]
    running = start_server(argv, env={"PULP_CONTENT_ASGI_LOG_FORMAT": "json"})
    try:
        httpx.get(running.url(f"/pulp/content/json-{unique}/x"),
                  headers={"Correlation-ID": f"json-{unique}"})
    finally:
        stop_server(running)
    lines = [json.loads(line) for line in log_file.read_text().splitlines()
             if f"json-{unique}/x" in line]
    assert len(lines) == 1
    entry = lines[0]
    assert entry["http"]["status"] == 404 and entry["http"]["method"] == "GET"
    assert entry["correlation_id"] == f"json-{unique}"
