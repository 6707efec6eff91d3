"""pulp_rpm through its port (pulp_content_asgi/builtin/rpm.py), on repositories built with
pulp_rpm's models and published by pulp_rpm's own publish task, compared with
pulpcore-content running pulp_rpm's aiohttp hooks on the same database."""

from __future__ import annotations

import base64
import hashlib
import os
from unittest import mock

import httpx
import pytest
from django.conf import settings
from django.test import override_settings
from pulpcore.app.models import ContentArtifact, RemoteArtifact

from pulp_content_asgi.builtin.rpm import NO_ORIGIN
from pulp_content_asgi.devtools import data
from pulp_content_asgi.plugin import results
from tests.helpers import resolve, run_task, unique_name, wait_for

#: Headers each server sets for itself, not for the content.
OWN = {"date", "server", "correlation-id", "content-length"}


def package(name: str, blob: bytes):
    """An RPM package row as pulp_rpm's upload would create it, with its file stored."""
    from pulp_rpm.app.models import Package

    artifact = data.artifact_from_bytes(blob)
    unit = Package.objects.create(
        name=name, epoch="0", version="1.0", release="1", arch="noarch", pkgId=artifact.sha256,
        checksum_type="sha256", summary="a test package", description="", url="",
        location_base="", location_href=f"{name}-1.0-1.noarch.rpm", rpm_buildhost="",
        rpm_group="", rpm_license="MIT", rpm_packager="", rpm_sourcerpm="", rpm_vendor="",
        rpm_header_start=0, rpm_header_end=0, size_archive=0, size_installed=0,
        size_package=len(blob), time_build=0, time_file=0)
    ContentArtifact.objects.create(content=unit, artifact=artifact,
                                   relative_path=unit.location_href)
    return unit


def published(repo_config: dict, signed: bool = False, generate: bool = True,
              name: str | None = None, content_guard=None):
    """A repository with one package, published by pulp_rpm's publish task, and a
    distribution of its repository (behind ``content_guard``, if given); returns
    (distribution, package)."""
    from pulp_rpm.app.models import Package, RpmDistribution, RpmRepository
    from pulp_rpm.app.tasks.publishing import publish

    u = unique_name()
    unit = package(f"hello{u}", f"rpm bytes {u}".encode())
    repo = RpmRepository.objects.create(name=f"rpm-{u}")
    with repo.new_version() as version:
        version.add_content(Package.objects.filter(pk=unit.pk))
    run_task(publish, version.pk, repo_config=repo_config)
    if signed:  # config.repo only names the key: a service row is enough (never run)
        from pulpcore.app.models import AsciiArmoredDetachedSigningService

        with mock.patch.object(AsciiArmoredDetachedSigningService, "validate"):
            service = AsciiArmoredDetachedSigningService.objects.create(
                name=f"sign-{u}", script="/bin/false", public_key="(not used)",
                pubkey_fingerprint="0" * 40)
        RpmRepository.objects.filter(pk=repo.pk).update(metadata_signing_service=service)
    distribution = RpmDistribution.objects.create(
        name=name or f"Fedora 43: updates & more {u}", base_path=f"rpm-{u}", repository=repo,
        generate_repo_config=generate, content_guard=content_guard)
    return distribution, unit


def get(server, distribution, path: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> httpx.Response:
    return httpx.request(method, server.url(f"/pulp/content/{distribution.base_path}/{path}"),
                         headers=headers, timeout=30)


def headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in OWN}


@pytest.fixture(scope="module")
def rpm():
    return published({"gpgcheck": 1, "sslverify": 0, "name": "not used",
                      "baseurl": "http://not.used/"})


#: The credentials :func:`header_guard` lets in (the header guard's Base64 encoding).
LET_IN = {"X-Secret": base64.b64encode(b"swordfish").decode()}


def header_guard():
    """A content guard that lets in requests carrying :data:`LET_IN` (the certguard case:
    a guarded RPM distribution, as RHEL-style content is served)."""
    from pulpcore.app.models import HeaderContentGuard

    return HeaderContentGuard.objects.create(name=f"rpm-guard-{unique_name()}",
                                             header_name="x-secret", header_value="swordfish")


@pytest.fixture(scope="module")
def guarded_rpm():
    return published({}, content_guard=header_guard())


def test_config_repo_is_pulp_rpms_file(server, legacy_server, rpm):
    distribution, _ = rpm
    ours, theirs = get(server, distribution, "config.repo"), get(legacy_server, distribution,
                                                                  "config.repo")
    repo_id = "".join(c for c in distribution.name if c.isalnum() or c in "_-.:")
    assert ours.status_code == 200
    assert ours.text == (
        f"[{repo_id}]\n"
        f"name={distribution.name}\n"
        f"baseurl={settings.CONTENT_ORIGIN}/pulp/content/{distribution.base_path}/\n"
        "gpgcheck=1\nsslverify=0\nrepo_gpgcheck=0\nenabled=1\n")
    assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content)
    assert headers(ours) == headers(theirs) == {"content-type": "text/plain; charset=utf-8"}


