"""pulp_deb through its port (pulp_content_asgi/builtin/deb.py): files of the
distribution's recent publications (pulp_deb's grace period), on repositories built with
pulp_deb's models and published by pulp_deb's publish task, compared with pulpcore-content
running pulp_deb's hook."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pulpcore.app.models import ContentArtifact
from pulpcore.app.models import DistributedPublication as CoreDistributedPublication

from pulp_content_asgi.builtin.deb import recent_published
from pulp_content_asgi.devtools import data
from tests.helpers import run_task, unique_name

OWN = {"date", "server", "correlation-id", "content-length", "last-modified", "etag"}


def package(name: str, version: str):
    from pulp_deb.app.models import Package

    artifact = data.artifact_from_bytes(f"deb {name} {version}".encode())
    unit = Package.objects.create(package=name, version=version, architecture="all",
                                  maintainer="Tester <t@example.com>", description="test",
                                  relative_path=f"{name}_{version}_all.deb",
                                  sha256=artifact.sha256)
    ContentArtifact.objects.create(content=unit, artifact=artifact,
                                   relative_path=unit.relative_path)
    return unit


def publish(version):
    from pulp_deb.app.models import AptPublication
    from pulp_deb.app.tasks.publishing import publish as pulp_deb_publish

    run_task(pulp_deb_publish, version.pk, simple=True, structured=False)
    return AptPublication.objects.get(repository_version=version)


@pytest.fixture(scope="module")
def republished():
    """A distribution of a repository published twice: 1.0 replaced by 2.0."""
    from pulp_deb.app.models import AptDistribution, AptRepository, Package

    u = unique_name()
    name = f"hello{u}"
    old, new = package(name, "1.0"), package(name, "2.0")
    repo = AptRepository.objects.create(name=f"deb-{u}")
    distribution = AptDistribution.objects.create(name=f"deb-{u}", base_path=f"deb-{u}",
                                                  repository=repo)
    with repo.new_version() as first:
        first.add_content(Package.objects.filter(pk=old.pk))
    old_publication = publish(first)
    with repo.new_version() as second:
        second.add_content(Package.objects.filter(pk=new.pk))
        second.remove_content(Package.objects.filter(pk=old.pk))
    new_publication = publish(second)
    paths = {"old": f"pool/all/h/{name}/{name}_1.0_all.deb",
             "new": f"pool/all/h/{name}/{name}_2.0_all.deb"}
    return distribution, old_publication, new_publication, paths


def get(server, distribution, path: str) -> httpx.Response:
    return httpx.get(server.url(f"/pulp/content/{distribution.base_path}/{path}"), timeout=30)


def same(ours: httpx.Response, theirs: httpx.Response) -> None:
    assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content)
    mine = {k: v for k, v in ours.headers.items() if k not in OWN}
    assert mine == {k: v for k, v in theirs.headers.items() if k not in OWN}


def test_files_of_the_replaced_publication_are_still_served(server, legacy_server,
                                                            republished):
    distribution, _, _, paths = republished
    for key in ("old", "new", "dists/default/Release"):
        path = paths.get(key, key)
        ours, theirs = get(server, distribution, path), get(legacy_server, distribution, path)
        assert ours.status_code == 200, path
        same(ours, theirs)
    assert get(server, distribution, paths["old"]).content.startswith(b"deb hello")


def test_the_newest_publication_wins(server, legacy_server, republished):
    distribution, _, new_publication, _ = republished
    release = get(server, distribution, "dists/default/Release")
    current = new_publication.published_artifact.get(relative_path="dists/default/Release")
    assert release.content == current.content_artifact.artifact.file.read()
    same(release, get(legacy_server, distribution, "dists/default/Release"))


def test_expired_publications_are_not_served(server, legacy_server):
    from pulp_deb.app.models import AptDistribution, AptRepository, Package
    from pulp_deb.app.models.publication import DistributedPublication

    u = unique_name()
    old = package(f"gone{u}", "1.0")
    repo = AptRepository.objects.create(name=f"deb-x-{u}")
    distribution = AptDistribution.objects.create(name=f"deb-x-{u}", base_path=f"deb-x-{u}",
                                                  repository=repo)
    with repo.new_version() as first:
        first.add_content(Package.objects.filter(pk=old.pk))
    old_publication = publish(first)
    with repo.new_version() as second:
        second.remove_content(Package.objects.filter(pk=old.pk))
    publish(second)
    path = f"pool/all/g/gone{u}/gone{u}_1.0_all.deb"
    assert get(server, distribution, path).status_code == 200
    past = timezone.now() - timedelta(seconds=1)
    DistributedPublication.objects.filter(publication=old_publication).update(expires_at=past)
    # pulpcore's own grace period (get_fallback_ca) serves it too, from its own records.
    ours, theirs = get(server, distribution, path), get(legacy_server, distribution, path)
    assert ours.status_code == theirs.status_code == 200
    CoreDistributedPublication.objects.filter(publication=old_publication).update(
        expires_at=past)
    ours, theirs = get(server, distribution, path), get(legacy_server, distribution, path)
    assert ours.status_code == theirs.status_code == 404


def test_the_grace_period_lookup_is_one_query(republished):
    distribution, _, new_publication, paths = republished
    version = new_publication.repository_version
    with CaptureQueriesContext(connection) as queries:
        found = recent_published(distribution, paths["old"], version)
    assert len(queries) == 1
    assert found is not None and found.artifact.file.read().startswith(b"deb hello")
    # Not in the current version: pulpcore's Last-Modified heuristic falls back to the
    # version's date, which the handler uses when ``added_at`` is None.
    assert found.added_at is None
    current = recent_published(distribution, paths["new"], version)
    assert current is not None and current.added_at is not None
    assert recent_published(distribution, "no/such/file", version) is None
