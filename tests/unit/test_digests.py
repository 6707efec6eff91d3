"""The digests of a saved download are computed off the event loop (``ondemand/digests.py``).

The hashers here are real hashlib objects whose first update waits for a gate that only
a callback *on the event loop* opens: if a digest ran on the loop, the loop could not run
that callback and the update would give up waiting (the test then fails, saying so);
nothing here measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from typing import Any

import pytest

from pulp_content_asgi.ondemand import digests as digests_module
from pulp_content_asgi.ondemand.digests import WINDOW, Digests

#: How long a gated update waits for the loop before it records that it was never let
#: through (a deadlock guard: the test fails then, it never passes by waiting).
STUCK = 60.0


class GatedHasher:
    """A real hasher whose updates record their thread and wait for ``gate``; once one
    has waited in vain (the loop never opened it) the others no longer wait."""

    stuck = False

    def __init__(self, name: str, gate: threading.Event, entered: threading.Event) -> None:
        self.real = hashlib.new(name)
        self.gate = gate
        self.entered = entered
        self.threads: set[int] = set()

    def update(self, data: bytes) -> None:
        self.threads.add(threading.get_ident())
        self.entered.set()
        if not GatedHasher.stuck and not self.gate.wait(STUCK):
            GatedHasher.stuck = True
        self.real.update(data)

    def hexdigest(self) -> str:
        return self.real.hexdigest()


@pytest.fixture(autouse=True)
def _unstuck() -> None:
    GatedHasher.stuck = False


def _open(tmp_path, hashers):
    return Digests(hashers)


def test_the_loop_runs_while_a_digest_is_being_computed(tmp_path):
    chunks = [os.urandom(300_000) for _ in range(5)]
    gate, entered = threading.Event(), threading.Event()
    hashers = {name: GatedHasher(name, gate, entered) for name in ("sha256", "sha512")}

    async def scenario() -> tuple[int, dict, int]:
        loop_thread = threading.get_ident()
        digests = _open(tmp_path, hashers)
        for chunk in chunks:
            digests.put(chunk)
            await digests.wait_room()  # within the window: returns with digests pending
        # A digest is now inside its update, waiting for the gate; only the loop opens it.
        await asyncio.get_running_loop().run_in_executor(None, entered.wait)
        asyncio.get_running_loop().call_soon(gate.set)
        found, size = await digests.finish()
        return loop_thread, found, size

    loop_thread, found, size = asyncio.run(scenario())
    assert not GatedHasher.stuck, "a digest blocked the event loop"
    assert all(loop_thread not in h.threads for h in hashers.values())
    assert all(h.threads for h in hashers.values())
    whole = b"".join(chunks)
    assert size == len(whole)
    assert {n: h.hexdigest() for n, h in found.items()} == {
        "sha256": hashlib.sha256(whole).hexdigest(), "sha512": hashlib.sha512(whole).hexdigest()}


def test_a_download_ahead_of_its_digests_by_the_window_waits(tmp_path):
    """Back-pressure: with a digest held back, ``wait_room`` does not return once more
    than WINDOW bytes are pending, and does once the digest catches up."""
    gate, entered = threading.Event(), threading.Event()
    hasher = GatedHasher("sha256", gate, entered)
    chunk = os.urandom(1 << 20)

    async def scenario() -> tuple[bool, bool]:
        digests = _open(tmp_path, {"sha256": hasher})
        for _ in range(WINDOW // len(chunk) + 2):
            digests.put(chunk)
        waiting = asyncio.ensure_future(digests.wait_room())
        await asyncio.get_running_loop().run_in_executor(None, entered.wait)
        for _ in range(3):  # let the loop run the waiter: it must still be waiting
            await asyncio.sleep(0)
        held = not waiting.done()
        gate.set()
        await waiting
        await digests.finish()
        return held, waiting.done()

    held, released = asyncio.run(scenario())
    assert held and released and not GatedHasher.stuck


def test_the_configured_digests_are_computed(tmp_path, settings_digests):
    """Over chunks as small as a socket read hands over (gathered before hashing, the
    rest at the end), in order."""
    data = os.urandom(3 * (1 << 20) + 12_345)

    async def scenario() -> tuple[dict, int]:
        digests = Digests.configured()
        for start in range(0, len(data), 65_000):
            digests.put(data[start:start + 65_000])
            await digests.wait_room()
        found, size = await digests.finish()
        return {n: h.hexdigest() for n, h in found.items()}, size

    found, size = asyncio.run(scenario())
    assert size == len(data)
    assert found == {n: hashlib.new(n, data).hexdigest() for n in settings_digests}


def test_a_failed_digest_is_raised_by_finish():
    """A lane's error reaches the download, not a log of unretrieved task exceptions."""

    class Broken:
        def update(self, data: bytes) -> None:
            raise MemoryError("no room for the digest")

        def hexdigest(self) -> str:
            return ""

    async def scenario() -> BaseException | None:
        digests = Digests({"sha256": Broken()})
        digests.put(b"x" * 10_000)
        try:
            await digests.finish()
        except MemoryError as error:
            await digests.closed()
            return error
        return None

    assert isinstance(asyncio.run(scenario()), MemoryError)


