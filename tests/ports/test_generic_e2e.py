"""pulp_maven, pulp_gem, pulp_ansible and pulp_ostree through the convenience handlers
their ports map them to (pulp_content_asgi/builtin/{maven,gem,ansible,ostree}.py), on
content made by the plugins' own models and constructors, compared with pulpcore-content;
and, for every port, that the installed plugin is still the one the port was written for."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
import tempfile
from collections.abc import Iterator

import httpx
from django.conf import settings
from pulpcore.app.models import ContentArtifact, Distribution, RemoteArtifact

from pulp_content_asgi.builtin import PORTS
from pulp_content_asgi.devtools import data
from pulp_content_asgi.plugin import (
    DistributionHandler,
    RepositoryVersionHandler,
    handler_for,
    registry,
)
from pulp_content_asgi.plugin.handlers import NOT_POINTING
from tests.helpers import ROOT, run_task, unique_name, wait_for

OWN = {"date", "server", "correlation-id", "content-length", "last-modified", "etag"}

#: The releases each port was written and tested against (docs/plugins.md). A plugin
#: release outside them fails here: re-read its hooks, adjust the port, then this table.
WRITTEN_FOR = {"rpm": "3.39.", "python": "3.36.", "npm": "0.10.", "deb": "3.11.",
               "maven": "0.36.", "gem": "0.8.", "ansible": "0.30.", "ostree": "2.6.",
               "file": "3.123."}


def test_each_installed_plugin_is_the_release_its_port_was_written_for():
    from pulpcore.app.apps import pulp_plugin_configs

    installed = {c.label: c for c in pulp_plugin_configs() if c.label in PORTS}
    assert set(WRITTEN_FOR) <= set(PORTS)
    for label, prefix in WRITTEN_FOR.items():
        assert label in installed, f"{label} is not installed (make venv)"
        assert installed[label].version.startswith(prefix), (
            f"{label} {installed[label].version}: its port was written for {prefix}x; re-read "
            "the plugin's hooks (docs/plugins.md) before changing this table")


def test_ports_that_skip_hooks_only_skip_hooks_the_plugin_leaves_alone():
    """RepositoryVersionHandler calls no ``content_handler``, serves no publication and no
    pull-through: the plugins mapped to it must not need them."""
    from django.apps import apps

    for label, module in PORTS.items():
        for model_label, _ in __import__(module, fromlist=["HANDLERS"]).HANDLERS.items():
            model = apps.get_model(model_label)
            handler = handler_for(model)
            if not isinstance(handler, RepositoryVersionHandler) \
                    or isinstance(handler, DistributionHandler):
                continue
            assert model.content_handler is Distribution.content_handler, model_label
            assert model.get_fallback_ca is Distribution.get_fallback_ca, model_label
            assert not model.SERVE_FROM_PUBLICATION, model_label
            repositories = apps.get_app_config(label).get_models()
            assert not any(getattr(m, "PULL_THROUGH_SUPPORTED", False) for m in repositories)


def test_every_plugin_is_served_by_its_port():
    by_label = {s.label: s for s in registry.supported()}
    for label in WRITTEN_FOR:
        assert by_label[label].mode == "builtin", label
        assert by_label[label].source == PORTS[label]
    from pulp_gem.app.models import GemDistribution
    from pulp_maven.app.models import MavenDistribution
    from pulp_ostree.app.models import OstreeDistribution

    from pulp_content_asgi.builtin.maven import MavenHandler
    from pulp_content_asgi.builtin.ostree import OstreeHandler

    assert type(handler_for(MavenDistribution)) is MavenHandler
    assert type(handler_for(GemDistribution)) is DistributionHandler
    assert type(handler_for(OstreeDistribution)) is OstreeHandler


def get(server, dist, path: str) -> httpx.Response:
    return httpx.get(server.url(f"/pulp/content/{dist.base_path}/{path}"), timeout=60)


def same(server, legacy_server, dist, path: str, status: int = 200) -> httpx.Response:
    ours, theirs = get(server, dist, path), get(legacy_server, dist, path)
    assert (ours.status_code, theirs.status_code) == (status, status), path
    if status == 200 and not ours.headers["content-type"].startswith("text/html"):
        assert ours.content == theirs.content, path
    headers = {k: v for k, v in ours.headers.items() if k not in OWN}
    assert headers == {k: v for k, v in theirs.headers.items() if k not in OWN}, path
    return ours


@contextlib.contextmanager
def in_directory(path: str) -> Iterator[None]:
    cwd = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(cwd)


# --- pulp_maven --------------------------------------------------------------------------

def test_maven_hosted_repository(server, legacy_server):
    from pulp_maven.app.models import MavenArtifact, MavenDistribution, MavenRepository

    u = unique_name()
    jar = f"com/example/lib{u}/1.0/lib{u}-1.0.jar"
    unit = MavenArtifact.init_from_artifact_and_relative_path(None, jar)
    unit.save()
    ContentArtifact.objects.create(content=unit, relative_path=jar,
                                   artifact=data.artifact_from_bytes(f"jar {u}".encode()))
    repo = MavenRepository.objects.create(name=f"mvn-{u}")
    with repo.new_version() as version:
        version.add_content(MavenArtifact.objects.filter(pk=unit.pk))
    dist = MavenDistribution.objects.create(name=f"mvn-{u}", base_path=f"mvn-{u}",
                                            repository=repo)
    assert same(server, legacy_server, dist, jar).content == f"jar {u}".encode()
    assert f"lib{u}/" in same(server, legacy_server, dist, "com/example/").text
    same(server, legacy_server, dist, "com/example", status=301)
    same(server, legacy_server, dist, "com/example/missing.jar", status=404)


def test_maven_pull_through_saves_artifacts_and_streams_metadata(server, upstream):
    from pulp_maven.app.models import (
        MavenArtifact,
        MavenDistribution,
        MavenMetadata,
        MavenRemote,
        MavenRepository,
    )

    u = unique_name()
    jar = f"org/acme/tool{u}/2.0/tool{u}-2.0.jar"
    meta = f"org/acme/tool{u}/maven-metadata.xml"
    upstream.files[f"{u}/{jar}"] = b"upstream jar"
    upstream.files[f"{u}/{meta}"] = b"<metadata/>"
    remote = MavenRemote.objects.create(name=f"mvn-pt-{u}", url=upstream.url(f"{u}/"),
                                        policy="on_demand")
    repo = MavenRepository.objects.create(name=f"mvn-pt-{u}")
    dist = MavenDistribution.objects.create(name=f"mvn-pt-{u}", base_path=f"mvn-pt-{u}",
                                            remote=remote, repository=repo)
    assert get(server, dist, jar).content == b"upstream jar"
    assert wait_for(lambda: MavenArtifact.objects.filter(
        artifact_id=f"tool{u}", version="2.0", contentartifact__artifact__isnull=False).exists())
    assert get(server, dist, jar).content == b"upstream jar"
    assert upstream.hits[f"{u}/{jar}"] == 1
    for _ in range(2):
        answer = get(server, dist, meta)
        assert answer.status_code == 200 and answer.content == b"<metadata/>"
    assert wait_for(lambda: upstream.hits[f"{u}/{meta}"] == 2)
    assert not RemoteArtifact.objects.filter(remote=remote, url__endswith=meta).exists()
    assert not MavenMetadata.objects.filter(contentartifact__relative_path=meta).exists()


# --- pulp_gem ----------------------------------------------------------------------------

GEMSPEC = """--- !ruby/object:Gem::Specification
name: {name}
version: !ruby/object:Gem::Version
  version: {version}
