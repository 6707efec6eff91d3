"""CONTENT_ASGI_MIDDLEWARE with the two documented examples (docs/examples/
content_middleware.py) around a real server: what the access log, the legacy app behind the
fallback and the client see; a bad entry stops the start with the setting's name."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator

import httpx
import pytest

from pulp_content_asgi.devtools import data
from tests.helpers import (
    LEGACY_ROUTES,
    ROOT,
    content_app,
    legacy_content_app,
    stop_server,
    wait_for,
)

EXAMPLES = os.path.join(ROOT, "docs", "examples")
MIDDLEWARE = json.dumps(["content_middleware.TrueClientIP", "content_middleware.OrgIdHeader"])
IDENTITY = base64.b64encode(json.dumps({"identity": {"org_id": "12345"}}).encode()).decode()


def examples_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (EXAMPLES, os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, **extra}


@pytest.fixture(scope="module")
def legacy() -> Iterator[object]:
    running = legacy_content_app()
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def access_log(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("middleware") / "access.log")


@pytest.fixture(scope="module")
def wrapped(legacy, access_log) -> Iterator[object]:
    running = content_app(env=examples_env(PULP_CONTENT_ASGI_MIDDLEWARE=MIDDLEWARE,
                                           PULP_CONTENT_ASGI_LEGACY_ORIGIN=legacy.base),
                          extra=["--access-logfile", access_log])
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def file_url(wrapped) -> str:
    name = f"mw-{os.getpid()}-{os.urandom(3).hex()}"
    repo = data.repository(name, {"a.txt": b"wrapped"})
    data.distribute(name, publication=data.publish(repo.latest_version()))
    return wrapped.url(f"/pulp/content/{name}/a.txt")


def logged(access_log: str, marker: str) -> str:
    """The access-log line of the request whose User-Agent is ``marker`` (waited for)."""
    found: list[str] = []

    def line() -> bool:
        with open(access_log) as log:
            found[:] = [x for x in log if f'"{marker}"' in x]
        return bool(found)

    assert wait_for(line), f"no access-log line for {marker}"
    return found[0]


def test_true_client_ip_is_the_client_the_access_log_writes(file_url, access_log):
    response = httpx.get(file_url, headers={"True-Client-IP": "198.51.100.7",
                                            "User-Agent": "tcip-check"})
    assert response.status_code == 200 and response.content == b"wrapped"
    assert logged(access_log, "tcip-check").startswith("198.51.100.7 - - [")
    httpx.get(file_url, headers={"True-Client-IP": "not-an-ip", "User-Agent": "junk-check"})
    assert logged(access_log, "junk-check").startswith("127.0.0.1 - - [")


def test_true_client_ip_leads_x_forwarded_for_upstream(wrapped):
    """What pulp-service's aiohttp middleware gave pulpcore-content's handlers and log;
    the fallback then appends the client address the request now has."""
    echo = httpx.get(wrapped.url(LEGACY_ROUTES + "echo"),
                     headers={"True-Client-IP": "198.51.100.7",
                              "X-Forwarded-For": "10.0.0.9"}).json()
    seen = {k.lower(): v for k, v in echo["headers"]}
    assert seen["x-forwarded-for"] == "198.51.100.7, 10.0.0.9, 198.51.100.7"


@pytest.mark.parametrize("path", ["file", "outside", "legacy"])
def test_org_id_header_on_every_kind_of_response(wrapped, file_url, path):
    url = {"file": file_url, "outside": wrapped.url("/nowhere/at/all"),
           "legacy": wrapped.url(LEGACY_ROUTES + "bytes/10")}[path]
    response = httpx.get(url, headers={"x-rh-identity": IDENTITY})
    assert response.headers.get_list("x-rh-org-id") == ["12345"]
    assert "x-rh-org-id" not in httpx.get(url).headers
    broken = httpx.get(url, headers={"x-rh-identity": "%%% not base64"})
    assert "x-rh-org-id" not in broken.headers
    assert broken.status_code == response.status_code


def test_health_and_lifespan_pass_through_the_middleware(wrapped):
    assert httpx.get(wrapped.url("/pulp/content-asgi/health/")).json()["healthy"] is True


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_an_entry_that_cannot_be_imported_stops_the_start_naming_the_setting(server):
    bad = json.dumps(["content_middleware.TrueClientIP", "content_middleware.Missing"])
    with pytest.raises(RuntimeError) as failed:
        content_app(server, env=examples_env(PULP_CONTENT_ASGI_MIDDLEWARE=bad))
    assert "CONTENT_ASGI_MIDDLEWARE: cannot import 'content_middleware.Missing'" \
        in str(failed.value)