def test_an_abandoned_attempt_drops_its_chunks(tmp_path):
    gate, entered = threading.Event(), threading.Event()
    hasher = GatedHasher("sha256", gate, entered)

    async def scenario() -> Digests:
        digests = _open(tmp_path, {"sha256": hasher})
        for _ in range(4):
            digests.put(b"y" * (digests_module.GATHER // 2 + 1))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait)
        digests.abandon()
        gate.set()
        await digests.closed()
        return digests

    digests = asyncio.run(scenario())
    assert all(not lane.waiting for lane in digests.lanes)
    assert all(lane.task.done() for lane in digests.lanes)


@pytest.fixture
def settings_digests() -> list[str]:
    from pulpcore.app.models import Artifact

    return list(Artifact.DIGEST_FIELDS)


def test_the_threads_are_the_digest_pool(tmp_path):
    seen: set[str] = set()

    class Named:
        def __init__(self) -> None:
            self.real = hashlib.sha256()

        def update(self, data: bytes) -> None:
            seen.add(threading.current_thread().name)
            self.real.update(data)

        def hexdigest(self) -> str:
            return self.real.hexdigest()

    async def scenario() -> None:
        digests = _open(tmp_path, {"sha256": Named()})
        digests.put(b"z" * 5000)
        await digests.finish()

    asyncio.run(scenario())
    assert seen and all(n.startswith(digests_module.THREAD_NAME) for n in seen)


def test_a_durable_spool_past_the_writeback_interval_is_whole(tmp_path):
    """Flushed to disk in the background while written (every WRITEBACK bytes): every
    byte still lands in order, and the kept file is the spool's, whole."""
    from pulp_content_asgi.ondemand import spool as spool_module
    from pulp_content_asgi.ondemand.spool import Spool

    block = os.urandom(1 << 20)
    blocks = spool_module.WRITEBACK // len(block) * 2 + 3

    async def scenario() -> str:
        spool = Spool(str(tmp_path / "spool"))
        spool.durable = True
        await spool.open()
        for _ in range(blocks):
            await spool.write(block)
        kept = await spool.keep(str(tmp_path / "kept"))
        await spool.finish()
        await spool.discard()
        return kept

    kept = asyncio.run(scenario())
    assert not (tmp_path / "spool").exists()  # discarded: the kept name stays
    expected = hashlib.sha256()
    with open(kept, "rb") as whole:
        while chunk := whole.read(1 << 20):
            expected.update(chunk)
    assert expected.hexdigest() == hashlib.sha256(block * blocks).hexdigest()


def test_a_new_spool_never_writes_into_a_file_left_at_its_path(tmp_path):
    """A worker that stopped after saving, before discarding its spool, leaves the spool
    file, whose bytes are the saved artifact's too (one inode, two names). The next
    download spooling at that path gets a new file: the saved one keeps its bytes."""
    from pulp_content_asgi.ondemand.spool import Spool

    saved = b"the saved artifact's bytes"

    async def scenario() -> None:
        first = Spool(str(tmp_path / "spool"))
        await first.open()
        await first.write(saved)
        await first.keep(str(tmp_path / "artifact"))
        await first.finish()  # not discarded: the worker stopped here
        second = Spool(str(tmp_path / "spool"))
        await second.open()
        await second.write(b"another download")
        await second.finish()

    asyncio.run(scenario())
    assert (tmp_path / "artifact").read_bytes() == saved
    assert (tmp_path / "spool").read_bytes() == b"another download"


# -- the fetch path: a remote's real downloader (pulpcore's FileDownloader) into a spool --
class _Remote:
    """A plugin's remote as the fetch path sees it: ``get_downloader`` returns pulpcore's
    own downloader for a ``file://`` URL, expecting ``expected`` digests."""

    def __init__(self, expected: dict[str, str]) -> None:
        self.expected = expected

    def get_downloader(self, remote_artifact, headers_ready_callback):
        from pulpcore.download.file import FileDownloader

        return FileDownloader(remote_artifact.url, expected_digests=self.expected,
                              expected_size=remote_artifact.size,
                              headers_ready_callback=headers_ready_callback)


def _candidate(path, blob: bytes, expected: dict[str, str]):
    from types import SimpleNamespace

    from pulp_content_asgi.ondemand.plan import Candidate

    path.write_bytes(blob)
    remote_artifact = SimpleNamespace(url=f"file://{path}", size=len(blob),
                                      remote=_Remote(expected))
    return Candidate(remote_artifact, save=True)  # type: ignore[arg-type]


def test_a_saved_download_reaches_the_spool_while_its_digests_are_pending(
        tmp_path, monkeypatch, settings_digests):
    """The whole file reaches the spool (what clients read) while every digest is held at
    its first update; only the loop can let them go on. Were the digests computed on the
    loop (pulpcore's ``handle_data``, which also makes its hashers with
    ``pulp_hashlib.new``), the loop would wait for them and never open the gate."""
    from pulpcore.app import pulp_hashlib

    from pulp_content_asgi.ondemand.fetch import SpoolingDownloader
    from pulp_content_asgi.ondemand.spool import Spool

    blob = os.urandom(3 * (1 << 20) + 5)
    gate, entered = threading.Event(), threading.Event()
    made: list[GatedHasher] = []

    def gated(name: str) -> GatedHasher:
        made.append(GatedHasher(name, gate, entered))
        return made[-1]

    monkeypatch.setattr(pulp_hashlib, "new", gated)
    candidate = _candidate(tmp_path / "upstream.bin", blob,
                           {"sha256": hashlib.sha256(blob).hexdigest()})

    async def scenario() -> tuple[int, object]:
        spool = Spool(str(tmp_path / "spool"))
        await spool.open()
        download = asyncio.ensure_future(SpoolingDownloader(candidate, spool).run())
        await asyncio.get_running_loop().run_in_executor(None, entered.wait)
        while spool.size < len(blob) and not download.done():
            await spool.changed()
        spooled = spool.size
        gate.set()
        return spooled, await download

    from django.test import override_settings

    with override_settings(WORKING_DIRECTORY=str(tmp_path)):
        spooled, result = asyncio.run(scenario())
    assert not GatedHasher.stuck, "the digests blocked the event loop"
    assert spooled == len(blob)
    assert sorted(h.real.name for h in made) == sorted(settings_digests)
    attributes = result.artifact_attributes  # type: ignore[attr-defined]
    assert attributes == {"size": len(blob), **{
        name: hashlib.new(name, blob).hexdigest() for name in settings_digests}}
    with open(result.path, "rb") as kept:  # type: ignore[attr-defined]
        assert kept.read() == blob
    # The bytes were written once: the file to save is the spool, under a second name.
    assert os.stat(result.path).st_ino == os.stat(tmp_path / "spool").st_ino  # type: ignore[attr-defined]
    assert os.path.dirname(result.path) == str(tmp_path)  # type: ignore[attr-defined]
    assert result.path.endswith("-upstream.bin")  # type: ignore[attr-defined]


class _Retrying:
    """A downloader as pulpcore's retries look to the fetch path: each attempt calls the
    headers callback, hands over its body, and the last one is finalized."""

    def __init__(self, url: str, attempts: list[bytes], headers_ready_callback) -> None:
        self.url = url
        self.attempts = attempts
        self.callback = headers_ready_callback

    async def run(self, extra_data=None):
        for body in self.attempts:
            await self.callback({"Content-Length": str(len(body))})
            await self.handle_data(body)  # type: ignore[attr-defined]
        await self.finalize()  # type: ignore[attr-defined]
        return self

    def validate_digests(self) -> None:
        pass

    def validate_size(self) -> None:
        pass


def _retrying(attempts: list[bytes]):
    from types import SimpleNamespace

    from pulp_content_asgi.ondemand.plan import Candidate

    class Remote:
        def get_downloader(self, remote_artifact, headers_ready_callback):
            return _Retrying(remote_artifact.url, attempts, headers_ready_callback)

    # No promised size (pull-through content): nothing but the spool tells the attempts'
    # lengths apart.
    remote_artifact = SimpleNamespace(url="http://upstream.example/f.bin", size=None,
                                      remote=Remote())
    return Candidate(remote_artifact, save=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("retry", [b"a" * 100, b"a" * 60], ids=["whole", "shorter"])
def test_a_retry_is_saved_only_when_it_is_the_spool(tmp_path, retry):
    """The first attempt spooled 100 bytes, then failed; the retry's bytes are held to the
    spool's. A retry of the same 100 bytes is saved, and the file saved is the spool (one
    inode). One that ends after 60 (the same bytes, fewer) is not the file the spool
    holds, which clients already have: ``Diverged``, and no file is kept."""
    from django.test import override_settings

    from pulp_content_asgi.ondemand.fetch import Diverged, SpoolingDownloader
    from pulp_content_asgi.ondemand.spool import Spool

    candidate = _retrying([b"a" * 100, retry])
    spool = Spool(str(tmp_path / "spool"))

    async def scenario() -> object:
        await spool.open()
        try:
            return await SpoolingDownloader(candidate, spool).run()
        except Diverged as error:
            return error

    with override_settings(WORKING_DIRECTORY=str(tmp_path)):
        result = asyncio.run(scenario())
    assert spool.size == 100
    if len(retry) == 100:
        assert os.stat(result.path).st_ino == os.stat(tmp_path / "spool").st_ino  # type: ignore[attr-defined]
        assert (tmp_path / "spool").read_bytes() == retry
    else:
        assert isinstance(result, Diverged) and "60 bytes" in str(result)
        assert sorted(os.listdir(tmp_path)) == ["spool"]  # the fetch's to discard


@pytest.mark.parametrize("cancels", [1, 2], ids=["cancelled", "cancelled-twice"])
def test_a_download_cancelled_while_its_spool_is_kept_leaves_no_file(
        tmp_path, monkeypatch, cancels):
    """The download is cancelled (the worker stops) while its complete spool is being
    given its second name on a pool thread: once that thread is done, the name is
    removed with the download's files, never created after them. (Without the wait for
    the link the removal and the link race: this caught it in 1 of 5 runs, not always.)"""
    from django.test import override_settings

    from pulp_content_asgi.ondemand import fetch as fetch_module
    from pulp_content_asgi.ondemand import spool as spool_module
    from pulp_content_asgi.ondemand.fetch import SpoolingDownloader
    from pulp_content_asgi.ondemand.spool import Spool

    blob = os.urandom(100_000)
    candidate = _candidate(tmp_path / "upstream.bin", blob,
                           {"sha256": hashlib.sha256(blob).hexdigest()})
    working = tmp_path / "working"
    working.mkdir()
    gate, entered = threading.Event(), threading.Event()
    link = spool_module._link

    linked = threading.Event()
    removals: list[bool] = []  # per removal: whether the link was still under way
    remove = fetch_module._remove

    def slow(*args: Any) -> None:
        entered.set()
        if not gate.wait(STUCK):
            GatedHasher.stuck = True
        link(*args)
        linked.set()

    def recorded(paths: set[str]) -> None:
        removals.append(not linked.is_set())
        remove(paths)

    monkeypatch.setattr(spool_module, "_link", slow)
    monkeypatch.setattr(fetch_module, "_remove", recorded)

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        spool = Spool(str(tmp_path / "spool"))
        await spool.open()
        download = asyncio.ensure_future(SpoolingDownloader(candidate, spool).run())
        await loop.run_in_executor(None, entered.wait)  # the link is under way
        download.cancel()
        for _ in range(cancels - 1):  # once more while it waits for the link (a stop)
            for _ in range(10):
                await asyncio.sleep(0)
            download.cancel()
        loop.call_soon(gate.set)  # it ends while the cancelled download cleans up
        with contextlib.suppress(asyncio.CancelledError):
            await download
        return download.cancelled()

    with override_settings(WORKING_DIRECTORY=str(working)):
        cancelled = asyncio.run(scenario())
    assert cancelled and not GatedHasher.stuck
    assert removals == [False]  # removed once, after the link: never before it
    assert os.listdir(working) == []


def test_a_digest_mismatch_is_pulpcores_error_and_keeps_no_file(tmp_path):
    from pulpcore.exceptions import DigestValidationError

    from pulp_content_asgi.ondemand.fetch import SpoolingDownloader
    from pulp_content_asgi.ondemand.spool import Spool

    blob = os.urandom(2 * (1 << 20))
    candidate = _candidate(tmp_path / "upstream.bin", blob, {"sha256": "0" * 64})

    async def scenario() -> SpoolingDownloader:
        spool = Spool(str(tmp_path / "spool"))
        await spool.open()
        downloader = SpoolingDownloader(candidate, spool)
        with pytest.raises(DigestValidationError):
            await downloader.run()
        return downloader

    from django.test import override_settings

    with override_settings(WORKING_DIRECTORY=str(tmp_path)):
        downloader = asyncio.run(scenario())
    assert downloader.files and not any(os.path.exists(f) for f in downloader.files)


def test_declared_digests_get_lanes_of_their_own_and_stay_out_of_the_artifact(tmp_path):
    """A digest the upstream declares that pulpcore does not compute (a Maven ``.sha1``)
    is hashed while the file downloads, in a lane of its own, so its check needs no second
    read of the file; it never joins the artifact's digests (``hashers``)."""

    chunks = [os.urandom(700_000) for _ in range(4)]

    async def run() -> tuple[dict[str, str], dict[str, str]]:
        found = Digests.configured(("sha1", "md5", "sha256"))
        for chunk in chunks:
            found.put(chunk)
            await found.wait_room()
        hashers, _ = await found.finish()
        return ({name: h.hexdigest() for name, h in hashers.items()},
                found.declared_digests())

    artifact, declared = asyncio.run(run())
    whole = b"".join(chunks)
    assert declared == {"sha1": hashlib.sha1(whole).hexdigest(),
                        "md5": hashlib.md5(whole).hexdigest()}  # sha256 is the artifact's
    assert "sha1" not in artifact and "md5" not in artifact
    assert artifact["sha256"] == hashlib.sha256(whole).hexdigest()


def test_a_saved_download_stops_taking_bytes_once_its_window_is_full(
        tmp_path, monkeypatch):
    """The memory bound through the fetch path: with every digest held at its first
    update, the downloader is held once WINDOW bytes wait for the slowest lane, so a
    download holds at most WINDOW bytes plus one chunk (1 MiB, pulpcore's read) for its
    digests; let go, it completes. Without the wait in ``on_data`` the whole file would
    reach the spool while the digests are held."""
    from pulpcore.app import pulp_hashlib

    from pulp_content_asgi.ondemand.fetch import SpoolingDownloader
    from pulp_content_asgi.ondemand.spool import Spool

    blob = os.urandom(WINDOW + 6 * (1 << 20) + 7)
    gate, entered = threading.Event(), threading.Event()
    monkeypatch.setattr(pulp_hashlib, "new", lambda name: GatedHasher(name, gate, entered))
    candidate = _candidate(tmp_path / "upstream.bin", blob,
                           {"sha256": hashlib.sha256(blob).hexdigest()})
    pending: list[int] = []
    put = Digests.put

    def recorded(self: Digests, data: bytes) -> None:
        put(self, data)
        pending.append(self.size - min(lane.taken for lane in self.lanes))

    monkeypatch.setattr(Digests, "put", recorded)

    async def scenario() -> tuple[int, object]:
        spool = Spool(str(tmp_path / "spool"))
        await spool.open()
        downloading = SpoolingDownloader(candidate, spool)
        download = asyncio.ensure_future(downloading.run())
        await asyncio.get_running_loop().run_in_executor(None, entered.wait)
        # Until the download waits for room, or (the bound not kept) the spool has it all.
        while spool.size < len(blob):
            digests = downloading.digests
            if digests is not None and digests.size - min(
                    lane.taken for lane in digests.lanes) > WINDOW:
                break
            await spool.changed()
        for _ in range(10):
            await asyncio.sleep(0)
        held = spool.size
        gate.set()
        return held, await download

    held, result = asyncio.run(scenario())
    assert not GatedHasher.stuck
    assert held < len(blob), "the whole file was taken while every digest was held"
    assert max(pending) <= WINDOW + (1 << 20)
    assert result.artifact_attributes["sha256"] == hashlib.sha256(blob).hexdigest()  # type: ignore[attr-defined]
    os.unlink(result.path)  # type: ignore[attr-defined]


def test_a_full_disk_writing_the_spool_ends_the_download_and_keeps_no_file(
        tmp_path, monkeypatch):
    """ENOSPC writing the spool (the file that is saved) reaches the fetch path as that
    ``OSError`` before the whole file is taken, is not retried by pulpcore's downloader,
    and no file of the download is kept (the spool is the fetch's to discard)."""
    import errno

    from django.test import override_settings

    from pulp_content_asgi.ondemand import spool as spool_module
    from pulp_content_asgi.ondemand.fetch import SpoolingDownloader
    from pulp_content_asgi.ondemand.spool import Spool

    blob = os.urandom(WINDOW * 3)
    candidate = _candidate(tmp_path / "upstream.bin", blob,
                           {"sha256": hashlib.sha256(blob).hexdigest()})
    write = spool_module._File.write

    def full(self, chunk: bytes) -> None:
        if self.file.tell() + len(chunk) > 2 * (1 << 20):
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, chunk)

    monkeypatch.setattr(spool_module._File, "write", full)
    working = tmp_path / "working"
    working.mkdir()

    async def scenario() -> tuple[BaseException | None, SpoolingDownloader, int]:
        spool = Spool(str(tmp_path / "spool"))
        await spool.open()
        downloading = SpoolingDownloader(candidate, spool)
        try:
            await downloading.run()
        except OSError as error:
            return error, downloading, spool.size
        return None, downloading, spool.size

    with override_settings(WORKING_DIRECTORY=str(working)):
        error, downloading, spooled = asyncio.run(scenario())
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert spooled < len(blob)
    assert not downloading.files and os.listdir(working) == []


def test_the_digests_are_pulpcores_for_every_checksum_pulp_allows(tmp_path, monkeypatch):
    """Every checksum ALLOWED_CONTENT_CHECKSUMS may name (md5 and sha1 too), over chunks
    of uneven sizes across GATHER: the artifact attributes are those pulpcore's own
    ``handle_data``/``finalize`` compute over the same chunks (its code is the oracle)."""
    # pulpcore's downloader asks for the working directory (Path.cwd()), which an earlier
    # test's removed temporary folder must not be.
    monkeypatch.chdir(tmp_path)
    import random

    from django.test import override_settings
    from pulpcore.app.models import Artifact
    from pulpcore.download.base import BaseDownloader

    every = ["sha512", "sha384", "sha256", "sha224", "sha1", "md5"]
    monkeypatch.setattr(Artifact, "DIGEST_FIELDS", every)
    rng = random.Random(18)
    chunks = [os.urandom(rng.choice((1, 100, 65_536, 300_001, 1 << 20, 3 << 20)))
              for _ in range(12)]

    async def ours() -> tuple[dict[str, str], int]:
        digests = Digests.configured()
        for chunk in chunks:
            digests.put(chunk)
            await digests.wait_room()
        hashers, size = await digests.finish()
        return {n: h.hexdigest() for n, h in hashers.items()}, size

    async def pulpcores() -> dict[str, Any]:
        downloader = BaseDownloader("http://upstream.example/x.bin")
        for chunk in chunks:
            await downloader.handle_data(chunk)
        await downloader.finalize()
        os.unlink(downloader.path)
        return downloader.artifact_attributes

    with override_settings(ALLOWED_CONTENT_CHECKSUMS=every,
                           WORKING_DIRECTORY=str(tmp_path)):
        found, size = asyncio.run(ours())
        expected = asyncio.run(pulpcores())
    assert sorted(found) == sorted(every)
    assert {"size": size, **found} == expected


def test_the_kept_file_is_on_disk_before_keep_returns(tmp_path, monkeypatch):
    """Durability as pulpcore's ``finalize`` gives it: when a durable spool's ``keep``
    returns (and the file may be saved) an ``fsync`` of its file has returned, after its
    last write; past WRITEBACK bytes, ``fdatasync``s ran on it while it was written. A
    spool that is not saved is never flushed."""
    from pulp_content_asgi.ondemand import spool as spool_module
    from pulp_content_asgi.ondemand.spool import Spool

    synced: list[tuple[str, int, int]] = []  # (call, inode, size on disk at the call)
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(("fsync", os.fstat(fd).st_ino, os.fstat(fd).st_size))

    def fdatasync(fd: int) -> None:
        real_fdatasync(fd)
        synced.append(("fdatasync", os.fstat(fd).st_ino, os.fstat(fd).st_size))

    monkeypatch.setattr(spool_module.os, "fsync", fsync)
    monkeypatch.setattr(spool_module.os, "fdatasync", fdatasync)
    block = os.urandom(1 << 20)
    blocks = spool_module.WRITEBACK // len(block) * 2 + 3

    async def scenario(name: str, durable: bool) -> int:
        spool = Spool(str(tmp_path / name))
        spool.durable = durable
        await spool.open()
        for _ in range(blocks):
            await spool.write(block)
        if durable:
            await spool.keep(str(tmp_path / f"{name}-kept"))
        await spool.finish()
        return len(synced)

    at_keep = asyncio.run(scenario("saved", True))
    inode = os.stat(tmp_path / "saved").st_ino
    mine = [(call, size) for call, ino, size in synced[:at_keep] if ino == inode]
    assert ("fsync", blocks * len(block)) in mine
    assert any(call == "fdatasync" for call, _ in mine)
    assert os.stat(tmp_path / "saved-kept").st_ino == inode
    synced.clear()
    asyncio.run(scenario("streamed", False))
    assert synced == []


def test_the_fetch_path_hashes_the_declared_digests_so_the_check_reads_no_file(tmp_path):
    """The wiring of the declared lanes (review #15 of bba490f): the spooling downloader
    given the algorithms an upstream declares hands back their digests of the bytes it
    fetched, and ``declared.verify`` with them (and the artifact's) never opens the file:
    the check needs no second read."""
    from pulpcore.exceptions import DigestValidationError

    from pulp_content_asgi.ondemand import declared
    from pulp_content_asgi.ondemand.fetch import SpoolingDownloader
    from pulp_content_asgi.ondemand.spool import Spool
    from pulp_content_asgi.plugin.upstream import Declared

    blob = os.urandom(3 * (1 << 20) + 7)
    candidate = _candidate(tmp_path / "upstream.bin", blob, {})

    async def scenario() -> tuple[SpoolingDownloader, object]:
        spool = Spool(str(tmp_path / "spool"))
        await spool.open()
        downloader = SpoolingDownloader(candidate, spool, ("sha1", "md5"))
        return downloader, await downloader.run()

    downloader, result = asyncio.run(scenario())
    assert downloader.declared_digests == {"sha1": hashlib.sha1(blob).hexdigest(),
                                           "md5": hashlib.md5(blob).hexdigest()}
    promised = Declared({"sha1": hashlib.sha1(blob).hexdigest(),
                         "md5": hashlib.md5(blob).hexdigest()})
    computed = {**downloader.declared_digests,
                **result.artifact_attributes}  # type: ignore[attr-defined]
    os.unlink(result.path)  # type: ignore[attr-defined]
    declared.verify(promised, result.path, computed, "file://x")  # no file to read: fine
    tampered = Declared({"sha1": hashlib.sha1(blob + b"x").hexdigest()})
    with pytest.raises(DigestValidationError, match="declared by the upstream"):
        declared.verify(tampered, result.path, computed, "file://x")
