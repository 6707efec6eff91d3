"""plugin.upstream and the ports' checks: what each declaration reads, table-driven, and
the file check (ondemand.declared.verify) on real files, an OSTree one made by ostree."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import shutil
import subprocess

import pytest
from pulpcore.exceptions import DigestValidationError

from pulp_content_asgi.builtin import npm, ostree
from pulp_content_asgi.ondemand.declared import verify
from pulp_content_asgi.plugin.upstream import Declared, SidecarCheck, Unreadable

SHA1 = hashlib.sha1(b"jar").hexdigest()


@pytest.mark.parametrize(("body", "expected"), [
    (SHA1.encode(), SHA1),
    (f"{SHA1.upper()}  tool-1.0.jar\n".encode(), SHA1),  # sha1sum output, any case
    # openssl dgst output, which Maven's ChecksumUtils.read also takes (last word)
    (f"SHA1(tool-1.0.jar)= {SHA1}\n".encode(), SHA1),
    (f"SHA1 (tool-1.0.jar) = {SHA1}".encode(), SHA1),
    (f"{SHA1}\nsecond line ignored\n".encode(), SHA1),
    (f"\n{SHA1}\n".encode(), SHA1),  # blank leading lines are skipped, as Maven does
])
def test_a_sidecar_declares_its_digest_as_maven_reads_it(body, expected):
    assert SidecarCheck().declared("u.jar", "u.jar", body).digests == {"sha1": expected}


@pytest.mark.parametrize("body", [b"", b"<html>Not here</html>", b"1234"])
def test_a_sidecar_that_is_not_a_digest_is_unreadable(body):
    with pytest.raises(Unreadable):
        SidecarCheck().declared("u.jar", "u.jar", body)


def test_a_missing_sidecar_declares_nothing_and_sidecars_have_none():
    assert SidecarCheck().declared("u.jar", "u.jar", None).empty
    assert SidecarCheck().document("http://h/a.jar", "a.jar") == "http://h/a.jar.sha1"
    assert SidecarCheck().document("http://h/a.jar.sha1", "a.jar.sha1") is None


@pytest.mark.parametrize(("url", "path", "document"), [
    ("http://r/left-pad/-/left-pad-1.3.0.tgz", "left-pad/-/left-pad-1.3.0.tgz",
     "http://r/left-pad/1.3.0"),
    ("http://r/@acme/widget/-/widget-0.1.0-rc.1.tgz", "@acme/widget/-/widget-0.1.0-rc.1.tgz",
     "http://r/@acme/widget/0.1.0-rc.1"),
    ("http://cdn/tarballs/left-pad.tgz", "left-pad/-/left-pad-1.3.0.tgz", None),
])
def test_npm_version_document_of_a_tarball(url, path, document):
    assert npm.VERSION_DOCUMENT.document(url, path) == document


def test_npm_version_document_declares_every_integrity_hash_else_the_shasum():
    url, path = "http://r/p/-/p-1.0.0.tgz", "p/-/p-1.0.0.tgz"
    sha512, sha1 = hashlib.sha512(b"t").digest(), hashlib.sha1(b"t").hexdigest()
    sri = (f"sha512-{base64.b64encode(sha512).decode()} "
           f"sha1-{base64.b64encode(bytes.fromhex(sha1)).decode()}")
    both = json.dumps({"name": "p", "version": "1.0.0",
                       "dist": {"integrity": sri, "shasum": sha1}}).encode()
    assert npm.VERSION_DOCUMENT.declared(url, path, both).digests == {
        "sha512": sha512.hex(), "sha1": sha1}
    only_shasum = f'{{"version": "1.0.0", "dist": {{"shasum": "{sha1}"}}}}'.encode()
    assert npm.VERSION_DOCUMENT.declared(url, path, only_shasum).digests == {"sha1": sha1}
    assert npm.VERSION_DOCUMENT.declared(url, path, b'{"dist": {}}').empty


@pytest.mark.parametrize("body", [b"<html>", b'{"version": "2.0.0", "dist": {}}',
                                  b'{"name": "q", "dist": {}}', b'{"no": "dist"}'])
def test_npm_document_about_something_else_is_unreadable(body):
    with pytest.raises(Unreadable):
        npm.VERSION_DOCUMENT.declared("http://r/p/-/p-1.0.0.tgz", "p/-/p-1.0.0.tgz", body)


def test_declared_digests_are_checked_whether_or_not_the_downloader_computed_them(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"bytes")
    sha1, sha256 = hashlib.sha1(b"bytes").hexdigest(), hashlib.sha256(b"bytes").hexdigest()
    verify(Declared({"sha1": sha1, "sha256": sha256}), str(path), {"sha256": sha256}, "u")
    with pytest.raises(DigestValidationError):
        verify(Declared({"sha1": "0" * 40}), str(path), {"sha256": sha256}, "u")
    with pytest.raises(DigestValidationError):  # the downloader's own digest is used
        verify(Declared({"sha256": sha256}), str(path), {"sha256": "f" * 64}, "u")


def test_ostree_objects_are_held_to_their_names(tmp_path):
    # make test installs ostree (dev/test-tools.sh): a missing one is a broken set-up.
    assert shutil.which("ostree"), "the ostree command is missing: run make test-tools"
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "README").write_bytes(os.urandom(3000))
    repo = tmp_path / "repo"
    subprocess.run(["ostree", f"--repo={repo}", "init", "--mode=archive"], check=True)
    subprocess.run(["ostree", f"--repo={repo}", "commit", "--branch=main",
                    f"--tree=dir={tmp_path / 'tree'}"], check=True, capture_output=True)
    paths = glob.glob(str(repo / "objects" / "*" / "*"))
    assert {p.rsplit(".", 1)[1] for p in paths} >= {"commit", "dirtree", "dirmeta", "filez"}
    for path in paths:
        relative = os.path.relpath(path, repo)
        promised = ostree.OBJECT_NAME.declared("u", relative, None)
        with open(path, "rb") as source:
            data = bytearray(source.read())
        verify(promised, path, {"sha256": hashlib.sha256(data).hexdigest()}, "u")  # genuine
        data[len(data) // 2] ^= 0xFF
        with open(path, "wb") as out:
            out.write(data)
        with pytest.raises(DigestValidationError):
            verify(promised, path, {"sha256": hashlib.sha256(data).hexdigest()}, "u")
    assert ostree.OBJECT_NAME.declared("u", "objects/ab/cd.commitmeta", None).empty
    assert ostree.OBJECT_NAME.declared("u", "summary", None).empty