def test_config_repo_names_the_key_of_signed_metadata(server, legacy_server):
    distribution, _ = published({"gpgcheck": 0, "repo_gpgcheck": 1, "enabled": 0},
                                signed=True, name="signed")
    ours, theirs = get(server, distribution, "config.repo"), get(legacy_server, distribution,
                                                                  "config.repo")
    base = f"{settings.CONTENT_ORIGIN}/pulp/content/{distribution.base_path}/"
    # repo_config is JSONB: PostgreSQL keeps its keys shortest first.
    assert ours.text == (f"[signed]\nname=signed\nbaseurl={base}\nenabled=0\ngpgcheck=0\n"
                         f"repo_gpgcheck=1\ngpgkey={base}repodata/repomd.xml.key\n")
    assert ours.content == theirs.content


def test_config_repo_only_when_generated(server, legacy_server):
    distribution, _ = published({}, generate=False)
    for app in (server, legacy_server):
        assert get(app, distribution, "config.repo").status_code == 404
        assert "config.repo" not in get(app, distribution, "").text


def test_config_repo_without_an_origin_says_why(rpm):
    distribution, _ = rpm
    with override_settings(CONTENT_ORIGIN=None):
        # The publication's repo_config has a baseurl: pulp_rpm uses it as the origin.
        found = resolve(f"{distribution.base_path}/config.repo")
        assert isinstance(found, results.ServeBody)
        assert b"baseurl=http://not.used/pulp/content/" in found.body
        bare, _ = published({})
        assert resolve(f"{bare.base_path}/config.repo") == results.NotFound(NO_ORIGIN)


def test_root_listing_names_config_repo(server, legacy_server, rpm):
    distribution, _ = rpm
    for app in (server, legacy_server):
        listing = get(app, distribution, "")
        assert listing.status_code == 200
        assert '<a href="./config.repo">config.repo</a>' in listing.text
        assert '<a href="./repodata/">repodata/</a>' in listing.text
    # Only at the root.
    assert "config.repo" not in get(server, distribution, "repodata/").text


def test_repository_metadata_is_never_cached_by_clients(server, legacy_server, rpm):
    distribution, unit = rpm
    ours, theirs = (get(server, distribution, "repodata/repomd.xml"),
                    get(legacy_server, distribution, "repodata/repomd.xml"))
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content and ours.content.startswith(b"<?xml")
    assert ours.headers["cache-control"] == theirs.headers["cache-control"] == "no-cache"
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "text/xml"
    # Everything else keeps pulpcore's policy.
    rpm_path = f"Packages/{unit.name[0]}/{unit.location_href}"
    for path in (rpm_path, "repodata/"):
        assert get(server, distribution, path).headers.get("cache-control") == \
            get(legacy_server, distribution, path).headers.get("cache-control")
    assert get(server, distribution, rpm_path).headers["cache-control"] == \
        "public, max-age=0, must-revalidate"
    assert get(server, distribution, rpm_path).content == get(
        legacy_server, distribution, rpm_path).content


def test_metadata_of_a_guarded_distribution_is_private(server, legacy_server, guarded_rpm):
    """pulp_rpm's ``no-cache`` keeps clients revalidating, but lets a shared cache store
    the metadata of a guarded distribution and hand it to anyone: ours says
    ``no-cache, private`` on every answer (pulpcore-content: ``no-cache``,
    docs/differences.md). The packages, config.repo and listings say ``private`` too."""
    distribution, unit = guarded_rpm
    ours, theirs = (get(server, distribution, "repodata/repomd.xml", LET_IN),
                    get(legacy_server, distribution, "repodata/repomd.xml", LET_IN))
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content and ours.content.startswith(b"<?xml")
    assert (ours.headers["cache-control"], theirs.headers["cache-control"]) == (
        "no-cache, private", "no-cache")
    head = get(server, distribution, "repodata/repomd.xml", LET_IN, method="HEAD")
    assert (head.status_code, head.headers["cache-control"]) == (200, "no-cache, private")
    revalidated = get(server, distribution, "repodata/repomd.xml",
                      {**LET_IN, "If-None-Match": ours.headers["etag"]})
    assert (revalidated.status_code, revalidated.headers["cache-control"]) == (
        304, "no-cache, private")
    ranged = get(server, distribution, "repodata/repomd.xml", {**LET_IN, "Range": "bytes=0-4"})
    assert (ranged.status_code, ranged.content, ranged.headers["cache-control"]) == (
        206, b"<?xml", "no-cache, private")
    rpm_path = f"Packages/{unit.name[0]}/{unit.location_href}"
    package_answer = get(server, distribution, rpm_path, LET_IN)
    assert package_answer.status_code == 200
    assert package_answer.headers["cache-control"] == "max-age=0, must-revalidate, private"
    for path in ("config.repo", "repodata/", ""):
        answer = get(server, distribution, path, LET_IN)
        assert (answer.status_code, answer.headers.get("cache-control")) == (200, "private")
    refused = get(server, distribution, "repodata/repomd.xml")
    assert (refused.status_code, refused.headers.get("cache-control")) == (403, "private")


