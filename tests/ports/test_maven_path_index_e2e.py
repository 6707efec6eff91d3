"""pulp_maven's path index on object storage (moto's S3 server on loopback), through the
maven port (pulp_content_asgi/builtin/maven.py) and through pulpcore-content running
pulp_maven's own ``IndexedArtifactResponse``, on the same database, bucket and index.

A repository labelled ``path_index`` on an S3 domain gets an index in the bucket when its
version is made (pulp_maven's ``finalize_new_version``); each server's worker loads it in
the background, and ``content_handler`` answers indexed paths from it. What an indexed
file gets (``IndexedArtifactResponse.prepare()``): ``302`` to a signed S3 URL when the
domain redirects to object storage or the file is larger than
``MAVEN_PATH_INDEX_REDIRECT_THRESHOLD``, else the bytes; index pages are always inline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from pulpcore.app import mime_types
from pulpcore.app.models import ContentArtifact, Domain

from pulp_content_asgi.devtools import data
from tests.helpers import (
    BIN,
    TEST_ROOT,
    content_app,
    s3_domain,
    s3_signed_for,
    start_server,
    stop_server,
    unique_name,
    wait_for,
)

#: Files above this many bytes are redirected even by a domain that proxies (the servers'
#: ``MAVEN_PATH_INDEX_REDIRECT_THRESHOLD``).
THRESHOLD = 64 * 1024
BIG = os.urandom(200 * 1024)
SMALL = os.urandom(4 * 1024)
#: What pulp_maven's index entries say (``path_index/http.py``, ``headers_for``).
INDEX_CACHE_CONTROL = "public, max-age=86400, must-revalidate"


@pytest.fixture(scope="module")
def index_dir() -> Iterator[str]:
    """The index cache both servers and this process (which builds the index) use."""
    from django.test import override_settings

    os.makedirs(TEST_ROOT, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="maven-index-", dir=TEST_ROOT)
    overrides = override_settings(MAVEN_PATH_INDEX_CACHE_DIR=directory)
    overrides.enable()
    yield directory
    overrides.disable()
    shutil.rmtree(directory, ignore_errors=True)


def _env(index_dir: str) -> dict[str, str]:
    return {"PULP_DOMAIN_ENABLED": "true", "PULP_MAVEN_PATH_INDEX_CACHE_DIR": index_dir,
            "PULP_MAVEN_PATH_INDEX_REDIRECT_THRESHOLD": str(THRESHOLD)}


@pytest.fixture(scope="module")
def ours(index_dir: str) -> Iterator[object]:
    running = content_app(env=_env(index_dir), probe="/pulp/content/default/")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def theirs(index_dir: str) -> Iterator[object]:
    """pulpcore-content: pulp_maven's ``IndexedArtifactResponse`` sent by aiohttp."""
    argv = [os.path.join(BIN, "pulpcore-content"), "--bind", "127.0.0.1:{port}",
            "--workers", "1"]
    running = start_server(argv, env=_env(index_dir), probe="/pulp/content/default/")
    yield running
    stop_server(running)


def indexed_repository(domain: Domain, files: dict[str, bytes]) -> str:
    """A path-indexed Maven repository of ``files`` in ``domain``, distributed; the URL
    path of its distribution."""
    from pulp_maven.app.models import MavenArtifact, MavenDistribution, MavenRepository
    from pulpcore.app.util import set_domain

    u = unique_name()
    default = Domain.objects.get(name="default")
    set_domain(domain)
    try:
        units = []
        for path, blob in files.items():
            unit = MavenArtifact.init_from_artifact_and_relative_path(None, path)
            unit.save()
            ContentArtifact.objects.create(content=unit, relative_path=path,
                                           artifact=data.artifact_from_bytes(blob))
            units.append(unit.pk)
        repo = MavenRepository.objects.create(name=f"mvn-idx-{u}",
                                              pulp_labels={"path_index": "true"})
        with repo.new_version() as version:
            version.add_content(MavenArtifact.objects.filter(pk__in=units))
        assert "maven_path_index" in repo.latest_version().info  # the index was built
        MavenDistribution.objects.create(name=f"mvn-idx-{u}", base_path=f"mvn-idx-{u}",
                                         repository=repo)
    finally:
        set_domain(default)
    return f"/pulp/content/{domain.name}/mvn-idx-{u}"


def _query(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))


def _indexed(response: httpx.Response) -> bool:
    """Whether the answer came from the path index (its entries' Cache-Control, on the
    answer or, for a redirect, on what the storage will answer)."""
    location = response.headers.get("location", "")
    return INDEX_CACHE_CONTROL in (response.headers.get("cache-control", ""),
                                   _query(location).get("response-cache-control"))


def _once_indexed(server: object, path: str) -> None:
    """Each worker loads the index in the background; until then the path is served
    without it (pulp_maven's ``ViewCache.lease``). Wait for the first indexed answer."""
    url = server.url(path)  # type: ignore[attr-defined]
    assert wait_for(lambda: _indexed(httpx.head(url, timeout=30))), url


def _get(server: object, path: str, method: str = "GET", **headers: str) -> httpx.Response:
    return httpx.request(method, server.url(path), headers=headers,  # type: ignore[attr-defined]
                         timeout=60)


def _storage_path(domain: Domain, blob: bytes) -> str:
    """The object key of ``blob``'s artifact in ``domain``'s bucket."""
    from pulpcore.app.models import Artifact

    return Artifact.objects.get(sha256=hashlib.sha256(blob).hexdigest(),
                                pulp_domain=domain).file.name


