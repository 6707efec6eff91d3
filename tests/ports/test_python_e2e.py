"""pulp_python through its port (pulp_content_asgi/builtin/python.py): the PyPI JSON API,
the simple pages (inline on object storage), pull-through with ``?redirect=``; packages
made by pulp_python's own pull-through constructor from real wheels and published by its
publish task, compared with pulpcore-content running pulp_python's hooks."""

from __future__ import annotations

import io
import json
import zipfile
from urllib.parse import quote

import httpx
import pytest
from pulpcore.app.models import ContentArtifact, Domain, RemoteArtifact, Task
from pulpcore.app.util import set_domain

from pulp_content_asgi.devtools import data
from tests.helpers import run_task, s3_domain, unique_name, wait_for
from tests.upstream import Behaviour

PROJECT = "Shelf_Reader"  # normalized: shelf-reader
OWN = {"date", "server", "correlation-id", "content-length"}


def wheel(name: str, version: str) -> tuple[str, bytes]:
    """A minimal valid wheel (PEP 427): its file name and bytes."""
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    files = {
        f"{name.lower()}/__init__.py": b"",
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                             f"Summary: {name} {version} for tests\n"
                             "Requires-Python: >=3.8\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path, blob in files.items():  # fixed dates: the same wheel, the same bytes
            archive.writestr(zipfile.ZipInfo(path, (2024, 1, 1, 0, 0, 0)), blob)
    return f"{dist}-py3-none-any.whl", out.getvalue()


def packages(*versions: str, name: str = PROJECT) -> list:
    """Packages made by pulp_python's own constructor (the one pull-through uses)."""
    from pulp_python.app.models import PythonPackageContent

    made = []
    for version in versions:
        filename, blob = wheel(name, version)
        artifact = data.artifact_from_bytes(blob)
        unit, artifacts = PythonPackageContent.init_from_artifact_and_relative_path(
            artifact, filename)
        unit.save()
        for relative_path, stored in artifacts.items():
            ContentArtifact.objects.create(content=unit, artifact=stored,
                                           relative_path=relative_path)
        made.append(unit)
    return made


def repository(units: list, domain: Domain | None = None):
    from pulp_python.app.models import PythonPackageContent, PythonRepository

    repo = PythonRepository.objects.create(name=f"py-{unique_name()}")
    with repo.new_version() as version:
        version.add_content(PythonPackageContent.objects.filter(pk__in=[u.pk for u in units]))
    return repo, version


def publish(version, domain: Domain | None = None):
    from pulp_python.app.models import PythonPublication
    from pulp_python.app.tasks.publish import publish as pulp_python_publish

    run_task(pulp_python_publish, version.pk, domain=domain)
    return PythonPublication.objects.get(repository_version=version)


def get(server, base_path: str, path: str, **kwargs) -> httpx.Response:
    return httpx.get(server.url(f"/pulp/content/{base_path}/{path}"), timeout=60, **kwargs)


@pytest.fixture(scope="module")
def published():
    from pulp_python.app.models import PythonDistribution

    _, version = repository(packages("0.1", "0.2"))
    u = unique_name()
    return PythonDistribution.objects.create(name=f"py-{u}", base_path=f"py-{u}",
                                             publication=publish(version))


@pytest.mark.parametrize("path", [f"pypi/{PROJECT}/json", "pypi/shelf-reader/json/",
                                  "pypi/shelf-reader/0.1/json", "pypi/nothing-here/json",
                                  "pypi/shelf-reader/9.9/json"])
def test_json_api_matches_pulpcore_content(server, legacy_server, published, path):
    ours, theirs = get(server, published.base_path, path), get(legacy_server,
                                                               published.base_path, path)
    assert ours.status_code == theirs.status_code
    if ours.status_code != 200:
        assert ours.status_code == 404
        return
    assert ours.content == theirs.content
    assert ours.headers["content-type"] == theirs.headers["content-type"] == \
        "application/json; charset=utf-8"
    assert ours.headers["x-pypi-last-serial"] == theirs.headers["x-pypi-last-serial"] == \
        "1000000000"
    document = json.loads(ours.content)
    # pulp_python's helper gives the newest release's info even for ``/0.1/json``.
    assert document["info"]["version"] == "0.2"
    assert sorted(document["releases"]) == ["0.1", "0.2"]
    assert document["urls"][0]["url"].endswith(
        f"/pulp/content/{published.base_path}/{document['urls'][0]['filename']}")


def test_json_api_of_a_repository_without_publication(server, legacy_server):
    """pulp_python's hook reads ``distribution.publication`` only (pulpcore-content: a bare
    500); the port serves the repository's latest version, as pulp_python's API does."""
    from pulp_python.app.models import PythonDistribution

    repo, _ = repository(packages("1.0", name="Unpublished"))
    u = unique_name()
    distribution = PythonDistribution.objects.create(name=f"py-{u}", base_path=f"py-{u}",
                                                     repository=repo)
    ours = get(server, distribution.base_path, "pypi/unpublished/json")
    assert ours.status_code == 200
    assert json.loads(ours.content)["info"]["version"] == "1.0"
    assert get(legacy_server, distribution.base_path, "pypi/unpublished/json").status_code \
        == 500


def test_simple_pages_and_files_on_filesystem(server, legacy_server, published):
    for path in ("simple/", "simple/shelf-reader/", "Shelf_Reader-0.1-py3-none-any.whl",
                 "Shelf_Reader-0.1-py3-none-any.whl.metadata"):
        ours, theirs = get(server, published.base_path, path), get(legacy_server,
                                                                   published.base_path, path)
        assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content), path
        assert ours.status_code == 200
        assert ours.headers["content-type"] == theirs.headers["content-type"], path
    page = get(server, published.base_path, "simple/shelf-reader/").text
    assert "Shelf_Reader-0.2-py3-none-any.whl" in page
    # Without the slash, the generic path adds it (the page links relatively).
    moved = get(server, published.base_path, "simple/shelf-reader")
    assert moved.status_code == 301
    assert moved.headers["location"].endswith("/simple/shelf-reader/")


