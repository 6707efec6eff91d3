"""The plugins' local upstreams (conformance/fixtures/): built offline, served on
loopback, and what each plugin's sync reads is there and consistent."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conformance import fixtures

TOOLS = ("rpmbuild", "apt-ftparchive", "dpkg-deb", "docker-registry", "skopeo", "npm", "nginx",
         "ostree", "gem")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[dict[tuple[str, str], fixtures.Upstream]]:
    missing = [t for t in TOOLS if not shutil.which(t) and not Path(f"/usr/sbin/{t}").exists()]
    # `make test` installs them first; a run without them fails here rather than skipping
    # (a skip that happens on every fresh machine would hide these tests from CI).
    assert not missing, (f"missing {missing}: `make fixture-tools` (dev/fixture-tools.sh) "
                         "installs them")
    root = tmp_path_factory.mktemp("fixtures")
    with fixtures.serve(str(root), _free_port(), _free_port(), "testrun") as served:
        yield served


def _get(url: str, **headers: str) -> httpx.Response:
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, (url, response.status_code)
    return response


def test_every_plugin_has_both_policies_with_different_packages(upstreams: dict) -> None:
    for plugin in ("rpm", "deb", "python", "npm", "gem", "container"):
        names = {upstreams[(plugin, policy)].package for policy in fixtures.POLICIES}
        assert names == {"hello-immediate", "hello-on-demand"}


def test_rpm_metadata_names_the_package_by_its_digest(upstreams: dict) -> None:
    url = upstreams[("rpm", "on_demand")].url
    repomd = _get(f"{url}repodata/repomd.xml").text
    primary = re.search(r'<location href="(repodata/[^"]+primary[^"]+)"', repomd)
    assert primary
    listing = _get(f"{url}repodata/{primary.group(1).split('/', 1)[1]}").content
    assert len(listing) > 0
    rpm = _get(f"{url}hello-on-demand-1.0-1.noarch.rpm").content
    assert rpm[:4] == b"\xed\xab\xee\xdb"  # the RPM lead's magic


def test_apt_release_hashes_match_the_indexes(upstreams: dict) -> None:
    url = upstreams[("deb", "immediate")].url
    release = _get(f"{url}dists/stable/Release").text
    packages = _get(f"{url}dists/stable/main/binary-amd64/Packages").content
    sha256 = hashlib.sha256(packages).hexdigest()
    assert re.search(rf"^ {sha256} +{len(packages)} main/binary-amd64/Packages$", release, re.M)
    gz = _get(f"{url}dists/stable/main/binary-amd64/Packages.gz").content
    assert gzip.decompress(gz) == packages
    filename = re.search(r"^Filename: (.+)$", packages.decode(), re.M)
    assert filename
    deb = _get(f"{url}{filename.group(1)}").content
    assert hashlib.sha256(deb).hexdigest() in packages.decode()


def test_pypi_json_and_simple_page_point_at_the_wheel(upstreams: dict) -> None:
    url = upstreams[("python", "immediate")].url
    response = _get(f"{url}pypi/hello-immediate/json")
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["x-pypi-last-serial"]) > 0  # bandersnatch requires it
    (release,) = response.json()["releases"]["1.0"]
    wheel = _get(release["url"]).content
    assert hashlib.sha256(wheel).hexdigest() == release["digests"]["sha256"]
    simple = _get(f"{url}simple/hello-immediate/").text
    assert f"#sha256={release['digests']['sha256']}" in simple


def test_npm_version_document_points_at_the_tarball(upstreams: dict) -> None:
    upstream = upstreams[("npm", "on_demand")]
    response = _get(upstream.url)
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    tarball = _get(document["dist"]["tarball"]).content
    assert hashlib.sha1(tarball).hexdigest() == document["dist"]["shasum"]
    assert gzip.decompress(tarball)[257:262] == b"ustar"


def test_registry_serves_the_pushed_image(upstreams: dict) -> None:
    upstream = upstreams[("container", "immediate")]
    manifest = _get(f"{upstream.url}/v2/{upstream.package}/manifests/1",
                    Accept="application/vnd.oci.image.manifest.v1+json")
    layers = json.loads(manifest.content)["layers"]
    for layer in layers:
        blob = _get(f"{upstream.url}/v2/{upstream.package}/blobs/{layer['digest']}").content
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    other = upstreams[("container", "on_demand")]
    theirs = _get(f"{other.url}/v2/{other.package}/manifests/1",
                  Accept="application/vnd.oci.image.manifest.v1+json")
    assert json.loads(theirs.content)["layers"] != layers  # different content per policy


def test_ostree_summary_names_the_branch(upstreams: dict) -> None:
    upstream = upstreams[("ostree", "on_demand")]
    commit = _get(f"{upstream.url}refs/heads/{upstream.version}").text.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", commit)
    assert _get(f"{upstream.url}objects/{commit[:2]}/{commit[2:]}.commit").content
    assert upstream.version.encode() in _get(f"{upstream.url}summary").content
    assert b"mode=archive" in _get(f"{upstream.url}config").content


def test_maven_sidecars_match_what_they_describe(upstreams: dict) -> None:
    from conformance.fixtures import maven

    upstream = upstreams[("maven", "pull_through")]
    for path in maven.paths(upstream):
        if path.endswith(".sha1"):
            described = _get(f"{upstream.url}{path[:-5]}").content
            assert _get(f"{upstream.url}{path}").text == hashlib.sha1(described).hexdigest()


def test_ansible_collection_is_built_for_upload(upstreams: dict) -> None:
    import tarfile

    upstream = upstreams[("ansible", "upload")]
    assert upstream.upload
    with tarfile.open(upstream.upload) as collection:
        manifest = json.load(collection.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    assert manifest["collection_info"]["name"] == "hello_upload"


def test_gem_compact_index_names_the_gem_by_its_digest(upstreams: dict) -> None:
    """What pulp_gem's sync reads: ``versions`` (with the md5 of ``info/<name>``), the
    info line's sha256 of the gem, the gem and its Marshal gemspec."""
    upstream = upstreams[("gem", "on_demand")]
    versions = _get(f"{upstream.url}versions").text
    info = _get(f"{upstream.url}info/hello-on-demand").content
    line = f"hello-on-demand 1.0.0 {hashlib.md5(info).hexdigest()}"
    assert versions.splitlines()[1:] == ["---", line]
    gem = _get(f"{upstream.url}gems/hello-on-demand-1.0.0.gem").content
    digest = hashlib.sha256(gem).hexdigest()
    assert info.decode().splitlines() == ["---", f"1.0.0 |checksum:{digest}"]
    assert _get(f"{upstream.url}quick/Marshal.4.8/hello-on-demand-1.0.0.gemspec.rz").content
    assert gzip.decompress(_get(f"{upstream.url}specs.4.8.gz").content)[:2] == b"\x04\x08"


