"""The spool reader when the file under it changes: it fails with the cause instead of
waiting for bytes that will not come (no database, no server)."""

from __future__ import annotations

import asyncio
import os
import re

import pytest

from pulp_content_asgi.ondemand.spool import Spool, SpoolFailed

DATA = os.urandom(300_000)


async def _finished_spool(path: str) -> Spool:
    spool = Spool(path)
    await spool.open()
    await spool.set_headers({})
    await spool.write(DATA)
    await spool.finish()
    return spool


async def _read(spool: Spool, offset: int, length: int | None) -> bytes:
    return b"".join([c async for c in spool.read(offset, length, 65_536)])


def test_a_finished_spool_is_read_whole(tmp_path):
    async def main() -> bytes:
        return await _read(await _finished_spool(str(tmp_path / "s")), 0, None)

    assert asyncio.run(main()) == DATA


def test_a_spool_truncated_under_its_reader_fails_the_read(tmp_path):
    """Its file now holds fewer bytes than the download wrote (another writer truncated
    it): the reader fails at once, naming the file (it used to spin, reading nothing)."""
    path = str(tmp_path / "s")

    async def main() -> bytes:
        spool = await _finished_spool(path)
        os.truncate(path, 1000)
        return await _read(spool, 0, None)

    with pytest.raises(SpoolFailed, match=re.escape(f"its spool file {path} holds fewer")):
        asyncio.run(main())


def test_a_spool_whose_file_went_fails_the_read_and_says_what_to_do(tmp_path):
    path = str(tmp_path / "s")

    async def main() -> bytes:
        spool = await _finished_spool(path)
        os.unlink(path)
        return await _read(spool, 10, 20)

    with pytest.raises(SpoolFailed, match=r"is gone; keep other programs .* away from the "
                                          r"ondemand-\* files in WORKING_DIRECTORY"):
        asyncio.run(main())


# -- the spool of a saved download is the file saved (Spool.keep) --------------------
def test_a_kept_name_is_a_second_name_of_the_spool_and_never_replaces_a_file(tmp_path):
    """``keep`` links (nothing copied: one inode) and never overwrites a file already at
    the name it is given: ``FileExistsError``, that file untouched."""
    taken = tmp_path / "taken"
    taken.write_bytes(b"someone else's")

    async def scenario() -> None:
        spool = Spool(str(tmp_path / "spool"))
        await spool.open()
        await spool.write(DATA)
        await spool.keep(str(tmp_path / "kept"))
        with pytest.raises(FileExistsError):
            await spool.keep(str(taken))
        await spool.finish()

    asyncio.run(scenario())
    assert os.stat(tmp_path / "kept").st_ino == os.stat(tmp_path / "spool").st_ino
    assert (tmp_path / "kept").read_bytes() == DATA
    assert taken.read_bytes() == b"someone else's"


def test_where_hard_links_are_refused_the_kept_name_is_a_whole_copy(tmp_path, monkeypatch):
    from pulp_content_asgi.ondemand import spool as spool_module

    def refused(source: str, target: str, **_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(spool_module.os, "link", refused)

    async def scenario() -> None:
        spool = Spool(str(tmp_path / "spool"))
        await spool.open()
        await spool.write(DATA)
        await spool.keep(str(tmp_path / "kept"))

    asyncio.run(scenario())
    assert (tmp_path / "kept").read_bytes() == DATA
    assert os.stat(tmp_path / "kept").st_ino != os.stat(tmp_path / "spool").st_ino


@pytest.mark.parametrize(("url", "suffix"), [
    ("http://upstream.example/a/b.rpm?x=1", "-b.rpm"),
    ("http://upstream.example/a/", ""),
    ("http://upstream.example/" + "n" * 220, ""),  # with the prefix past 255 bytes
    ("http://upstream.example/" + "n" * 219, "-" + "n" * 219),
])
def test_a_kept_name_is_new_legal_and_keeps_the_file_name_when_it_can(url, suffix, tmp_path):
    from django.test import override_settings

    from pulp_content_asgi.ondemand.spool import download_name

    with override_settings(WORKING_DIRECTORY=str(tmp_path)):
        names = {download_name(url) for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert os.path.dirname(name) == str(tmp_path)
        base = os.path.basename(name)
        assert re.fullmatch(r"tmp[0-9a-f]{32}" + re.escape(suffix), base)
        assert len(base.encode()) <= 255


def test_the_kept_file_is_the_one_written_even_if_its_path_was_taken_over(tmp_path):
    """Another worker that took the download's lock (this one lost its session) creates
    a new spool at the same path: the name kept is still this spool's file and bytes,
    never the other's unfinished one."""

    async def scenario() -> None:
        spool = Spool(str(tmp_path / "spool"))
        await spool.open()
        await spool.write(DATA)
        os.unlink(tmp_path / "spool")  # the other worker's _create
        (tmp_path / "spool").write_bytes(b"another download, unfinished")
        await spool.keep(str(tmp_path / "kept"))

    asyncio.run(scenario())
    assert (tmp_path / "kept").read_bytes() == DATA
