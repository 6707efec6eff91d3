"""What the upstream declares, held against what it sends (pulp_content_asgi/plugin/
upstream.py, ondemand/declared.py): Maven's ``.sha1`` sidecar for pull-through files,
an npm registry's version document for on-demand tarballs, an OSTree object's name for
on-demand objects. Real upstream (tests/upstream.py), real server, the plugins' models;
``curl`` as the client where a cut must show."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import subprocess

import httpx
import pytest
from django.conf import settings
from pulpcore.app.models import Artifact, ContentArtifact, RemoteArtifact

from tests.helpers import unique_name, wait_for
from tests.upstream import Behaviour


def get(server, dist, path: str) -> httpx.Response:
    return httpx.get(server.url(f"/pulp/content/{dist.base_path}/{path}"), timeout=60)


def curl(server, dist, path: str, output) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-o", str(output),
                           server.url(f"/pulp/content/{dist.base_path}/{path}")],
                          capture_output=True, timeout=120)


def no_artifact(blob: bytes) -> bool:
    return not Artifact.objects.filter(sha256=hashlib.sha256(blob).hexdigest()).exists()


def tampered(blob: bytes) -> bytes:
    """Same size, one byte flipped in the middle (clients/run.py's tampering)."""
    data = bytearray(blob)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


def working_files() -> set[str]:
    return set(glob.glob(os.path.join(settings.WORKING_DIRECTORY, "*")))


# --- Maven: pull-through files and their .sha1 sidecar ----------------------------------

def maven(upstream, max_retries: int = 0):
    """A pull-through Maven distribution on ``upstream`` and a jar's path in it."""
    from pulp_maven.app.models import MavenDistribution, MavenRemote, MavenRepository

    u = unique_name()
    remote = MavenRemote.objects.create(name=f"mvn-{u}", url=upstream.url(f"{u}/"),
                                        policy="on_demand", max_retries=max_retries)
    repo = MavenRepository.objects.create(name=f"mvn-{u}")
    dist = MavenDistribution.objects.create(name=f"mvn-{u}", base_path=f"mvn-{u}",
                                            remote=remote, repository=repo)
    jar = f"org/acme/tool{u}/1.0/tool{u}-1.0.jar"
    return dist, u, jar


def saved_jar(u: str) -> bool:
    from pulp_maven.app.models import MavenArtifact

    return MavenArtifact.objects.filter(artifact_id=f"tool{u}",
                                        contentartifact__artifact__isnull=False).exists()


def test_maven_jar_matching_its_sha1_is_saved_and_the_sidecar_asked_once(server, upstream):
    dist, u, jar = maven(upstream)
    blob = os.urandom(300 * 1024)
    upstream.files[f"{u}/{jar}"] = blob
    upstream.files[f"{u}/{jar}.sha1"] = f"{hashlib.sha1(blob).hexdigest()}  x.jar\n".encode()
    assert get(server, dist, jar).content == blob
    assert wait_for(lambda: saved_jar(u))
    assert get(server, dist, jar).content == blob  # from storage: nothing asked upstream
    assert upstream.hits[f"{u}/{jar}"] == 1
    assert upstream.hits[f"{u}/{jar}.sha1"] == 1


def test_maven_jar_not_matching_its_sha1_is_cut_and_not_saved(server, upstream, tmp_path):
    dist, u, jar = maven(upstream)
    blob = os.urandom(100 * 1024)
    upstream.files[f"{u}/{jar}"] = tampered(blob)
    upstream.files[f"{u}/{jar}.sha1"] = hashlib.sha1(blob).hexdigest().encode()
    before = working_files()
    run = curl(server, dist, jar, tmp_path / "out.jar")
    # The whole file is under the held tail: headers, then a cut, no byte of it.
    assert run.returncode == 18, run.stderr
    assert not (tmp_path / "out.jar").exists()
    assert not saved_jar(u)
    assert no_artifact(tampered(blob))
    assert not RemoteArtifact.objects.filter(url=upstream.url(f"{u}/{jar}")).exists()
    # Nothing is cooled down (pull-through has no remote artifact to mark): the next
    # request asks again and is refused again; the upstream repaired, it is saved.
    assert curl(server, dist, jar, tmp_path / "again.jar").returncode == 18
    upstream.files[f"{u}/{jar}"] = blob
    assert get(server, dist, jar).content == blob
    assert wait_for(lambda: saved_jar(u))
    assert wait_for(lambda: not (working_files() - before), timeout=15)


def test_maven_jar_without_a_sidecar_is_saved_as_before(server, upstream):
    dist, u, jar = maven(upstream)
    blob = b"a jar nobody checksums"
    upstream.files[f"{u}/{jar}"] = blob
    assert get(server, dist, jar).content == blob
    assert wait_for(lambda: saved_jar(u))
    assert upstream.hits[f"{u}/{jar}.sha1"] == 1  # asked, answered 404


@pytest.mark.parametrize("sidecar", [Behaviour(status=503), "not a checksum <html>"])
def test_maven_sidecar_that_fails_or_is_unreadable_fetches_nothing(server, upstream, sidecar):
    """Conservative: what the upstream declares could not be learned, so the file is not
    fetched from it at all (pull-through: 502 naming the sidecar), and nothing is saved."""
    dist, u, jar = maven(upstream)
    upstream.files[f"{u}/{jar}"] = b"jar bytes"
    if isinstance(sidecar, Behaviour):
        upstream.files[f"{u}/{jar}.sha1"] = b"0" * 40
        upstream.behaviour[f"{u}/{jar}.sha1"] = sidecar
    else:
        upstream.files[f"{u}/{jar}.sha1"] = sidecar.encode()
    answer = get(server, dist, jar)
    assert answer.status_code == 502
    assert f"{jar}.sha1" in answer.text
    assert upstream.hits[f"{u}/{jar}"] == 0
    assert not saved_jar(u)
    # The sidecar back: the next request fetches and saves the jar.
    upstream.behaviour.pop(f"{u}/{jar}.sha1", None)
    upstream.files[f"{u}/{jar}.sha1"] = hashlib.sha1(b"jar bytes").hexdigest().encode()
    assert get(server, dist, jar).content == b"jar bytes"
    assert wait_for(lambda: saved_jar(u))


def test_maven_metadata_is_streamed_without_a_sidecar_request(server, upstream):
    dist, u, _ = maven(upstream)
    meta = f"org/acme/tool{u}/maven-metadata.xml"
    upstream.files[f"{u}/{meta}"] = b"<metadata/>"
    assert get(server, dist, meta).content == b"<metadata/>"
    assert upstream.hits[f"{u}/{meta}.sha1"] == 0  # streamed, never saved: nothing to hold


# --- npm: on-demand tarballs and the registry's version document ------------------------

def npm_on_demand(upstream, tarball: bytes, document: dict | None, max_retries: int = 3):
    """An npm repository with one on-demand package (no digest, as pulp_npm's sync makes
    it) whose tarball and version document are on ``upstream``."""
    from pulp_npm.app.models import NpmDistribution, NpmRemote, NpmRepository, Package

    u = unique_name()
    name, version = f"hello-{u}", "1.0.0"
    prefix = f"{u}/"
    path = f"{name}/-/{name}-{version}.tgz"
    upstream.files[prefix + path] = tarball
    if document is not None:
        upstream.files[f"{prefix}{name}/{version}"] = json.dumps(
            {"name": name, "version": version, **document}).encode()
    remote = NpmRemote.objects.create(name=f"npm-{u}", url=upstream.url(f"{prefix}{name}/"
                                                                        f"{version}"),
                                      policy="on_demand", max_retries=max_retries)
    package = Package.objects.create(name=name, version=version)
    ca = ContentArtifact.objects.create(content=package, relative_path=path)
    RemoteArtifact.objects.create(content_artifact=ca, remote=remote,
                                  url=upstream.url(prefix + path))
    repo = NpmRepository.objects.create(name=f"npm-{u}")
    with repo.new_version() as new:
        new.add_content(Package.objects.filter(pk=package.pk))
    dist = NpmDistribution.objects.create(name=f"npm-{u}", base_path=f"npm-{u}",
                                          repository=repo)
    return dist, ca, prefix, path


def integrity(blob: bytes) -> dict:
    return {"dist": {"integrity": "sha512-" + base64.b64encode(
        hashlib.sha512(blob).digest()).decode(), "shasum": hashlib.sha1(blob).hexdigest()}}


def stored(ca) -> bool:
    return ContentArtifact.objects.filter(pk=ca.pk, artifact__isnull=False).exists()


def test_npm_tarball_matching_its_integrity_is_saved(server, upstream):
    blob = os.urandom(2000)
    dist, ca, prefix, path = npm_on_demand(upstream, blob, integrity(blob))
    assert get(server, dist, path).content == blob
    assert wait_for(lambda: stored(ca))
    assert get(server, dist, path).content == blob
    assert upstream.hits[prefix + path] == 1
    assert upstream.hits[f"{prefix}{path.split('/-/')[0]}/1.0.0"] == 1


@pytest.mark.parametrize("declared", ["integrity", "shasum"])
def test_npm_tarball_not_matching_is_cut_marked_failed_and_not_saved(server, upstream,
                                                                     tmp_path, declared):
    blob = os.urandom(3000)
    document = integrity(blob)
    if declared == "shasum":
        del document["dist"]["integrity"]
    dist, ca, _, path = npm_on_demand(upstream, tampered(blob), document)
    run = curl(server, dist, path, tmp_path / "out.tgz")
    assert run.returncode == 18, run.stderr
    assert not (tmp_path / "out.tgz").exists()
    assert wait_for(lambda: RemoteArtifact.objects.get(content_artifact=ca).failed_at)
    assert not stored(ca)
    assert no_artifact(tampered(blob))
    assert get(server, dist, path).status_code == 404  # the remote artifact cools down


def test_npm_version_document_failing_fetches_no_tarball_and_cools_nothing(server, upstream):
    """On-demand content whose declaration cannot be learned: 404 like any upstream
    failure, the tarball never asked, the remote artifact not cooled down."""
    blob = b"tarball behind a failing registry"
    dist, ca, prefix, path = npm_on_demand(upstream, blob, integrity(blob), max_retries=0)
    document = f"{prefix}{path.split('/-/')[0]}/1.0.0"
    upstream.behaviour[document] = Behaviour(status=500)
    assert get(server, dist, path).status_code == 404
    assert upstream.hits[prefix + path] == 0
    assert RemoteArtifact.objects.get(content_artifact=ca).failed_at is None
    upstream.behaviour.pop(document)
    assert get(server, dist, path).content == blob
    assert wait_for(lambda: stored(ca))


def test_npm_tarball_without_a_version_document_is_saved_as_before(server, upstream):
    blob = b"no registry document for this one"
    dist, ca, _, path = npm_on_demand(upstream, blob, None)
    assert get(server, dist, path).content == blob
    assert wait_for(lambda: stored(ca))


# --- OSTree: on-demand objects and their names ------------------------------------------

@pytest.fixture
def ostree_repo(tmp_path):
    """A fresh archive repository made with the ostree command: its objects by type. A
    random file and owner make every object new (the database keeps one unit per
    checksum)."""
    root = tmp_path / "ostree"
    tree = root / "tree" / "usr" / "share" / "hello"
    tree.mkdir(parents=True)
    (tree / "README").write_bytes(os.urandom(5000))
    repo = root / "repo"
    subprocess.run(["ostree", f"--repo={repo}", "init", "--mode=archive"], check=True)
    owner = str(1000 + int.from_bytes(os.urandom(3), "big"))
    subprocess.run(["ostree", f"--repo={repo}", "commit", "--branch=main",
                    f"--owner-uid={owner}", f"--owner-gid={owner}",
                    f"--tree=dir={root / 'tree'}", "--subject=test"], check=True,
                   capture_output=True)
    objects = {}
    for path in glob.glob(str(repo / "objects" / "*" / "*")):
        relative = os.path.relpath(path, repo)
        with open(path, "rb") as source:
            objects.setdefault(relative.rsplit(".", 1)[1], []).append((relative, source.read()))
    return objects


def ostree_on_demand(upstream, objects: list[tuple[str, bytes]]):
    from pulp_ostree.app.models import (
        OstreeDistribution,
        OstreeObject,
        OstreeObjectType,
        OstreeRemote,
        OstreeRepository,
    )

    kinds = {"filez": OstreeObjectType.OSTREE_OBJECT_TYPE_FILE,
             "dirtree": OstreeObjectType.OSTREE_OBJECT_TYPE_DIR_TREE,
             "dirmeta": OstreeObjectType.OSTREE_OBJECT_TYPE_DIR_META}
    u = unique_name()
    remote = OstreeRemote.objects.create(name=f"ost-{u}", url=upstream.url(f"{u}/"),
                                         policy="on_demand")
    units, cas = [], {}
    for relative, blob in objects:
        upstream.files[f"{u}/{relative}"] = blob
        checksum = relative.split("/")[1] + relative.split("/")[2].split(".")[0]
        unit = OstreeObject.objects.create(typ=kinds[relative.rsplit(".", 1)[1]],
                                           checksum=checksum, relative_path=relative)
        cas[relative] = ContentArtifact.objects.create(content=unit, relative_path=relative)
        RemoteArtifact.objects.create(content_artifact=cas[relative], remote=remote,
                                      url=upstream.url(f"{u}/{relative}"))
        units.append(unit.pk)
    repo = OstreeRepository.objects.create(name=f"ost-{u}")
    with repo.new_version() as new:
        new.add_content(OstreeObject.objects.filter(pk__in=units))
    dist = OstreeDistribution.objects.create(name=f"ost-{u}", base_path=f"ost-{u}",
                                             repository=repo)
    return dist, cas, u


def test_ostree_objects_matching_their_names_are_saved(server, upstream, ostree_repo):
    chosen = ostree_repo["filez"][:1] + ostree_repo["dirtree"][:1] + ostree_repo["dirmeta"]
    dist, cas, _ = ostree_on_demand(upstream, chosen)
    for relative, blob in chosen:
        assert get(server, dist, relative).content == blob
        assert wait_for(lambda ca=cas[relative]: stored(ca)), relative


@pytest.mark.parametrize("kind", ["filez", "dirtree"])
def test_ostree_object_not_matching_its_name_is_cut_and_not_saved(server, upstream,
                                                                 ostree_repo, tmp_path, kind):
    relative, blob = ostree_repo[kind][0]
    dist, cas, u = ostree_on_demand(upstream, [(relative, blob)])
    upstream.files[f"{u}/{relative}"] = tampered(blob)
    run = curl(server, dist, relative, tmp_path / "object")
    assert run.returncode == 18, run.stderr
    assert not (tmp_path / "object").exists()
    assert wait_for(lambda: RemoteArtifact.objects.get(content_artifact=cas[relative])
                    .failed_at)
    assert not stored(cas[relative])
    assert no_artifact(tampered(blob))
    assert upstream.hits[f"{u}/{relative}"] == 1  # the name is the declaration: no request


def test_npm_packument_carries_the_integrity_the_registry_declares(server, upstream):
    """npm writes the packument's ``dist.integrity`` into package-lock.json and checks the
    tarball against it: for a tarball Pulp has no digest for, it is the registry's."""
    blob = os.urandom(2000)
    dist, ca, prefix, path = npm_on_demand(upstream, blob, integrity(blob))
    name = path.split("/-/")[0]
    assert httpx.head(server.url(f"/pulp/content/{dist.base_path}/{name}")).status_code == 200
    assert upstream.hits[f"{prefix}{name}/1.0.0"] == 0  # HEAD produces no document
    answer = get(server, dist, name)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    (entry,) = answer.json()["versions"].values()
    assert entry["dist"]["integrity"] == integrity(blob)["dist"]["integrity"]
    assert upstream.hits[f"{prefix}{name}/1.0.0"] == 1
    assert not stored(ca)  # the packument fetched no tarball
    assert get(server, dist, path).content == blob
    assert wait_for(lambda: stored(ca))
    # Stored now: its digest is Pulp's, and the registry is not asked again.
    assert get(server, dist, name).json() == answer.json()
    assert upstream.hits[f"{prefix}{name}/1.0.0"] == 2  # once more, for the tarball


def test_npm_packument_without_a_version_document_has_no_integrity(server, upstream):
    dist, _, _, path = npm_on_demand(upstream, b"tarball", None)
    (entry,) = get(server, dist, path.split("/-/")[0]).json()["versions"].values()
    assert "integrity" not in entry["dist"]