def test_guarded_metadata_stays_private_on_cache_hits(cached_server, guarded_rpm):
    distribution, _ = guarded_rpm
    answers = [get(cached_server, distribution, "repodata/repomd.xml", LET_IN)
               for _ in range(2)]
    assert [(a.status_code, a.headers.get("x-pulp-cache")) for a in answers] == [
        (200, "MISS"), (200, "HIT")]
    assert [a.headers["cache-control"] for a in answers] == ["no-cache, private"] * 2
    assert answers[0].content == answers[1].content
    revalidated = get(cached_server, distribution, "repodata/repomd.xml",
                      {**LET_IN, "If-None-Match": answers[0].headers["etag"]})
    assert (revalidated.status_code, revalidated.headers["cache-control"]) == (
        304, "no-cache, private")


def test_metadata_stays_no_cache_on_cache_hits(cached_server, rpm):
    distribution, _ = rpm
    answers = [get(cached_server, distribution, "repodata/repomd.xml") for _ in range(2)]
    assert [a.headers.get("x-pulp-cache") for a in answers] == ["MISS", "HIT"]
    assert [a.headers["cache-control"] for a in answers] == ["no-cache", "no-cache"]
    assert answers[0].content == answers[1].content


@pytest.mark.parametrize("guard", [False, True], ids=["unguarded", "guarded"])
def test_metadata_stays_no_cache_when_streamed_on_demand(cached_server, upstream, guard):
    """Metadata published on demand (its file only upstream): no-cache while streamed, once
    saved, and on the cache hit after the save; ``no-cache, private`` when guarded."""
    from pulp_rpm.app.models import RpmDistribution, RpmPublication, RpmRemote, RpmRepository

    u = unique_name()
    blob = f"<repomd>{u}</repomd>".encode()
    upstream.files[f"{u}/repomd.xml.asc"] = blob
    remote = RpmRemote.objects.create(name=f"rpm-od-{u}", url=upstream.url(f"{u}/"),
                                      policy="on_demand")
    unit = package(f"meta{u}", b"unused")
    on_demand = ContentArtifact.objects.create(content=unit, relative_path="repomd.xml.asc")
    RemoteArtifact.objects.create(content_artifact=on_demand, remote=remote,
                                  url=upstream.url(f"{u}/repomd.xml.asc"), size=len(blob),
                                  sha256=hashlib.sha256(blob).hexdigest())
    repo = RpmRepository.objects.create(name=f"rpm-od-{u}")
    with repo.new_version() as version:
        version.add_content(type(unit).objects.filter(pk=unit.pk))
    publication = RpmPublication(repository_version=version, checksum_type="sha256")
    publication.save()
    with publication:
        from pulpcore.app.models import PublishedArtifact

        PublishedArtifact.objects.create(publication=publication, content_artifact=on_demand,
                                         relative_path="repodata/repomd.xml.asc")
    distribution = RpmDistribution.objects.create(
        name=f"od-{u}", base_path=f"rpm-od-{u}", publication=publication,
        content_guard=header_guard() if guard else None)
    credentials = LET_IN if guard else {}
    expected = "no-cache, private" if guard else "no-cache"
    streamed = get(cached_server, distribution, "repodata/repomd.xml.asc", credentials)
    assert streamed.status_code == 200 and streamed.content == blob
    assert streamed.headers["cache-control"] == expected
    assert wait_for(lambda: ContentArtifact.objects.get(pk=on_demand.pk).artifact_id)
    after = [get(cached_server, distribution, "repodata/repomd.xml.asc", credentials)
             for _ in range(2)]
    assert [(a.status_code, a.headers["cache-control"]) for a in after] == [
        (200, expected)] * 2
    assert after[-1].headers["x-pulp-cache"] == "HIT" and after[-1].content == blob
    assert upstream.hits[f"{u}/repomd.xml.asc"] == 1
    assert os.path.basename("repodata/repomd.xml.asc") in settings.NOCACHE_LIST
