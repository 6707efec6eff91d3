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
