"""The digests of a saved download are computed off the event loop (``ondemand/digests.py``).

The hashers here are real hashlib objects whose first update waits for a gate that only
a callback *on the event loop* opens: if a digest ran on the loop, the loop could not run
that callback and the update would give up waiting (the test then fails, saying so);
nothing here measures time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from typing import IO

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
    return Digests(open(tmp_path / "download", "wb"), hashers)


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
    assert (tmp_path / "download").read_bytes() == whole


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
    data = os.urandom(70_000)

    async def scenario() -> tuple[dict, int, str]:
        digests = await Digests.open("http://upstream.example/a/b.rpm")
        digests.put(data)
        found, size = await digests.finish()
        return {n: h.hexdigest() for n, h in found.items()}, size, digests.path

    found, size, path = asyncio.run(scenario())
    try:
        assert size == len(data)
        assert found == {n: hashlib.new(n, data).hexdigest() for n in settings_digests}
        assert path.endswith("-b.rpm")
        with open(path, "rb") as kept:
            assert kept.read() == data
    finally:
        os.unlink(path)


def test_a_failed_write_is_raised_and_the_file_closed(tmp_path):
    """A lane's error (here writing to a file opened read-only, as a full disk would
    fail) reaches the download, not a log of unretrieved task exceptions."""
    (tmp_path / "download").write_bytes(b"")

    async def scenario(file: IO[bytes]) -> BaseException | None:
        digests = Digests(file, {"sha256": hashlib.sha256()})
        digests.put(b"x" * 10_000)
        try:
            await digests.finish()
        except OSError as error:
            await digests.closed()
            return error
        return None

    with open(tmp_path / "download", "rb") as file:
        error = asyncio.run(scenario(file))
        assert isinstance(error, OSError)
        assert file.closed


def test_an_abandoned_attempt_drops_its_chunks_and_closes_its_file(tmp_path):
    gate, entered = threading.Event(), threading.Event()
    hasher = GatedHasher("sha256", gate, entered)

    async def scenario() -> Digests:
        digests = _open(tmp_path, {"sha256": hasher})
        for _ in range(4):
            digests.put(b"y" * 100_000)
        await asyncio.get_running_loop().run_in_executor(None, entered.wait)
        digests.abandon()
        gate.set()
        await digests.closed()
        return digests

    digests = asyncio.run(scenario())
    assert digests.file.closed
    assert all(not lane.waiting for lane in digests.lanes)


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
