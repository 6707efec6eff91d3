"""A plugin's model hook that raises: a logged error naming the plugin and the hook, and a
500 whose body says which plugin failed, on every hook the app calls (pulpcore-content
answers a bare 500). The app is called in-process so the hooks can be made to fail."""

from __future__ import annotations

import asyncio
import logging

import pytest
from django.db import OperationalError
from pulp_file.app.models import FileDistribution, FileRemote
from pulpcore.app.models import HeaderContentGuard

from pulp_content_asgi.devtools import data
from pulp_content_asgi.plugin import DistributionHandler, registry
from tests.helpers import asgi_call, scope, unique_name


def call(path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """Status and body the app sends for ``GET /pulp/content/<path>``."""
    from pulp_content_asgi.asgi import application

    sent = asyncio.run(asgi_call(application, scope(f"/pulp/content/{path}", "GET", headers)))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def boom(*args, **kwargs):
    raise RuntimeError("boom")


def failure(plugin: str, hook: str) -> bytes:
    return (f"500: The {plugin} plugin failed in {hook}; the content app's log has the "
            "error and its traceback.").encode()


def logged(caplog: pytest.LogCaptureFixture, message: str) -> logging.LogRecord:
    records = [r for r in caplog.records
               if r.levelno == logging.ERROR and message in r.getMessage()]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    assert records[0].exc_info is not None  # the hook's traceback
    return records[0]


@pytest.fixture(scope="module")
def dist():
    u = unique_name()
    remote = FileRemote.objects.create(name=f"fail-{u}", url="http://127.0.0.1:9/")
    repo = data.repository(f"fail-{u}", {"dir/a.txt": b"a"})
    return data.distribute(f"fail-{u}", publication=data.publish(repo.latest_version()),
                           remote=remote)


@pytest.mark.parametrize(("owner", "hook", "path"), [
    (FileDistribution, "content_handler", "dir/a.txt"),
    (FileDistribution, "content_headers_for", "dir/a.txt"),
    (FileDistribution, "content_handler_list_directory", "dir/"),
    (FileDistribution, "get_fallback_ca", "missing.txt"),
    (FileDistribution, "get_repository_publication_and_version", "dir/a.txt"),
    (FileRemote, "get_remote_artifact_url", "missing.txt"),
])
def test_each_hook_is_named(dist, monkeypatch, caplog, owner, hook, path):
    monkeypatch.setattr(owner, hook, boom)
    status, body = call(f"{dist.base_path}/{path}")
    assert (status, body) == (500, failure("pulp_file", f"{owner.__name__}.{hook}"))
    record = logged(caplog, f"Plugin pulp_file failed in {owner.__name__}.{hook}: "
                            "RuntimeError: boom")
    assert f"GET /pulp/content/{dist.base_path}/{path}" in record.getMessage()


def test_a_failing_guard_is_named(monkeypatch, caplog):
    u = unique_name()
    guard = HeaderContentGuard.objects.create(name=f"fail-{u}", header_name="x-secret",
                                              header_value="yes")
    repo = data.repository(f"guarded-{u}", {"a.txt": b"a"})
    guarded = data.distribute(f"guarded-{u}", publication=data.publish(repo.latest_version()),
                              content_guard=guard)
    assert call(f"{guarded.base_path}/a.txt")[0] == 403  # refusals stay refusals
    monkeypatch.setattr(HeaderContentGuard, "permit", boom)
    status, body = call(f"{guarded.base_path}/a.txt")
    assert (status, body) == (500, failure("pulpcore", "HeaderContentGuard.permit"))
    logged(caplog, "Plugin pulpcore failed in HeaderContentGuard.permit")


def test_a_value_no_bridge_converts_is_the_plugins_fault(dist, monkeypatch, caplog):
    monkeypatch.setattr(FileDistribution, "content_handler", lambda self, path: object())
    status, body = call(f"{dist.base_path}/dir/a.txt")
    assert (status, body) == (500, failure("pulp_file", "FileDistribution.content_handler"))
    logged(caplog, "content_handler: TypeError: it returned object")


def test_a_lost_database_is_not_blamed_on_the_plugin(dist, monkeypatch):
    def lost(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(FileDistribution, "content_headers_for", lost)
    status, body = call(f"{dist.base_path}/dir/a.txt")
    assert status == 503 and b"database" in body


def test_pulp_pythons_hook_without_a_publication(caplog):
    """What pulpcore-content answers with a bare 500: pulp_python's own content_handler
    reads ``self.publication.repository_version`` on a distribution serving a repository.
    Through the generic path (as before the port) it is a named failure; the port serves
    the document (tests/ports/test_python_e2e.py)."""
    from pulp_python.app.models import PythonDistribution, PythonRepository

    u = unique_name()
    distribution = PythonDistribution.objects.create(
        name=f"py-{u}", base_path=f"py-{u}",
        repository=PythonRepository.objects.create(name=f"py-{u}"))
    port = registry.handler_for(PythonDistribution)
    registry.register(PythonDistribution, DistributionHandler)
    try:
        status, body = call(f"{distribution.base_path}/pypi/anything/json")
    finally:
        registry.register(PythonDistribution, port)
    assert (status, body) == (500, failure("pulp_python", "PythonDistribution.content_handler"))
    logged(caplog, "Plugin pulp_python failed in PythonDistribution.content_handler: "
                   "AttributeError")
    assert call(f"{distribution.base_path}/pypi/anything/json")[0] == 404