platform: ruby
authors:
- Tester
bindir: bin
cert_chain: []
date: 2024-01-01 00:00:00.000000000 Z
dependencies: []
description: A gem for tests
executables: []
extensions: []
extra_rdoc_files: []
files:
- lib/{name}.rb
licenses: []
metadata: {{}}
rdoc_options: []
require_paths:
- lib
required_ruby_version: !ruby/object:Gem::Requirement
  requirements:
  - - ">="
    - !ruby/object:Gem::Version
      version: '0'
required_rubygems_version: !ruby/object:Gem::Requirement
  requirements:
  - - ">="
    - !ruby/object:Gem::Version
      version: '0'
requirements: []
rubygems_version: 3.3.15
specification_version: 4
summary: {name}
test_files: []
"""


def gem(name: str, version: str) -> bytes:
    """A .gem file as ``gem build`` makes it: a tar of metadata.gz and data.tar.gz."""
    def add(tar: tarfile.TarFile, member: str, blob: bytes) -> None:
        info = tarfile.TarInfo(member)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))

    files = io.BytesIO()
    with tarfile.open(fileobj=files, mode="w:gz") as inner:
        add(inner, f"lib/{name}.rb", b"puts 'hello'\n")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        add(tar, "metadata.gz", gzip.compress(
            GEMSPEC.format(name=name, version=version).encode(), mtime=0))
        add(tar, "data.tar.gz", files.getvalue())
    return out.getvalue()


def files_holding(directory: str, blob: bytes) -> set[str]:
    found = set()
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.path.getsize(path) == len(blob):
            with open(path, "rb") as candidate:
                if candidate.read() == blob:
                    found.add(name)
    return found


def test_gem_pull_through_writes_its_temporary_file_in_the_working_directory(server,
                                                                             upstream):
    """pulp_gem's constructor writes the gemspec to a NamedTemporaryFile(dir="."): the app
    runs in WORKING_DIRECTORY, so it lands there (and not where the server was started)."""
    from pulp_gem.app.models import GemContent, GemDistribution, GemRemote
    from pulp_gem.specs import analyse_gem

    u = unique_name()
    name = f"hello{u}"
    blob = gem(name, "0.1.0")
    _, spec = analyse_gem(io.BytesIO(blob))
    upstream.files[f"{u}/gems/{name}-0.1.0.gem"] = blob
    upstream.files[f"{u}/quick/Marshal.4.8/{name}-0.1.0.gemspec.rz"] = spec
    remote = GemRemote.objects.create(name=f"gem-{u}", url=upstream.url(f"{u}/"),
                                      policy="on_demand")
    dist = GemDistribution.objects.create(name=f"gem-{u}", base_path=f"gem-{u}", remote=remote)
    before = files_holding(settings.WORKING_DIRECTORY, spec)
    pulled = get(server, dist, f"gems/{name}-0.1.0.gem")
    assert pulled.status_code == 200 and pulled.content == blob
    assert wait_for(lambda: GemContent.objects.filter(name=name, version="0.1.0").exists())
    unit = GemContent.objects.get(name=name, version="0.1.0")
    assert len(files_holding(settings.WORKING_DIRECTORY, spec) - before) == 1
    assert not files_holding(ROOT, spec)
    # The gemspec became on-demand content of the same gem: fetched from the remote.
    assert RemoteArtifact.objects.filter(
        content_artifact__content=unit, remote=remote,
        url=upstream.url(f"{u}/quick/Marshal.4.8/{name}-0.1.0.gemspec.rz")).exists()
    # Metadata (compact index, specs) is streamed, never saved.
    upstream.files[f"{u}/info/{name}"] = b"---\n0.1.0 |checksum:x\n"
    for _ in range(2):
        assert get(server, dist, f"info/{name}").content == b"---\n0.1.0 |checksum:x\n"
    assert wait_for(lambda: upstream.hits[f"{u}/info/{name}"] == 2)


def test_gem_publication(server, legacy_server):
    from pulp_gem.app.models import GemContent, GemDistribution, GemPublication, GemRepository
    from pulp_gem.app.tasks.publishing import publish

    u = unique_name()
    name = f"pub{u}"
    blob = gem(name, "1.2.0")
    artifact = data.artifact_from_bytes(blob)
    with tempfile.TemporaryDirectory() as scratch, in_directory(scratch):
        unit, artifacts = GemContent.init_from_artifact_and_relative_path(
            artifact, f"gems/{name}-1.2.0.gem")
    from pulp_gem.specs import analyse_gem

    artifacts[unit.gemspec_path] = data.artifact_from_bytes(analyse_gem(io.BytesIO(blob))[1])
    unit.save()
    for relative_path, stored in artifacts.items():
        ContentArtifact.objects.create(content=unit, artifact=stored,
                                       relative_path=relative_path)
    repo = GemRepository.objects.create(name=f"gem-pub-{u}")
    with repo.new_version() as version:
        version.add_content(GemContent.objects.filter(pk=unit.pk))
    run_task(publish, version.pk)
    dist = GemDistribution.objects.create(
        name=f"gem-pub-{u}", base_path=f"gem-pub-{u}",
        publication=GemPublication.objects.get(repository_version=version))
    assert same(server, legacy_server, dist, f"gems/{name}-1.2.0.gem").content == blob
    for path in ("specs.4.8.gz", "latest_specs.4.8.gz", "names", "versions", f"info/{name}",
                 f"quick/Marshal.4.8/{name}-1.2.0.gemspec.rz"):
        same(server, legacy_server, dist, path)
    assert name.encode() in get(server, dist, "names").content


# --- pulp_ansible ------------------------------------------------------------------------

def test_ansible_repository_version(server, legacy_server):
    from pulp_ansible.app.models import AnsibleDistribution, AnsibleRepository, Role

    u = unique_name()
    role = Role.objects.create(namespace=f"ns{u}", name="web", version="1.0.0")
    path = f"ns{u}/web/1.0.0.tar.gz"
    ContentArtifact.objects.create(content=role, relative_path=path,
                                   artifact=data.artifact_from_bytes(f"role {u}".encode()))
    repo = AnsibleRepository.objects.create(name=f"ans-{u}")
    with repo.new_version() as version:
        version.add_content(Role.objects.filter(pk=role.pk))
    dist = AnsibleDistribution.objects.create(name=f"ans-{u}", base_path=f"ans-{u}",
                                              repository=repo)
    assert same(server, legacy_server, dist, path).content == f"role {u}".encode()
    assert "web/" in same(server, legacy_server, dist, f"ns{u}/").text
    same(server, legacy_server, dist, f"ns{u}/web", status=301)
    same(server, legacy_server, dist, "nothing.tar.gz", status=404)
    empty = AnsibleDistribution.objects.create(name=f"ans-none-{u}", base_path=f"ans-none-{u}")
    assert same(server, legacy_server, empty, "x.tar.gz", status=404).text == \
        f"404: {NOT_POINTING}"


# --- pulp_ostree -------------------------------------------------------------------------

def test_ostree_repository_version(server, legacy_server):
    from pulp_ostree.app.models import (
        OstreeConfig,
        OstreeDistribution,
        OstreeObject,
        OstreeObjectType,
        OstreeRepository,
    )

    u = unique_name()
    config = b"[core]\nrepo_version=1\nmode=archive-z2\n"
    config_artifact = data.artifact_from_bytes(config + u.encode())
    units = [OstreeConfig.objects.create(sha256=config_artifact.sha256, relative_path="config")]
    ContentArtifact.objects.create(content=units[0], relative_path="config",
                                   artifact=config_artifact)
    checksum = (u * 7)[:64]
    object_path = f"objects/{checksum[:2]}/{checksum[2:]}.dirtree"
    units.append(OstreeObject.objects.create(typ=OstreeObjectType.OSTREE_OBJECT_TYPE_DIR_TREE,
                                             checksum=checksum, relative_path=object_path))
    ContentArtifact.objects.create(content=units[1], relative_path=object_path,
                                   artifact=data.artifact_from_bytes(f"tree {u}".encode()))
    repo = OstreeRepository.objects.create(name=f"ost-{u}")
    with repo.new_version() as version:
        for unit in units:
            version.add_content(type(unit).objects.filter(pk=unit.pk))
    dist = OstreeDistribution.objects.create(name=f"ost-{u}", base_path=f"ost-{u}",
                                             repository=repo)
    assert same(server, legacy_server, dist, "config").content == config + u.encode()
    assert same(server, legacy_server, dist, object_path).content == f"tree {u}".encode()
    assert "objects/" in same(server, legacy_server, dist, "").text
    same(server, legacy_server, dist, "refs/heads/main", status=404)
