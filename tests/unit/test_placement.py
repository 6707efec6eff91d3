"""Placing a verified download into file-system storage: whole or not at all
(ondemand/placement.py; the end-to-end view is tests/test_ondemand_disk_full_e2e.py)."""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from pulp_content_asgi.ondemand.placement import no_space, place_file


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as out:
        out.write(data)
    return path


def _read(path: str) -> bytes:
    with open(path, "rb") as stored:
        return stored.read()


def test_a_new_file_is_placed_and_its_download_removed(tmp_path):
    source = _write(str(tmp_path / "download"), b"artifact")
    target = str(tmp_path / "artifact" / "ab" / "cdef")
    assert place_file(source, target, 8, 0o644) is True
    assert _read(target) == b"artifact"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert not os.path.exists(source)


def test_an_identical_file_in_place_is_kept(tmp_path):
    target = _write(str(tmp_path / "in-place"), b"artifact")
    source = _write(str(tmp_path / "download"), b"artifact")
    assert place_file(source, target, 8) is False  # not ours: never to be removed by us
    assert _read(target) == b"artifact" and not os.path.exists(source)


def test_a_truncated_file_in_place_is_replaced(tmp_path):
    """What Django's file_move_safe leaves when MEDIA_ROOT fills up mid-copy; pulpcore's
    FileSystem._save would adopt it as the artifact."""
    target = _write(str(tmp_path / "in-place"), b"artif")
    source = _write(str(tmp_path / "download"), b"artifact")
    assert place_file(source, target, 8) is True
    assert _read(target) == b"artifact"


@pytest.fixture
def small_tmpfs():
    """A 1 MiB tmpfs on another file system than the source (mounting needs root)."""
    if os.getuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tempfile.mkdtemp(prefix="small-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", where], check=True)
    yield where
    subprocess.run(["umount", "-l", where], check=False)
    os.rmdir(where)


def test_a_full_disk_leaves_no_partial_file_and_keeps_the_download(tmp_path, small_tmpfs):
    source = _write(str(tmp_path / "download"), os.urandom(3 * 1024 * 1024))
    target = os.path.join(small_tmpfs, "artifact", "ab", "cdef")
    with pytest.raises(OSError) as raised:
        place_file(source, target, 3 * 1024 * 1024)
    assert no_space(raised.value)
    assert os.listdir(os.path.dirname(target)) == []  # neither the file nor a partial copy
    assert os.path.getsize(source) == 3 * 1024 * 1024  # kept: the save may be retried