def test_pull_through_follows_the_redirect_parameter(server, upstream):
    """pip's links from pulp_python's live simple index carry the upstream URL in
    ``?redirect=``: the package is streamed, saved through pulp_python's constructor and
    added to the repository; PEP 658 metadata is streamed, never saved."""
    from pulp_python.app.models import (
        PythonDistribution,
        PythonPackageContent,
        PythonRemote,
        PythonRepository,
    )

    u = unique_name()
    filename, blob = wheel(f"pulled{u}", "1.0")
    upstream.files[f"{u}/files/{filename}"] = blob
    metadata = b"Metadata-Version: 2.1\nName: pulled\nVersion: 1.0\n"
    upstream.files[f"{u}/files/{filename}.metadata"] = metadata
    remote = PythonRemote.objects.create(name=f"pt-{u}", url=upstream.url(f"{u}/"),
                                         policy="on_demand")
    repo = PythonRepository.objects.create(name=f"pt-{u}")
    distribution = PythonDistribution.objects.create(name=f"pt-{u}", base_path=f"pt-{u}",
                                                     remote=remote, repository=repo)
    source = upstream.url(f"{u}/files/{filename}")
    pulled = get(server, distribution.base_path, f"{filename}?redirect={quote(source)}")
    assert pulled.status_code == 200 and pulled.content == blob
    assert wait_for(lambda: RemoteArtifact.objects.filter(remote=remote, url=source).exists())
    unit = PythonPackageContent.objects.get(filename=filename)
    assert (unit.name, unit.version) == (f"pulled{u}", "1.0")
    # Added to the repository by a task (the content app only dispatches it).
    assert wait_for(lambda: any(
        str(unit.pk) in task.enc_kwargs["add_content_units"]
        for task in Task.objects.filter(name__endswith="add_and_remove", state="waiting",
                                        reserved_resources_record__contains=[
                                            f"prn:python.pythonrepository:{repo.pk}"])))
    again = get(server, distribution.base_path, f"{filename}?redirect={quote(source)}")
    assert again.content == blob and upstream.hits[f"{u}/files/{filename}"] == 1
    # PEP 658: the package's metadata was saved with it (pulp_python's constructor).
    known = get(server, distribution.base_path, f"{filename}.metadata?redirect={quote(source)}")
    assert known.status_code == 200 and known.content.startswith(b"Metadata-Version: 2.1")
    assert upstream.hits[f"{u}/files/{filename}.metadata"] == 0
    # The metadata of a package not pulled yet is streamed each time, never saved.
    other, _ = wheel(f"other{u}", "2.0")
    upstream.files[f"{u}/files/{other}.metadata"] = metadata
    elsewhere = upstream.url(f"{u}/files/{other}")
    for _ in range(2):
        streamed = get(server, distribution.base_path,
                       f"{other}.metadata?redirect={quote(elsewhere)}")
        assert streamed.status_code == 200 and streamed.content == metadata
    assert wait_for(lambda: upstream.hits[f"{u}/files/{other}.metadata"] == 2)
    assert not RemoteArtifact.objects.filter(url=f"{elsewhere}.metadata").exists()


@pytest.fixture(scope="module")
def s3_python(s3):
    """A redirecting S3 domain holding a published Python repository."""
    from pulp_python.app.models import PythonDistribution

    domain = s3_domain(s3, redirect=True)
    default = Domain.objects.get(name="default")
    set_domain(domain)
    try:
        _, version = repository(packages("3.0", name="Cloudy"))
        publication = publish(version, domain=domain)
        u = unique_name()
        distribution = PythonDistribution.objects.create(
            name=f"s3-{u}", base_path=f"s3-{u}", publication=publication, pulp_domain=domain)
    finally:
        set_domain(default)
    return domain, distribution


