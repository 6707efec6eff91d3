"""A full disk during an on-demand download (issue #17): WORKING_DIRECTORY, then MEDIA_ROOT,
on a 16 MiB tmpfs this module mounts (the tests run as root) and unmounts.

The client sees a cut (or a 503 telling the operator what to do), the log names the full
directory, nothing of the download is kept (no row, no partial file), and once space is
freed the next request gets the whole file and saves it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterator

import httpx
import pytest
from pulpcore.app.models import Artifact

from tests.helpers import (
    content_app,
    content_artifact,
    on_demand,
    stop_server,
    unique_name,
    url,
    wait_for,
)

# Issue #17's faults: also run by `make adversarial` (tests/adversarial.py).
pytestmark = pytest.mark.adversarial

SIZE = 16 * 1024 * 1024
#: Room left on the filesystem: less than the file, more than its first chunks.
ROOM = 1024 * 1024
FILE = 4 * 1024 * 1024


@contextlib.contextmanager
def tmpfs() -> Iterator[str]:
    where = tempfile.mkdtemp(prefix="full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", where], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=False)
        os.rmdir(where)


def fill(where: str) -> str:
    """Fill ``where`` up to :data:`ROOM` free bytes; the filler's path."""
    stat = os.statvfs(where)
    free = stat.f_bavail * stat.f_frsize
    filler = os.path.join(where, "filler")
    with open(filler, "wb") as out:
        out.write(b"\0" * (free - ROOM))
    return filler


def listing(where: str) -> set[str]:
    """Every file under ``where`` (relative names)."""
    return {os.path.relpath(os.path.join(d, f), where)
            for d, _, files in os.walk(where) for f in files}


def fetch(target: str) -> tuple[int | None, bytes, bool]:
    """Status, body received and whether the body was cut short."""
    received = b""
    with httpx.stream("GET", target, timeout=120) as response:
        try:
            for chunk in response.iter_raw():
                received += chunk
        except httpx.HTTPError:
            return response.status_code, received, True
        return response.status_code, received, False


def said_full(server: object, setting: str, where: str) -> bool:
    """Whether the server logged that ``setting`` (at ``where``) is full."""
    return any(f"{setting} ({where}" in line and "is full" in line
               for line in server.log().splitlines())  # type: ignore[attr-defined]


def warm_up(server: object, upstream: object) -> None:
    """One on-demand download before the disk fills: the app's own files in its working
    directory (the spool area's id) exist, and it works on this file system."""
    blob = unique_name().encode()  # content is unique by path and digest: fresh bytes
    distribution, _, _ = on_demand(upstream, {"warm.bin": blob})
    response = httpx.get(url(server, distribution, "warm.bin"), timeout=120)
    assert response.status_code == 200 and response.content == blob


def refused(status: int | None, body: bytes, cut: bool, blob: bytes) -> None:
    """A cut, or a 503 saying what to do; never the file whole, never a 200 that ends."""
    if cut:
        assert status == 200 and len(body) < len(blob)
    else:
        assert status == 503, (status, body[:200])
        assert b"no space left" in body and b"server log" in body


@pytest.fixture(scope="module")
def full_working_directory() -> Iterator[tuple[str, object]]:
    with tmpfs() as where:
        running = content_app(env={"PULP_WORKING_DIRECTORY": where})
        try:
            yield where, running
        finally:
            stop_server(running)


@pytest.fixture(scope="module")
def full_media_root() -> Iterator[tuple[str, object]]:
    with tmpfs() as where:
        running = content_app(env={"PULP_MEDIA_ROOT": where})
        try:
            yield where, running
        finally:
            stop_server(running)


def test_a_full_working_directory_keeps_nothing_and_recovers(full_working_directory,
                                                            upstream):
    where, server = full_working_directory
    blob = os.urandom(FILE)
    distribution, prefix, repo = on_demand(upstream, {"w.bin": blob})
    warm_up(server, upstream)
    filler = fill(where)
    before = listing(where)
    status, body, cut = fetch(url(server, distribution, "w.bin"))
    refused(status, body, cut, blob)
    assert wait_for(lambda: said_full(server, "WORKING_DIRECTORY", where))
    assert content_artifact(repo, "w.bin").artifact_id is None
    assert not Artifact.objects.filter(sha256=hashlib.sha256(blob).hexdigest()).exists()
    # The spool and the downloader's file go (the spool once its clients left).
    assert wait_for(lambda: listing(where) <= before), listing(where) - before
    os.unlink(filler)
    again = httpx.get(url(server, distribution, "w.bin"), timeout=120)
    assert again.status_code == 200 and again.content == blob
    assert wait_for(lambda: content_artifact(repo, "w.bin").artifact_id is not None)
    assert upstream.hits[prefix + "w.bin"] == 2


def test_a_full_media_root_keeps_nothing_and_recovers(full_media_root, upstream):
    """pulpcore copies across file systems into the artifact's final path: a full
    MEDIA_ROOT left a truncated file there, which the next save adopted as the artifact
    (FileSystem._save ignores an existing file). Here the copy is renamed into place
    whole, or removed."""
    where, server = full_media_root
    blob = os.urandom(FILE)
    sha256 = hashlib.sha256(blob).hexdigest()
    distribution, prefix, repo = on_demand(upstream, {"m.bin": blob})
    warm_up(server, upstream)
    assert wait_for(lambda: len(listing(where)) == 1)  # the warm-up file, saved
    saved_before = listing(where)
    filler = fill(where)
    status, body, cut = fetch(url(server, distribution, "m.bin"))
    refused(status, body, cut, blob)
    assert wait_for(lambda: said_full(server, "MEDIA_ROOT", where))
    assert content_artifact(repo, "m.bin").artifact_id is None
    assert not Artifact.objects.filter(sha256=sha256).exists()
    assert listing(where) == saved_before | {"filler"}  # no partial file anywhere
    os.unlink(filler)
    again = httpx.get(url(server, distribution, "m.bin"), timeout=120)
    assert again.status_code == 200 and again.content == blob
    assert wait_for(lambda: content_artifact(repo, "m.bin").artifact_id is not None)
    stored = os.path.join(where, content_artifact(repo, "m.bin").artifact.file.name)
    with open(stored, "rb") as saved:
        assert saved.read() == blob
    from_storage = httpx.get(url(server, distribution, "m.bin"), timeout=120)
    assert from_storage.content == blob
    assert from_storage.headers["content-length"] == str(len(blob))
    assert upstream.hits[prefix + "m.bin"] == 2