def test_galaxy_upstream_describes_the_collection_a_sync_downloads(upstreams: dict) -> None:
    """What pulp_ansible's CollectionSyncFirstStage reads for a requirements file: the API
    root, the collection (no trailing slash), its version list (a query string), the
    version's detail, whose download_url serves bytes of the sha256 and size it states,
    and its docs-blob."""
    upstream = upstreams[("ansible", "immediate")]
    assert "v3" in _get(upstream.url).json()["available_versions"]
    assert "parity.hello_immediate" in upstream.remote["requirements_file"]
    collection = f"{upstream.url}v3/collections/parity/hello_immediate"
    assert _get(collection).json()["deprecated"] is False
    listed = _get(f"{collection}/versions/?limit=100&offset=0").json()
    assert [v["version"] for v in listed["data"]] == ["1.0.0"] and not listed["links"]["next"]
    detail = _get(f"{collection}/versions/1.0.0/").json()
    tarball = _get(detail["download_url"]).content
    assert detail["artifact"] == {"filename": "parity-hello_immediate-1.0.0.tar.gz",
                                  "size": len(tarball),
                                  "sha256": hashlib.sha256(tarball).hexdigest()}
    assert "docs_blob" in _get(f"{collection}/versions/1.0.0/docs-blob/").json()


def test_npm_pull_through_registry_serves_packument_and_tarball(upstreams: dict) -> None:
    upstream = upstreams[("npm", "pull_through")]
    name, tarball = upstream.paths
    packument = _get(f"{upstream.url}{name}")
    assert packument.headers["content-type"] == "application/json"
    dist = packument.json()["versions"]["1.0.0"]["dist"]
    assert dist["tarball"] == f"{upstream.url}{tarball}"
    assert hashlib.sha1(_get(dist["tarball"]).content).hexdigest() == dist["shasum"]


def test_signing_scripts_sign_what_gpg_verifies(tmp_path: Path) -> None:
    """The deb and rpm scripts registered as signing services, run as a worker runs them,
    make signatures gpg accepts with the run's key, and no others."""
    import os
    import subprocess

    from conformance import signing

    # make test installs gpg (dev/test-tools.sh): a missing one is a broken set-up, not a skip.
    assert shutil.which("gpg"), "gpg is missing: dev/test-tools.sh installs it"
    folder = str(tmp_path / "signing")
    key = signing.make_key(os.path.join(folder, "gnupg"), "testrun")
    try:
        release = tmp_path / "Release"
        release.write_bytes(b"Origin: parity\n")
        outputs = {}
        for plugin in ("deb", "rpm"):
            script = tmp_path / f"sign-{plugin}.sh"
            script.write_text(signing.SERVICES[plugin][1].format(
                home=os.path.join(folder, "gnupg"), key=key))
            done = subprocess.run(["sh", str(script), str(release)], capture_output=True,
                                  text=True, check=True,
                                  env={**os.environ, "PULP_TEMP_WORKING_DIR": str(tmp_path)})
            outputs[plugin] = json.loads(done.stdout)
        inline = Path(outputs["deb"]["signatures"]["inline"]).read_bytes()
        detached = Path(outputs["deb"]["signatures"]["detached"]).read_bytes()
        armored = Path(outputs["rpm"]["signature"]).read_bytes()
        assert signing.verify(folder, inline) is None
        assert signing.verify(folder, detached, release.read_bytes()) is None
        assert signing.verify(folder, armored, release.read_bytes()) is None
        assert signing.verify(folder, detached, b"Origin: someone else\n") is not None
        assert signing.verify(folder, inline.replace(b"parity", b"partly")) is not None
    finally:
        signing.stop(folder)
