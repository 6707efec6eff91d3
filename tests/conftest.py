"""Test set-up in two tiers.

* The **fast tier** (``tests/http/`` and ``tests/unit/``, marked ``fast``): pure functions
  and in-process checks that need no PostgreSQL, no Redis and no server.
  ``make test-fast`` runs it.
* Everything else needs the test database: a real PostgreSQL database, created afresh the
  first time such a test is set up (never for the fast tier) as a copy of the checkout's
  migrated template (``devtools/migrated.py``; the first run migrates and keeps one),
  and real servers on loopback that share its settings file, so tests build repositories
  through the ORM and then request them over HTTP.

Django itself is set up for every run (the test modules import pulpcore's models); that
reads the settings file and touches no database.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from tests.helpers import (
    BIN,
    DBNAME,
    MOTO,
    TEST_ROOT,
    PrivateRedis,
    content_app,
    metered_env,
    start_server,
    stop_server,
    unique_name,
)

FAST_DIRS = (Path(__file__).parent / "http", Path(__file__).parent / "unit")
_database_ready = False
_started = time.monotonic()

# Hypothesis: the CI slice is derandomized (the same examples every run, no example
# database); `make adversarial` loads the random, seeded profile with more examples
# (tests/adversarial.py, reliability/README.md).
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                                     print_blob=True, suppress_health_check=_QUIET)
hypothesis_settings.register_profile("adversarial", database=None, deadline=None,
                                     print_blob=True, suppress_health_check=_QUIET)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    from pulp_content_asgi.devtools import settings as devsettings

    shutil.rmtree(TEST_ROOT, ignore_errors=True)
    os.environ["PULP_SETTINGS"] = devsettings.write(
        TEST_ROOT, DBNAME, {"CONTENT_ORIGIN": "http://127.0.0.1:24816",
                            "ALLOWED_IMPORT_PATHS": ["/tmp", TEST_ROOT]}
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pulpcore.app.settings")
    from pulp_content_asgi import bootstrap

    bootstrap.setup()
    from django.conf import settings

    # As the app does at start-up (entry/app.py): plugin code run in process writes
    # temporary files into the current directory (pulp_python's and pulp_gem's
    # constructors), which must not be the checkout.
    os.makedirs(settings.WORKING_DIRECTORY, exist_ok=True)
    os.chdir(settings.WORKING_DIRECTORY)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(d in Path(str(item.path)).parents for d in FAST_DIRS):
            item.add_marker(pytest.mark.fast)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Outcomes of the adversarial tests, for reliability/report.md."""
    from tests import adversarial

    if "adversarial" not in report.keywords:
        return
    if report.when == "call" or report.outcome != "passed":
        adversarial.OUTCOMES[report.nodeid] = report.outcome
    adversarial.DURATIONS[report.nodeid] = (adversarial.DURATIONS.get(report.nodeid, 0.0)
                                            + report.duration)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """``ADVERSARIAL_REPORT=path``: write the adversarial figures there;
    ``ADVERSARIAL_RESULTS=path``: write them as JSON for the runner of `make adversarial`
    (tests/adversarial_lanes.py), which merges its lanes' into one report."""
    from tests import adversarial

    seed = session.config.getoption("hypothesis_seed", None)
    path = os.environ.get("ADVERSARIAL_REPORT")
    if path:
        adversarial.write_report(path, time.monotonic() - _started,
                                 None if seed is None else str(seed))
    results = os.environ.get("ADVERSARIAL_RESULTS")
    if results:
        with open(results, "w") as out:
            json.dump({**adversarial.results(), "seconds": time.monotonic() - _started,
                       "profile": adversarial.PROFILE, "scale": adversarial.SCALE},
                      out, default=str)


def pytest_unconfigure(config: pytest.Config) -> None:
    """pulpcore's ``DownloaderFactory`` closes its aiohttp session at exit on
    ``asyncio.get_event_loop()``, which raises once pytest-asyncio or ``asyncio.run`` has
    left the main thread without a loop: one traceback per factory an in-process test made
    ("Exception ignored in atexit callback"). A fresh loop lets those callbacks close the
    sessions quietly. Servers are not concerned: their logs show no such error."""
    import asyncio

    asyncio.set_event_loop(asyncio.new_event_loop())


