"""Test set-up: a real PostgreSQL database migrated by pulpcore, real servers on loopback.

The test process and every server it starts share one settings file and database, so
tests build repositories through the ORM and then request them over HTTP.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterator

import pytest

from pulp_content_asgi.devtools import processes
from pulp_content_asgi.devtools.processes import Server
from tests.upstream import Upstream

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_ROOT = os.path.join(ROOT, ".dev", "test")
# One database per checkout, created afresh for every run: the machine's PostgreSQL is
# shared by every clone (CI runs in another folder), and artifacts must match the files
# under this checkout's .dev/test/media.
DBNAME = os.environ.get(
    "CONTENT_ASGI_TEST_DB",
    "pulp_content_asgi_test_" + hashlib.sha1(ROOT.encode()).hexdigest()[:8],
)
BIN = os.path.dirname(sys.executable)


def pytest_configure(config: pytest.Config) -> None:
    from pulp_content_asgi.devtools import settings as devsettings

    shutil.rmtree(TEST_ROOT, ignore_errors=True)
    devsettings.ensure_database(DBNAME, fresh=True)
    os.environ["PULP_SETTINGS"] = devsettings.write(
        TEST_ROOT, DBNAME, {"CONTENT_ORIGIN": "http://127.0.0.1:24816",
                            "ALLOWED_IMPORT_PATHS": ["/tmp", TEST_ROOT]}
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pulpcore.app.settings")
    from pulp_content_asgi import bootstrap

    bootstrap.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from pulp_content_asgi import registry

    registry.discover()


def start_server(argv: list[str], env: dict[str, str] | None = None,
                 probe: str = "/pulp/content/") -> Server:
    return processes.start(argv, TEST_ROOT, env, probe=probe, cwd=ROOT)


stop_server = processes.stop


def content_app(server: str = "granian", env: dict[str, str] | None = None,
                workers: int = 1, probe: str = "/pulp/content/") -> Server:
    argv = [os.path.join(BIN, "pulp-content-asgi"), "--bind", "127.0.0.1:{port}", "--server",
            server, "--workers", str(workers), "--log-level", "warning"]
    return start_server(argv, env, probe=probe)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The content app under its default server (granian)."""
    running = content_app("granian")
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def uvicorn_server() -> Iterator[Server]:
    running = content_app("uvicorn")
    yield running
    stop_server(running)


@pytest.fixture(params=["granian", "uvicorn"], scope="session")
def any_server(request: pytest.FixtureRequest, server: Server, uvicorn_server: Server) -> Server:
    """Each supported server in turn, for behaviour that must not depend on it."""
    return server if request.param == "granian" else uvicorn_server


@pytest.fixture
def unique() -> str:
    """A fresh name for repositories and base paths."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """A real HTTP server on loopback standing in for upstream repositories."""
    server = Upstream().start()
    yield server
    server.stop()