def _assert_redirect(answer: httpx.Response, s3: str, domain: Domain, blob: bytes,
                     filename: str, method: str) -> str:
    """What pulp_maven's redirect and ours share; the Location."""
    assert answer.status_code == 302, (answer.status_code, dict(answer.headers))
    assert answer.headers["x-pulp-artifact-size"] == str(len(blob))
    assert answer.headers["content-disposition"] == f"attachment;filename={filename}"
    location = answer.headers["location"]
    bucket = domain.storage_settings["bucket_name"]
    assert urlsplit(location).path == f"/{bucket}/{_storage_path(domain, blob)}"
    assert location.startswith(f"{s3}/{bucket}/")
    assert s3_signed_for(location, method)
    assert not s3_signed_for(location, "HEAD" if method == "GET" else "GET")
    query = _query(location)
    assert query["response-content-disposition"] == f"attachment;filename={filename}"
    assert query["response-cache-control"] == INDEX_CACHE_CONTROL
    # A type only when pulpcore's mime map knows one (.war: none, the object's own stands).
    assert query.get("response-content-type") == mime_types.get_type(filename)
    return location


def _follow(location: str, blob: bytes, filename: str) -> None:
    stored = httpx.get(location, timeout=60)
    assert stored.status_code == 200 and stored.content == blob
    assert stored.headers["content-disposition"] == f"attachment;filename={filename}"
    assert stored.headers["cache-control"] == INDEX_CACHE_CONTROL


def test_indexed_file_on_a_redirecting_domain(ours, theirs, s3):
    """``redirect_to_object_storage`` on: an indexed jar is a 302 to its object, signed for
    the request's method, from both; preconditions are answered before the redirect; the
    index page is inline."""
    domain = s3_domain(s3, redirect=True)
    # Coordinates of this run only, from the top: the index's pages (one per folder, "com/"
    # included) are unique by sha256 across the database, and other tests index com/ too.
    u = unique_name()
    a = f"lib{u}"
    jar, war = f"com{u}/example/{a}/1.0/{a}-1.0.jar", f"com{u}/example/{a}/1.0/{a}-1.0.war"
    base = indexed_repository(domain, {jar: BIG, war: SMALL})
    etag = f'"{hashlib.sha256(BIG).hexdigest()}"'
    for server in (ours, theirs):
        _once_indexed(server, f"{base}/{jar}")
    for server in (ours, theirs):
        for path, blob in ((jar, BIG), (war, SMALL)):
            filename = path.rsplit("/", 1)[1]
            for method in ("GET", "HEAD"):
                answer = _get(server, f"{base}/{path}", method)
                location = _assert_redirect(answer, s3, domain, blob, filename, method)
                if method == "GET":
                    _follow(location, blob, filename)
        assert _get(server, f"{base}/{jar}", **{"If-None-Match": etag}).status_code == 304
        assert _get(server, f"{base}/{jar}", **{"If-Match": '"other"'}).status_code == 412
        page = _get(server, f"{base}/com{u}/example/{a}/1.0/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert f"{a}-1.0.jar" in page.text

    for path, blob in ((jar, BIG), (war, SMALL)):
        ours_302, theirs_302 = _get(ours, f"{base}/{path}"), _get(theirs, f"{base}/{path}")
        assert urlsplit(ours_302.headers["location"]).path \
            == urlsplit(theirs_302.headers["location"]).path
        # What the storage is told to answer with: the same parameters, the same values.
        assert {k: v for k, v in _query(ours_302.headers["location"]).items()
                if k.startswith("response-")} \
            == {k: v for k, v in _query(theirs_302.headers["location"]).items()
                if k.startswith("response-")}
        # Deliberate differences (docs/differences.md): the signed URL expires, so the
        # 302 itself must not be kept by shared caches (pulp_maven's says to keep it a
        # day), and it carries no validators of the file it is not.
        assert ours_302.headers["cache-control"] == "no-store"
        assert theirs_302.headers["cache-control"] == INDEX_CACHE_CONTROL
        assert "etag" not in ours_302.headers and "last-modified" not in ours_302.headers
        assert theirs_302.headers["etag"] == f'"{hashlib.sha256(blob).hexdigest()}"'


def test_threshold_redirects_only_larger_files(ours, theirs, s3):
    """``redirect_to_object_storage`` off: files above MAVEN_PATH_INDEX_REDIRECT_THRESHOLD
    are still redirected, smaller ones are proxied with the index entry's headers."""
    domain = s3_domain(s3, redirect=False)
    u = unique_name()  # this run's coordinates (see above)
    a = f"tool{u}"
    big, small = f"org{u}/acme/{a}/2.0/{a}-2.0.jar", f"org{u}/acme/{a}/2.0/{a}-2.0-sources.jar"
    base = indexed_repository(domain, {big: BIG, small: SMALL})
    for server in (ours, theirs):
        _once_indexed(server, f"{base}/{small}")
    for server in (ours, theirs):
        location = _assert_redirect(_get(server, f"{base}/{big}"), s3, domain, BIG,
                                    f"{a}-2.0.jar", "GET")
        _follow(location, BIG, f"{a}-2.0.jar")
        proxied = _get(server, f"{base}/{small}")
        assert proxied.status_code == 200 and proxied.content == SMALL
        assert proxied.headers["cache-control"] == INDEX_CACHE_CONTROL
        assert proxied.headers["etag"] == f'"{hashlib.sha256(SMALL).hexdigest()}"'
        assert proxied.headers["x-pulp-artifact-size"] == str(len(SMALL))
        assert "location" not in proxied.headers