def _database() -> None:
    """Create and migrate the test database, once per run."""
    global _database_ready
    if _database_ready:
        return

    from pulp_content_asgi.devtools import migrated
    from pulp_content_asgi.plugin import registry

    # A copy of the migrated template when these migrations were applied before
    # (devtools/migrated.py): seconds instead of minutes.
    migrated.fresh()
    registry.discover()
    _database_ready = True


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once the tests are chosen (after ``-m``/``-k``), make the database if any of them
    needs it: here, outside every test's ``--timeout`` (a first migration on a busy machine
    can take longer than one test may), and once: a failure stops the run with its cause
    instead of failing every test on its own."""
    if not session.config.option.collectonly and any(
            item.get_closest_marker("fast") is None for item in session.items):
        _database()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of a test outside the fast tier: the database exists."""
    if item.get_closest_marker("fast") is None:
        _database()


@pytest.fixture(scope="session")
def server() -> Iterator[object]:
    """The content app under its default server (granian)."""
    running = content_app("granian")
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def uvicorn_server() -> Iterator[object]:
    running = content_app("uvicorn")
    yield running
    stop_server(running)


@pytest.fixture(params=["granian", "uvicorn"], scope="session")
def any_server(request: pytest.FixtureRequest, server: object, uvicorn_server: object
               ) -> object:
    """Each supported server in turn, for behaviour that must not depend on it."""
    return server if request.param == "granian" else uvicorn_server


@pytest.fixture(scope="session")
def metered_server() -> Iterator[object]:
    """The app (granian, one worker) with Prometheus on: tests wait on its counters
    (downloads in flight, requests that joined a download) instead of on the clock."""
    directory = tempfile.mkdtemp(prefix="metered-")
    running = content_app("granian", env=metered_env(directory))
    yield running
    stop_server(running)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def unique() -> str:
    """A fresh name for repositories and base paths."""
    return unique_name()


@pytest.fixture(scope="module")
def upstream() -> Iterator[object]:
    """A real HTTP server on loopback standing in for upstream repositories."""
    from tests.upstream import Upstream

    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def backup_upstream() -> Iterator[object]:
    """A second upstream, for a repository's second remote (fallback, ACS)."""
    from tests.upstream import Upstream

    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def domain_server() -> Iterator[object]:
    """The app with DOMAIN_ENABLED (object-storage domains)."""
    running = content_app(env={"PULP_DOMAIN_ENABLED": "true"}, probe="/pulp/content/default/")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def redis_server():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cache_settings(redis_server):
    """This process's pulpcore hooks invalidate in the same Redis as the servers."""
    import pulpcore.app.redis_connection as connections
    from django.test import override_settings

    overrides = override_settings(CACHE_ENABLED=True, REDIS_HOST="127.0.0.1",
                                  REDIS_PORT=redis_server.port, REDIS_URL=None)
    overrides.enable()
    connections._conn = connections._a_conn = None
    yield {"PULP_CACHE_ENABLED": "true", "PULP_REDIS_HOST": "127.0.0.1",
           "PULP_REDIS_PORT": str(redis_server.port)}
    overrides.disable()
    connections._conn = connections._a_conn = None


@pytest.fixture(scope="module")
def cached_server(cache_settings, tmp_path_factory):
    """The app with the cache on (and Prometheus, whose counters tests wait on)."""
    shared = str(tmp_path_factory.mktemp("prometheus"))
    running = content_app("granian", env={**cache_settings, **metered_env(shared)})
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def legacy_server() -> Iterator[object]:
    """pulpcore-content itself (aiohttp, the installed plugins' own hooks) on the test
    database: the reference our answers are compared with."""
    argv = [os.path.join(BIN, "pulpcore-content"), "--bind", "127.0.0.1:{port}",
            "--workers", "1"]
    running = start_server(argv)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3 server on loopback; its endpoint URL."""
    assert os.path.exists(MOTO), "moto's server is missing: pip install -e '.[test]'"
    running = start_server([MOTO, "-H", "127.0.0.1", "-p", "{port}"], probe="/")
    yield running.base
    stop_server(running)