def test_simple_pages_are_inline_on_object_storage(domain_server, s3_python):
    """pulp_python#413: the simple pages are sent by the content app (a redirect to the
    bucket would break their relative links); packages still redirect."""
    domain, distribution = s3_python
    base = f"{domain.name}/{distribution.base_path}"
    for path in ("simple/cloudy/", "simple/Cloudy", "simple/"):
        page = get(domain_server, base, path)
        assert page.status_code == 200, path
        assert page.headers["content-type"] == "text/html"
        assert b"<html" in page.content.lower()
    assert "Cloudy-3.0-py3-none-any.whl" in get(domain_server, base, "simple/cloudy/").text
    package = get(domain_server, base, "Cloudy-3.0-py3-none-any.whl")
    assert package.status_code == 302
    assert httpx.get(package.headers["location"]).content == wheel("Cloudy", "3.0")[1]


def test_pull_through_in_a_domain_saves_content_of_that_domain(domain_server, s3, upstream):
    """The download is saved in the remote's domain (its storage; pulp_python's constructor
    asks ``get_domain()``), and the task adding it to the repository runs there too."""
    from pulp_python.app.models import (
        PythonDistribution,
        PythonPackageContent,
        PythonRemote,
        PythonRepository,
    )

    domain = s3_domain(s3, redirect=False)
    u = unique_name()
    filename, blob = wheel(f"domained{u}", "1.0")
    upstream.files[f"{u}/{filename}"] = blob
    source = upstream.url(f"{u}/{filename}")
    default = Domain.objects.get(name="default")
    set_domain(domain)
    try:
        remote = PythonRemote.objects.create(name=f"d-{u}", url=upstream.url(f"{u}/"),
                                             policy="on_demand", pulp_domain=domain)
        repo = PythonRepository.objects.create(name=f"d-{u}", pulp_domain=domain)
        distribution = PythonDistribution.objects.create(
            name=f"d-{u}", base_path=f"d-{u}", remote=remote, repository=repo,
            pulp_domain=domain)
    finally:
        set_domain(default)
    base = f"{domain.name}/{distribution.base_path}"
    pulled = get(domain_server, base, f"{filename}?redirect={quote(source)}")
    assert pulled.status_code == 200 and pulled.content == blob
    assert wait_for(lambda: PythonPackageContent.objects.filter(filename=filename).exists())
    unit = PythonPackageContent.objects.get(filename=filename)
    assert unit._pulp_domain_id == domain.pk
    stored = unit.contentartifact_set.get(relative_path=filename).artifact
    assert stored.pulp_domain_id == domain.pk
    assert wait_for(lambda: Task.objects.filter(name__endswith="add_and_remove",
                                                pulp_domain=domain).exists())
    again = get(domain_server, base, f"{filename}?redirect={quote(source)}")
    assert again.content == blob and upstream.hits[f"{u}/{filename}"] == 1


def test_pull_through_simple_pages_and_json_keep_their_types(server, legacy_server, upstream):
    """Review (#14): a pull-through distribution on a ``streamed`` remote streams the
    upstream's simple page and JSON document for paths no publication has. pulpcore's mime
    map knows no type for ``simple/<name>/`` or ``pypi/<name>/json``, and pip skips an
    index page that is not HTML (``_NotAPIContent``: "Skipping page … because the GET
    request got Content-Type: application/octet-stream"), so ``pip install --index-url
    <content app>/simple/`` found nothing here while pulpcore-content (which forwards the
    upstream's ``text/html``) worked. The port names the types: ``text/html`` as for the
    published pages, ``application/json`` as for the JSON API it generates."""
    from pulp_python.app.models import PythonDistribution, PythonRemote

    u = unique_name()
    name = f"streamy{u}"
    filename, blob = wheel(name, "1.0")
    page = (f'<!DOCTYPE html><html><body><a href="../../files/{filename}">{filename}</a>'
            f"</body></html>").encode()
    document = json.dumps({"info": {"name": name, "version": "1.0"}, "urls": []}).encode()
    upstream.files[f"{u}/simple/{name}/"] = page
    upstream.files[f"{u}/pypi/{name}/json"] = document
    upstream.files[f"{u}/files/{filename}"] = blob
    for path, content_type in ((f"{u}/simple/{name}/", "text/html"),
                               (f"{u}/pypi/{name}/json", "application/json")):
        upstream.behaviour[path] = Behaviour(content_type=content_type)
    remote = PythonRemote.objects.create(name=f"pts-{u}", url=upstream.url(f"{u}/"),
                                         policy="streamed")
    distribution = PythonDistribution.objects.create(name=f"pts-{u}", base_path=f"pts-{u}",
                                                     remote=remote)
    for path, body, content_type in ((f"simple/{name}/", page, "text/html"),
                                     (f"pypi/{name}/json", document, "application/json")):
        ours = get(server, distribution.base_path, path)
        assert ours.status_code == 200 and ours.content == body, path
        assert ours.headers["content-type"].startswith(content_type), (path, ours.headers)
    theirs = get(legacy_server, distribution.base_path, f"simple/{name}/")
    assert theirs.status_code == 200 and theirs.headers["content-type"].startswith("text/html")
    # The package the page links to (relative: back to this distribution) streams too.
    package = get(server, distribution.base_path, f"files/{filename}")
    assert package.status_code == 200 and package.content == blob
