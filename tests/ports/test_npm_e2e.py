"""pulp_npm through its port (pulp_content_asgi/builtin/npm.py): the live packument, as
JSON, tarballs and pull-through, on repositories built with pulp_npm's models, compared
with pulpcore-content running pulp_npm's aiohttp hook."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import pytest
from django.conf import settings
from pulpcore.app.models import ContentArtifact, RemoteArtifact

from pulp_content_asgi.devtools import data
from tests.helpers import unique_name, wait_for


def repository(versions: dict[str, list[str]]):
    """An npm repository with these package versions; their tarballs hold fake bytes."""
    from pulp_npm.app.models import NpmRepository, Package

    units = []
    for name, numbers in versions.items():
        for number in numbers:
            unit = Package.objects.create(name=name, version=number)
            ContentArtifact.objects.create(content=unit, relative_path=unit.relative_path,
                                           artifact=data.artifact_from_bytes(
                                               f"tarball {name} {number}".encode()))
            units.append(unit)
    repo = NpmRepository.objects.create(name=f"npm-{unique_name()}")
    with repo.new_version() as version:
        version.add_content(Package.objects.filter(pk__in=[u.pk for u in units]))
    return repo


def distribution(**fields):
    from pulp_npm.app.models import NpmDistribution

    u = unique_name()
    return NpmDistribution.objects.create(name=f"npm-{u}", base_path=f"npm-{u}", **fields)


def get(server, dist, path: str) -> httpx.Response:
    return httpx.get(server.url(f"/pulp/content/{dist.base_path}/{path}"), timeout=60)


@pytest.fixture(scope="module")
def npm():
    u = unique_name()
    names = {f"left-pad-{u}": ["1.0.0", "1.3.0", "2.0.0-beta.1"],
             f"@acme-{u}/widget": ["0.1.0"],
             f"nightly-{u}": ["3.0.0-rc.1", "3.0.0-rc.2"]}
    return distribution(repository=repository(names)), list(names)


def test_packument_is_json_with_pulp_npms_document(server, legacy_server, npm):
    dist, (plain, scoped, prerelease) = npm
    prefix = f"{settings.CONTENT_ORIGIN}/pulp/content/{dist.base_path}/"
    for name, latest in ((plain, "1.3.0"), (scoped, "0.1.0"), (prerelease, "3.0.0-rc.2")):
        ours, theirs = get(server, dist, name), get(legacy_server, dist, name)
        assert ours.status_code == theirs.status_code == 200
        assert ours.headers["content-type"] == "application/json"
        # pulp_npm's aiohttp Response(body=str) says text/plain (docs/differences.md).
        assert theirs.headers["content-type"] == "text/plain; charset=utf-8"
        document = json.loads(ours.content)
        # Each entry also names itself and its tarball's digest, as npm needs
        # (docs/differences.md); the rest is pulp_npm's document.
        for entry in document["versions"].values():
            version = entry.pop("version")
            assert entry.pop("name") == name and entry["_id"] == f"{name}@{version}"
            tarball = get(server, dist, entry["dist"]["tarball"].split(
                f"{dist.base_path}/", 1)[1]).content
            assert entry["dist"].pop("integrity") == "sha512-" + base64.b64encode(
                hashlib.sha512(tarball).digest()).decode()
        assert document == json.loads(theirs.content)
        assert document["dist-tags"] == {"latest": latest}
        for number, entry in document["versions"].items():
            assert entry["_id"] == f"{name}@{number}"
            base = name.rsplit("/", 1)[-1]
            assert entry["dist"]["tarball"] == f"{prefix}{name}/-/{base}-{number}.tgz"
    assert sorted(json.loads(get(server, dist, plain).content)["versions"]) == [
        "1.0.0", "1.3.0", "2.0.0-beta.1"]


def test_tarballs_and_unknown_names(server, legacy_server, npm):
    dist, (plain, scoped, _) = npm
    for path in (f"{plain}/-/{plain}-1.3.0.tgz", f"{scoped}/-/widget-0.1.0.tgz"):
        ours, theirs = get(server, dist, path), get(legacy_server, dist, path)
        assert ours.status_code == theirs.status_code == 200
        assert ours.content == theirs.content and ours.content.startswith(b"tarball ")
    for path in ("no-such-package", f"{plain}/-/{plain}-9.9.9.tgz"):
        assert get(server, dist, path).status_code == get(legacy_server, dist, path).status_code \
            == 404


def test_no_semver_version_leaves_latest_out(server, legacy_server):
    """pulp_npm's ``max()`` of no semver version raises (a 500 from pulpcore-content)."""
    name = f"odd-{unique_name()}"
    dist = distribution(repository=repository({name: ["1.0", "banana"]}))
    ours = get(server, dist, name)
    assert ours.status_code == 200
    assert json.loads(ours.content)["dist-tags"] == {}
    assert get(legacy_server, dist, name).status_code == 500


def test_pull_through_saves_tarballs_and_streams_packuments(server, upstream):
    from pulp_npm.app.models import NpmRemote, NpmRepository, Package

    u = unique_name()
    name = f"pulled-{u}"
    tarball = f"{name}/-/{name}-1.2.3.tgz"
    upstream.files[f"{u}/{tarball}"] = b"upstream tarball"
    upstream.files[f"{u}/{name}"] = b'{"name": "upstream packument"}'
    remote = NpmRemote.objects.create(name=f"npm-pt-{u}", url=upstream.url(f"{u}/"),
                                      policy="on_demand")
    repo = NpmRepository.objects.create(name=f"npm-pt-{u}")
    dist = distribution(remote=remote, repository=repo)
    pulled = get(server, dist, tarball)
    assert pulled.status_code == 200 and pulled.content == b"upstream tarball"
    assert wait_for(lambda: RemoteArtifact.objects.filter(
        remote=remote, url=upstream.url(f"{u}/{tarball}")).exists())
    assert Package.objects.filter(name=name, version="1.2.3").exists()
    for _ in range(2):
        streamed = get(server, dist, name)
        assert streamed.status_code == 200 and streamed.content == upstream.files[f"{u}/{name}"]
    assert wait_for(lambda: upstream.hits[f"{u}/{name}"] == 2)
    assert get(server, dist, tarball).content == b"upstream tarball"
    assert upstream.hits[f"{u}/{tarball}"] == 1


def test_a_pulled_through_packument_is_json(server, upstream):
    """A packument streamed from the upstream registry is typed as the generated ones
    (pulpcore's mime map has no type for an extension-less name: octet-stream)."""
    from pulp_npm.app.models import NpmRemote

    u = unique_name()
    name = f"typed-{u}"
    upstream.files[f"{u}/{name}"] = b'{"name": "upstream packument"}'
    remote = NpmRemote.objects.create(name=f"npm-pt-{u}", url=upstream.url(f"{u}/"),
                                      policy="on_demand")
    dist = distribution(remote=remote)
    for method in ("GET", "HEAD"):
        answer = httpx.request(method, server.url(f"/pulp/content/{dist.base_path}/{name}"),
                               timeout=60)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
    assert answer.status_code == 200
    tarball = f"{name}/-/{name}-1.0.0.tgz"
    upstream.files[f"{u}/{tarball}"] = b"upstream tarball"
    pulled = get(server, dist, tarball)
    assert pulled.status_code == 200 and pulled.headers["content-type"] != "application/json"
